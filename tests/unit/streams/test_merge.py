"""The event-time merge of a shop's topics, without Kafka: given records arriving on several
topic-partitions at given wall times, then this release order."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.streams.merge import EventTimeMerge, Released

IDLE = 1000.0  # the wait bound; wall times below are whole numbers, so comparisons are exact
TOPICS = ("shop.share", "shop.click", "shop.signup", "shop.order")


@st.composite
def traffic(draw: st.DrawFn, max_delay: float) -> list[tuple[float, str, int, int]]:
    """(arrival, topic, partition, event time) for records produced in event-time order, each
    reaching ingest up to `max_delay` after it was produced, a partition's records in order."""
    count = draw(st.integers(1, 60))
    lanes = [(draw(st.sampled_from(TOPICS)), draw(st.integers(0, 1))) for _ in range(count)]
    times = sorted(draw(st.lists(st.integers(0, 50), min_size=count, max_size=count)))
    gaps = draw(st.lists(st.integers(0, 3000), min_size=count, max_size=count))
    delays = draw(st.lists(st.integers(0, int(max_delay)), min_size=count, max_size=count))
    produced, last_arrival = 0, defaultdict(int)
    records = []
    for (topic, partition), event_time, gap, delay in zip(lanes, times, gaps, delays,
                                                          strict=True):
        produced += gap
        arrival = max(last_arrival[topic, partition], produced + delay)
        last_arrival[topic, partition] = arrival
        records.append((float(arrival), topic, partition, event_time))
    return records


def simulate(records: list[tuple[float, str, int, int | None]], assigned: bool = True
             ) -> list[Released[int]]:
    """Feed arrivals in wall-time order, releasing whenever a wait runs out in between."""
    merge: EventTimeMerge[int] = EventTimeMerge(IDLE)
    if assigned:
        merge.assign((topic, partition) for topic in TOPICS for partition in (0, 1))
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out: list[Released[int]] = []
    for number, (arrival, topic, partition, event_time) in sorted(
            enumerate(records), key=lambda item: (item[1][0], item[0])):
        while (deadline := merge.next_deadline()) is not None and deadline <= arrival:
            out.extend(merge.release(deadline))
        merge.push((topic, partition), offsets[topic, partition], event_time, number, arrival)
        offsets[topic, partition] += 1
        out.extend(merge.release(arrival))
    while (deadline := merge.next_deadline()) is not None:
        out.extend(merge.release(deadline))
    assert merge.buffered == 0
    return out


@settings(max_examples=300, deadline=None)
@given(traffic(max_delay=IDLE - 1))
def test_within_the_bound_every_partition_comes_out_in_event_time_order(
        records: list[tuple[float, str, int, int]]) -> None:
    out = simulate(records)
    assert sorted(r.item for r in out) == list(range(len(records)))
    for partition in (0, 1):
        times = [r.occurred_at for r in out if r.tp[1] == partition]
        assert times == sorted(times)  # type: ignore[type-var]


@settings(max_examples=300, deadline=None)
@given(traffic(max_delay=5 * IDLE), st.booleans())
def test_beyond_the_bound_nothing_is_lost_and_each_topic_partition_keeps_offset_order(
        records: list[tuple[float, str, int, int]], assigned: bool) -> None:
    out = simulate(records, assigned)
    assert sorted(r.item for r in out) == list(range(len(records)))
    by_tp: dict[tuple[str, int], list[int]] = defaultdict(list)
    for released in out:
        by_tp[released.tp].append(released.offset)
    # Offsets leave in order, so acknowledging them as they leave never commits past a record
    # still buffered.
    assert all(offsets == list(range(len(offsets))) for offsets in by_tp.values())


def test_a_stall_shorter_than_the_bound_delays_the_log_instead_of_reordering_it() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, 100, "click@100", 0.0)
    merge.push(("shop.click", 0), 1, 300, "click@300", 0.0)
    assert merge.release(999.0) == []  # the order topic is empty: wait
    merge.push(("shop.order", 0), 0, 200, "order@200", 999.0)
    released = merge.release(999.0)
    assert [r.item for r in released] == ["click@100", "order@200"]
    assert not any(r.waited_out for r in released)
    # click@300 is the head now and the order topic is empty again: it waits its own bound.
    assert merge.release(999.0) == []
    [late] = merge.release(1000.0)
    assert (late.item, late.waited_out) == ("click@300", True)


def test_a_stall_beyond_the_bound_is_appended_late_and_says_so() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, 300, "click@300", 0.0)
    [first] = merge.release(IDLE)
    merge.push(("shop.order", 0), 0, 200, "order@200", IDLE + 1)
    assert merge.release(IDLE + 1) == []  # the click topic is empty now: order waits too
    [second] = merge.release(2 * IDLE + 1)
    assert (first.item, first.waited_out) == ("click@300", True)
    assert (second.item, second.occurred_at) == ("order@200", 200)  # behind 300: late


def test_records_with_nothing_to_append_leave_in_offset_order_without_waiting() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, 100, "click@100", 0.0)
    merge.push(("shop.click", 0), 1, None, "dead letter", 0.0)
    assert merge.release(0.0) == []  # the dead letter is behind a waiting record
    merge.push(("shop.order", 0), 0, None, "duplicate", 0.0)
    assert [r.item for r in merge.release(0.0)] == ["duplicate"]
    assert [r.item for r in merge.release(IDLE)] == ["click@100", "dead letter"]


def test_co_partitions_do_not_wait_for_each_other() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0), ("shop.click", 1), ("shop.order", 1)])
    merge.push(("shop.click", 1), 0, 100, "p1 click", 0.0)
    merge.push(("shop.order", 1), 0, 50, "p1 order", 0.0)
    assert [r.item for r in merge.release(0.0)] == ["p1 order"]


def test_a_revoked_topic_partition_takes_its_buffered_records_with_it() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, 100, "click", 0.0)
    assert merge.revoke([("shop.click", 0), ("shop.click", 7)]) == 1
    assert merge.buffered == 0
    merge.push(("shop.order", 0), 0, 200, "order", 0.0)
    assert [r.item for r in merge.release(0.0)] == ["order"]  # nothing left to wait for


def test_a_zero_bound_never_waits() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(0.0)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, 100, "click", 0.0)
    assert [r.item for r in merge.release(0.0)] == ["click"]
