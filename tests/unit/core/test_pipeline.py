"""The pipeline: idempotence, stream time and timers, isolation of shops, snapshots."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

from refstream.projections.pipeline import Foresight, Pipeline, SnapshotError
from refstream.schemas.events import (
    Attribution,
    DeadLetter,
    OrderPlaced,
    RewardStatus,
    Signup,
    Tick,
)
from refstream.schemas.ids import referral_id
from tests.unit.core.builders import (
    DAY,
    DEFAULT_RULES,
    GRACE,
    HOLD,
    SHOP,
    ShopLog,
    of_type,
    rules_with,
    run,
    run_pipeline,
    when,
)


def _referred_order_log(shop_id: str = SHOP) -> ShopLog:
    log = ShopLog(shop_id)
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.order("o-1", "bob", 40_000, at=when(days=1))
    return log


# ---------------------------------------------------------------------------- idempotence


def test_an_event_applied_twice_changes_nothing_the_second_time() -> None:
    log = _referred_order_log()
    pipeline = Pipeline(DEFAULT_RULES)
    for event in log.events:
        first = pipeline.apply(event)
        state = pickle.dumps(pipeline.state)
        assert pipeline.apply(event) == []
        assert pickle.loads(state) == pipeline.state
        assert first is not None


def test_told_which_ids_repeat_a_pipeline_remembers_those_alone() -> None:
    # Replay tells the pipeline the event ids that come more than once (Foresight.repeats):
    # their second coming is ignored as always, and no other id is remembered.
    log = _referred_order_log()
    click = log.events[1]
    for repeats in ({click.event_id}, {e.event_id for e in log.events}):
        pipeline = Pipeline(DEFAULT_RULES, foresight=told(repeats, {"v-bob"}))
        outputs = [pipeline.apply(event) for event in log.events]
        assert pipeline.apply(click) == []
        live = Pipeline(DEFAULT_RULES)
        assert outputs == [live.apply(event) for event in log.events]
        assert set(pipeline.state.shops[SHOP].seen_events) == repeats
        assert len(pipeline.state.shops[SHOP].visitors["v-bob"]) == 1
    # What remembering is for: an id not listed comes again and is applied again.
    pipeline = Pipeline(DEFAULT_RULES, foresight=told(deciding={"v-bob"}))
    for event in [*log.events, click]:
        pipeline.apply(event)
    assert not pipeline.state.shops[SHOP].seen_events
    assert len(pipeline.state.shops[SHOP].visitors["v-bob"]) == 2


def test_told_which_order_ids_repeat_a_pipeline_claims_those_alone() -> None:
    # Natural keys too: an order id (or return id) that replay does not list as repeating
    # is not remembered; a listed one still stops a retried order with a new event id.
    log = _referred_order_log()
    order = log.events[-1]
    assert isinstance(order, OrderPlaced)
    retried = OrderPlaced("order-retry", SHOP, order.occurred_at + DAY, order.order_id,
                          order.customer_id, order.amount_minor, order.currency, order.ip_hash)
    live = Pipeline(DEFAULT_RULES)
    expected = [live.apply(event) for event in [*log.events, retried]]
    assert expected[-1] == []
    pipeline = Pipeline(DEFAULT_RULES, foresight=told({order.order_id}, {"v-bob"}))
    assert [pipeline.apply(event) for event in [*log.events, retried]] == expected
    assert set(pipeline.state.shops[SHOP].seen_orders) == {order.order_id}
    pipeline = Pipeline(DEFAULT_RULES, foresight=told(deciding={"v-bob"}))
    for event in log.events:
        pipeline.apply(event)
    assert not pipeline.state.shops[SHOP].seen_orders


def test_told_the_deciding_visitors_a_pipeline_keeps_no_other_touch() -> None:
    # Replay tells the pipeline the visitors on the log's signups and orders: nobody else's
    # touch can be read by a decision, so none is kept; their code uses still count.
    log = _referred_order_log()
    log.click("v-stranger", at=when(hours=1, minutes=30), code="R-alice")
    log.events.sort(key=lambda e: e.occurred_at)
    live = Pipeline(DEFAULT_RULES)
    expected = [live.apply(event) for event in log.events]
    assert set(live.state.shops[SHOP].visitors) == {"v-bob", "v-stranger"}
    pipeline = Pipeline(DEFAULT_RULES, foresight=told(deciding={"v-bob"}))
    assert [pipeline.apply(event) for event in log.events] == expected
    shop = pipeline.state.shops[SHOP]
    assert set(shop.visitors) == {"v-bob"}
    assert shop.fraud.code_windows.windows["R-alice"].distinct() == 2  # bob and the stranger


def test_a_pipeline_told_what_its_log_holds_cannot_be_snapshotted() -> None:
    pipeline = Pipeline(DEFAULT_RULES).with_foresight(told())
    with pytest.raises(SnapshotError, match="cannot continue a live log"):
        pipeline.snapshot()
    assert Pipeline(DEFAULT_RULES).with_foresight(None).snapshot()


def told(repeats: set[str] | None = None, deciding: set[str] | None = None) -> Foresight:
    """A Foresight listing `repeats` and the `deciding` visitors (none of either by
    default): what replay tells a pipeline about a log it has seen whole."""
    return Foresight(frozenset(repeats or ()), frozenset(deciding or ()), frozenset(),
                     frozenset())


def test_a_second_order_with_the_same_order_id_is_the_same_order() -> None:
    log = _referred_order_log()
    original = log.events[-1]
    assert isinstance(original, OrderPlaced)
    pipeline = run_pipeline(log.events)
    retried = OrderPlaced("order-retry", SHOP, original.occurred_at + DAY, original.order_id,
                          original.customer_id, original.amount_minor, original.currency,
                          original.ip_hash)
    assert pipeline.apply(retried) == []
    assert pipeline.stream_time(SHOP) == original.occurred_at  # it moved nothing, not even time


def test_a_second_return_with_the_same_return_id_is_ignored() -> None:
    log = _referred_order_log()
    log.ret("r-1", "o-1", "bob", 40_000, at=when(days=2))
    pipeline = run_pipeline(log.events)
    again = log.ret("r-1", "o-1", "bob", 40_000, at=when(days=3))
    assert pipeline.apply(again) == []


def test_a_second_signup_of_the_same_customer_is_ignored() -> None:
    log = _referred_order_log()
    pipeline = run_pipeline(log.events)
    again = Signup("signup-again", SHOP, when(days=2), "bob", "email:other", "ip:other")
    assert pipeline.apply(again) == []


def test_idempotence_survives_a_snapshot_taken_in_another_process() -> None:
    # Keys are the ids themselves: a process with another str hash seed restores a state
    # that still recognises every applied event and order.
    events = _referred_order_log().events
    script = (
        "import sys\n"
        "from refstream.projections.pipeline import Pipeline\n"
        "from tests.unit.core.builders import DEFAULT_RULES, run_pipeline\n"
        "from tests.unit.core.test_pipeline import _referred_order_log\n"
        "sys.stdout.buffer.write(run_pipeline(_referred_order_log().events).snapshot())\n")
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                          env={**os.environ, "PYTHONHASHSEED": "12345"})
    resumed = Pipeline.restore(DEFAULT_RULES, done.stdout)
    assert all(resumed.apply(event) == [] for event in events if not isinstance(event, Tick))
    replayed_order = OrderPlaced("evt-new-id", SHOP, when(days=3), "o-1", "bob", 40_000, "EUR",
                                 "ip:bob")
    assert resumed.apply(replayed_order) == []


# ---------------------------------------------------------------------------- stream time


def test_stream_time_is_the_largest_event_time_seen_per_shop() -> None:
    log = ShopLog()
    log.click("v-1", at=when(hours=5))
    log.click("v-2", at=when(hours=3))  # late: does not move time back
    pipeline = run_pipeline(log.events)
    assert pipeline.stream_time(SHOP) == when(hours=5)
    assert pipeline.stream_time("another-shop") is None
    assert pipeline.apply(Tick("t-1", SHOP, when(hours=4))) == []
    assert pipeline.stream_time(SHOP) == when(hours=5)
    pipeline.apply(Tick("t-2", SHOP, when(hours=6)))
    assert pipeline.stream_time(SHOP) == when(hours=6)


def test_due_timers_fire_in_deadline_order_before_the_event_that_passed_them() -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-late", at=when(hours=1), code="R-alice")
    log.click("v-early", at=when(hours=1), code="R-alice")
    log.signup("late", at=when(hours=2, minutes=5), visitor="v-late")  # decided second
    log.signup("early", at=when(hours=2), visitor="v-early")  # appended late, decided first
    crossing = log.order("o-1", "early", 40_000, at=when(days=1))
    outputs = run(log.events)
    assert [(a.referee_id, a.status, a.occurred_at) for a in of_type(outputs, Attribution)] == [
        ("early", "attributed", when(hours=2) + GRACE),
        ("late", "attributed", when(hours=2, minutes=5) + GRACE),
        ("early", "qualified", crossing.occurred_at)]


def test_a_late_signup_is_decided_with_the_event_that_brings_it() -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.tick(at=when(days=1))
    log.signup("bob", at=when(hours=2), visitor="v-bob")  # its grace ended long ago
    [decided] = of_type(run(log.events), Attribution)
    assert decided.occurred_at == when(days=1)  # stamped with stream time, never back in time


def test_ticks_alone_make_rewards_fall_due() -> None:
    log = _referred_order_log()
    log.tick(at=when(days=1) + HOLD)
    outputs = run(log.events)
    assert [r.status for r in of_type(outputs, RewardStatus)][-2:] == ["due", "due"]


# ------------------------------------------------------------------------------- shops


def test_a_shops_state_depends_on_its_own_events_only() -> None:
    mine, other = _referred_order_log("shop-a"), _referred_order_log("shop-b")
    interleaved = [e for pair in zip(mine.events, other.events, strict=True) for e in pair]
    together = run_pipeline(interleaved)
    alone = run_pipeline(mine.events)
    assert together.state.shops["shop-a"] == alone.state.shops["shop-a"]
    a_outputs = [o for o in run(interleaved) if o.shop_id == "shop-a"]
    assert a_outputs == run(mine.events)
    assert {a.referral_id for a in of_type(a_outputs, Attribution)} == {
        referral_id("shop-a", "bob")}


def test_events_outside_the_canonical_log_are_refused() -> None:
    letter = DeadLetter("refstream.shop.click", 0, 7, "bad bytes", b"\x00", SHOP)
    pipeline = Pipeline(DEFAULT_RULES)
    with pytest.raises(TypeError, match="does not apply DeadLetter events"):
        pipeline.apply(letter)  # type: ignore[arg-type]
    assert pipeline.state.shops == {}


# ------------------------------------------------------------------------------ snapshots


def test_a_restored_snapshot_continues_exactly_like_the_original() -> None:
    log = _referred_order_log()
    log.ret("r-1", "o-1", "bob", 40_000, at=when(days=40))
    log.tick(at=when(days=45))
    straight = Pipeline(DEFAULT_RULES)
    expected = [out for e in log.events for out in straight.apply(e)]
    for cut in range(len(log.events) + 1):
        first = Pipeline(DEFAULT_RULES)
        outputs = [out for e in log.events[:cut] for out in first.apply(e)]
        resumed = Pipeline.restore(DEFAULT_RULES, first.snapshot())
        assert resumed.state == first.state
        outputs += [out for e in log.events[cut:] for out in resumed.apply(e)]
        assert outputs == expected
        assert resumed.state == straight.state


def test_a_snapshot_cannot_continue_under_other_rules() -> None:
    data = run_pipeline(_referred_order_log().events).snapshot()
    with pytest.raises(SnapshotError, match=r"taken under rules '2026\.11-default'"):
        Pipeline.restore(rules_with({"version": "2026.12-other"}), data)
    with pytest.raises(SnapshotError, match="unreadable"):
        Pipeline.restore(DEFAULT_RULES, b"not a snapshot")
    with pytest.raises(SnapshotError, match="not a refstream pipeline snapshot"):
        Pipeline.restore(DEFAULT_RULES, pickle.dumps({"state": 1}))
