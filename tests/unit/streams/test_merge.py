"""The event-time merge of a shop's topics, without Kafka: given records arriving on several
topic-partitions at given wall times, then this append order and these acknowledgements."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.streams.merge import Batch, EventTimeMerge

IDLE = 1000.0  # the wait bound; wall times below are whole numbers, so comparisons are exact
TOPICS = ("shop.share", "shop.click", "shop.signup", "shop.order")
SHOPS = ("shop-a", "shop-b", "shop-c")
Record = tuple[float, str, int, str | None, int]  # arrival, topic, partition, shop, time


@st.composite
def traffic(draw: st.DrawFn, max_delay: float) -> list[Record]:
    """Records sent in one wall-time order, each shop's in its own event-time order (shops'
    times unrelated), each reaching ingest up to `max_delay` after it was sent, behind the
    records sent before it on its topic-partition. A shop keeps one partition (its key's);
    some records have nothing to append (shop None: a dead letter or a duplicate)."""
    count = draw(st.integers(1, 60))
    shops = draw(st.lists(st.sampled_from((*SHOPS, None)), min_size=count, max_size=count))
    topics = draw(st.lists(st.sampled_from(TOPICS), min_size=count, max_size=count))
    gaps = draw(st.lists(st.integers(0, 3000), min_size=count, max_size=count))
    delays = draw(st.lists(st.integers(0, int(max_delay)), min_size=count, max_size=count))
    times = {shop: sorted(draw(st.lists(st.integers(0, 50), min_size=count, max_size=count)))
             for shop in SHOPS}
    sent, last_arrival = 0, defaultdict(int)
    records: list[Record] = []
    for n, (shop, topic, gap, delay) in enumerate(zip(shops, topics, gaps, delays,
                                                      strict=True)):
        partition = SHOPS.index(shop) % 2 if shop is not None else n % 2
        sent += gap
        arrival = max(last_arrival[topic, partition], sent + delay)
        last_arrival[topic, partition] = arrival
        records.append((float(arrival), topic, partition, shop,
                        times[shop][n] if shop is not None else 0))
    return records


def simulate(records: list[Record], assigned: bool = True) -> tuple[list[int], list[int],
                                                                     dict[int, int]]:
    """Feed arrivals in wall-time order, releasing whenever a wait runs out in between.
    Returns the appended record numbers, the acknowledged ones, and each one's offset."""
    merge: EventTimeMerge[int] = EventTimeMerge(IDLE)
    if assigned:
        merge.assign((topic, partition) for topic in TOPICS for partition in (0, 1))
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    offset_of: dict[int, int] = {}
    appended: list[int] = []
    acked: list[int] = []

    def take(batch: Batch[int]) -> None:
        appended.extend(r.item for r in batch.appends)
        acked.extend(batch.acks)
        # What a consumer commits: per topic-partition, the offset after its last ack.
        after_last = {(records[n][1], records[n][2]): offset_of[n] + 1 for n in batch.acks}
        assert batch.acked == after_last

    for number, (arrival, topic, partition, shop, event_time) in sorted(
            enumerate(records), key=lambda item: (item[1][0], item[0])):
        while (deadline := merge.next_deadline()) is not None and deadline <= arrival:
            take(merge.release(deadline))
        offset_of[number] = next_offset[topic, partition]
        next_offset[topic, partition] += 1
        merge.push((topic, partition), offset_of[number], number, arrival, shop=shop,
                   occurred_at=event_time if shop is not None else None)
        take(merge.release(arrival))
    while (deadline := merge.next_deadline()) is not None:
        take(merge.release(deadline))
    take(merge.release(float("inf")))
    assert merge.buffered == 0
    return appended, acked, offset_of


@settings(max_examples=300, deadline=None)
@given(traffic(max_delay=IDLE - 1))
def test_within_the_bound_every_shop_is_appended_in_event_time_order(
        records: list[Record]) -> None:
    appended, _, _ = simulate(records)
    assert sorted(appended) == [n for n, r in enumerate(records) if r[3] is not None]
    for shop in SHOPS:
        times = [records[n][4] for n in appended if records[n][3] == shop]
        assert times == sorted(times), shop


@settings(max_examples=300, deadline=None)
@given(traffic(max_delay=5 * IDLE), st.booleans())
def test_beyond_the_bound_nothing_is_lost_and_acks_follow_offsets(
        records: list[Record], assigned: bool) -> None:
    appended, acked, offset_of = simulate(records, assigned)
    assert sorted(appended) == [n for n, r in enumerate(records) if r[3] is not None]
    assert sorted(acked) == list(range(len(records)))
    by_tp: dict[tuple[str, int], list[int]] = defaultdict(list)
    for number in acked:
        by_tp[records[number][1], records[number][2]].append(offset_of[number])
    # Acknowledged in offset order: a commit never covers a record still buffered.
    assert all(offsets == list(range(len(offsets))) for offsets in by_tp.values())


def test_a_stall_shorter_than_the_bound_delays_the_log_instead_of_reordering_it() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, "click@100", 0.0, shop="s", occurred_at=100)
    merge.push(("shop.click", 0), 1, "click@300", 0.0, shop="s", occurred_at=300)
    assert merge.release(999.0).appends == []  # the order topic is empty: wait
    merge.push(("shop.order", 0), 0, "order@200", 999.0, shop="s", occurred_at=200)
    batch = merge.release(999.0)
    assert [r.item for r in batch.appends] == ["click@100", "order@200"]
    assert not any(r.waited_out for r in batch.appends)
    assert batch.acks == ["click@100", "order@200"]
    # click@300 is the head now and the order topic is empty again: it waits its own bound.
    assert merge.release(999.0).appends == []
    [late] = merge.release(1000.0).appends
    assert (late.item, late.waited_out) == ("click@300", True)


def test_a_stall_beyond_the_bound_is_appended_late_and_says_so() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, "click@300", 0.0, shop="s", occurred_at=300)
    [first] = merge.release(IDLE).appends
    merge.push(("shop.order", 0), 0, "order@200", IDLE + 1, shop="s", occurred_at=200)
    assert merge.release(IDLE + 1).appends == []  # the click topic is empty now: it waits
    [second] = merge.release(2 * IDLE + 1).appends
    assert (first.item, first.waited_out) == ("click@300", True)
    assert (second.item, second.occurred_at) == ("order@200", 200)  # behind 300: late


def test_shops_sharing_a_partition_are_merged_each_in_its_own_time() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    # Shop a's producer is ten minutes behind shop b's: their records interleave anyhow.
    merge.push(("shop.click", 0), 0, "b click@610", 0.0, shop="b", occurred_at=610)
    merge.push(("shop.click", 0), 1, "a click@0", 0.0, shop="a", occurred_at=0)
    merge.push(("shop.order", 0), 0, "a order@5", 0.0, shop="a", occurred_at=5)
    merge.push(("shop.order", 0), 1, "b order@600", 0.0, shop="b", occurred_at=600)
    batch = merge.release(0.0)
    assert [r.item for r in batch.appends] == ["b order@600", "a click@0"]
    # b's click and a's order wait for their shops' empty lanes, and each heads its
    # topic-partition: nothing may be acknowledged yet.
    assert batch.acks == []
    batch = merge.release(IDLE)
    assert sorted(r.item for r in batch.appends) == ["a order@5", "b click@610"]
    assert batch.acks == ["b click@610", "a click@0", "a order@5", "b order@600"]


def test_records_with_nothing_to_append_are_acknowledged_in_offset_order() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, "click@100", 0.0, shop="s", occurred_at=100)
    merge.push(("shop.click", 0), 1, "dead letter", 0.0)
    merge.push(("shop.order", 0), 0, "duplicate", 0.0)
    batch = merge.release(0.0)
    assert (batch.appends, batch.acks) == ([], ["duplicate"])  # the letter waits its turn
    batch = merge.release(IDLE)
    assert ([r.item for r in batch.appends], batch.acks) == (
        ["click@100"], ["click@100", "dead letter"])


def test_co_partitions_do_not_wait_for_each_other() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0), ("shop.click", 1), ("shop.order", 1)])
    merge.push(("shop.click", 1), 0, "p1 click", 0.0, shop="s", occurred_at=100)
    merge.push(("shop.order", 1), 0, "p1 order", 0.0, shop="s", occurred_at=50)
    assert [r.item for r in merge.release(0.0).appends] == ["p1 order"]


def test_a_revoked_topic_partition_takes_its_buffered_records_with_it() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(IDLE)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, "click", 0.0, shop="s", occurred_at=100)
    assert merge.revoke([("shop.click", 0), ("shop.click", 7)]) == ["click"]
    assert merge.buffered == 0 and not merge.owns(("shop.click", 0))
    merge.push(("shop.order", 0), 0, "order", 0.0, shop="s", occurred_at=200)
    batch = merge.release(0.0)
    assert ([r.item for r in batch.appends], batch.acks) == (["order"], ["order"])


def test_a_zero_bound_never_waits() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge(0.0)
    merge.assign([("shop.click", 0), ("shop.order", 0)])
    merge.push(("shop.click", 0), 0, "click", 0.0, shop="s", occurred_at=100)
    assert [r.item for r in merge.release(0.0).appends] == ["click"]


class ReferenceMerge:
    """The merge's rule written the plain way, one record at a time: a shop's earliest head
    (event time, then arrival) among its co-partition's topic-partitions leaves, unless some
    of them is empty and it arrived less than the bound ago."""

    def __init__(self, idle_s: float, members: list[tuple[str, int]]) -> None:
        self.idle_s = idle_s
        self.members = members  # one co-partition
        self.lanes: dict[tuple[tuple[str, int], str], list[tuple[int, int, float, int]]] = (
            defaultdict(list))
        self.arrivals = 0

    def push(self, tp: tuple[str, int], item: int, now: float, shop: str, at: int) -> None:
        self.arrivals += 1
        self.lanes[tp, shop].append((at, self.arrivals, now, item))

    def release(self, now: float) -> list[tuple[int, bool]]:
        out = []
        for shop in sorted({shop for (_, shop), lane in self.lanes.items() if lane}):
            while True:
                lanes = [self.lanes[tp, shop] for tp in self.members]
                heads = [lane for lane in lanes if lane]
                if not heads:
                    break
                lane = min(heads, key=lambda lane: lane[0][:2])
                some_empty = len(heads) < len(lanes)
                if some_empty and now - lane[0][2] < self.idle_s:
                    break
                out.append((lane.pop(0)[3], some_empty))
        return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.sampled_from(SHOPS), st.integers(0, 5),
                          st.booleans()), max_size=80))
def test_releases_in_runs_equal_the_rule_applied_record_by_record(
        steps: list[tuple[str, str, int, bool]]) -> None:
    """Each release takes a head lane's records in a run while they come before every other
    lane's head: the same records, in the same order, with the same waited-out flags."""
    members = [(topic, 0) for topic in TOPICS]
    merge: EventTimeMerge[int] = EventTimeMerge(2.0)
    merge.assign(members)
    reference = ReferenceMerge(2.0, members)
    offsets: dict[tuple[str, int], int] = defaultdict(int)

    def per_shop(released: list[tuple[int, bool]]) -> dict[str, list[tuple[int, bool]]]:
        shops: dict[str, list[tuple[int, bool]]] = defaultdict(list)
        for item, waited_out in released:
            shops[steps[item][1]].append((item, waited_out))
        return shops

    for now, (topic, shop, event_time, release) in enumerate(steps):
        tp = (topic, 0)
        merge.push(tp, offsets[tp], now, float(now), shop=shop, occurred_at=event_time)
        reference.push(tp, now, float(now), shop, event_time)
        offsets[tp] += 1
        if release:
            got = [(r.item, r.waited_out) for r in merge.release(float(now)).appends]
            assert per_shop(got) == per_shop(reference.release(float(now)))
    end = float(len(steps) + 5)
    got = [(r.item, r.waited_out) for r in merge.release(end).appends]
    assert per_shop(got) == per_shop(reference.release(end))
    assert merge.buffered == 0
