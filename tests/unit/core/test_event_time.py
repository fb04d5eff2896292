"""Event time: the watermark (stream time minus the rules' allowed lateness) drives every
decision, so events appended out of time order within the allowed lateness decide exactly as
the time-sorted log; an event later than that is applied all the same and reported.
"""

from __future__ import annotations

import itertools
import pickle
import random

import pytest

from refstream.projections.pipeline import Pipeline
from refstream.projections.tables import LATE_EVENTS, row_for
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import (
    Attribution,
    DerivedEvent,
    FraudFlag,
    LateArrival,
    LogEvent,
    RewardDue,
    RewardReversal,
    RewardStatus,
)
from tests.unit.core.builders import (
    DAY,
    DEFAULT_RULES,
    HOLD,
    HOUR,
    MINUTE,
    SHOP,
    ShopLog,
    of_type,
    rules_with,
    run,
    when,
)

LATENESS = 3 * HOUR


def _rules(lateness_ms: int = LATENESS) -> Rules:
    return rules_with({"version": "v-event-time",
                       "event_time": {"allowed_lateness_minutes": lateness_ms // MINUTE}})


def _six_referees() -> tuple[list[list[LogEvent]], list[LogEvent]]:
    """Alice's code; six referees sign up from one IP within 25 minutes (the default rules:
    six referred signups from one IP within an hour are held for review), each clicking a
    minute before and ordering two minutes after. Returns each referee's events (click,
    signup, order) and the share, which comes first."""
    log = ShopLog()
    share = log.share("alice", "R-alice", at=when(0))
    groups = []
    for n in range(6):
        signup_at = when(hours=1, minutes=5 * n)
        visitor, referee = f"v-{n}", f"referee-{n}"
        groups.append([
            log.click(visitor, at=signup_at - MINUTE, code="R-alice", ip="ip:shared"),
            log.signup(referee, at=signup_at, visitor=visitor, ip="ip:shared"),
            log.order(f"o-{n}", referee, 40_000, at=signup_at + 2 * MINUTE),
        ])
    return groups, [share]


def _outcome(events: list[LogEvent], rules: Rules) -> tuple[object, ...]:
    end = ShopLog().tick(at=when(days=120))  # past every hold: the watermark passes it all
    outputs = run([*events, end], rules)
    return _summary(outputs)


def _summary(outputs: list[DerivedEvent]) -> tuple[object, ...]:
    referrals = {a.referral_id: (a.status, a.referrer_id, a.qualifying_order_id)
                 for a in of_type(outputs, Attribution)}
    rewards = {r.reward_id: (r.status, r.amount_minor, r.currency)
               for r in of_type(outputs, RewardStatus)}
    flags = sorted({(f.flag_id, f.signal, f.action) for f in of_type(outputs, FraudFlag)})
    due = sorted((d.reward_id, d.amount_minor) for d in of_type(outputs, RewardDue))
    reversed_ = sorted((r.reward_id, r.amount_minor) for r in of_type(outputs, RewardReversal))
    return (tuple(sorted(referrals.items())), tuple(sorted(rewards.items())), tuple(flags),
            tuple(due), tuple(reversed_))


def _arrival_orders() -> list[list[int]]:
    """Orders the six referee groups are appended in: reversed, a few shuffles."""
    orders = [list(range(6)), list(reversed(range(6)))]
    rng = random.Random(18)
    for _ in range(6):
        order = list(range(6))
        rng.shuffle(order)
        orders.append(order)
    return orders


@pytest.mark.parametrize("arrival", _arrival_orders(), ids=str)
def test_six_referees_from_one_ip_are_held_whatever_the_order_within_the_lateness(
        arrival: list[int]) -> None:
    """Each referee's click, signup and order appended together, after a later event of the
    shop moved stream time two hours on (a stalled topic): within three hours of lateness,
    the IP velocity flag fires and the referrers' rewards are held, as in time order."""
    groups, head = _six_referees()
    in_time = sorted((e for g in groups for e in g), key=lambda e: e.occurred_at)
    expected = _outcome([*head, *in_time], _rules())
    _, rewards, flags, due, _ = expected
    assert [signal for _, signal, _ in flags] == ["ip_velocity"]
    assert due == ()  # held for review, not due
    assert {status for status, _, _ in dict(rewards).values()} == {"held"}
    later = ShopLog().tick(at=when(hours=3, minutes=25))  # two hours past the last signup
    appended = [*head, later, *(e for n in arrival for e in groups[n])]
    assert _outcome(appended, _rules()) == expected


def test_the_six_referees_appended_late_beyond_the_lateness_are_reported_late() -> None:
    """With no lateness allowed, the same arrival is late: every event is still applied, and
    each is reported once, with how late it was."""
    groups, head = _six_referees()
    later = ShopLog().tick(at=when(hours=3, minutes=25))
    appended = [*head, later, *(e for g in groups for e in g)]
    outputs = run(appended, _rules(0))
    late = of_type(outputs, LateArrival)
    assert [r.event_id for r in late] == [e.event_id for g in groups for e in g]
    assert all(r.occurred_at == later.occurred_at for r in late)
    assert all(r.lateness_ms == later.occurred_at - r.event_occurred_at for r in late)


def test_decisions_wait_for_the_watermark() -> None:
    """The attribution decision (signup + grace) fires when stream time minus the allowed
    lateness passes it, not when stream time does."""
    rules = _rules(HOUR)
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0))
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    grace = rules.attribution.grace_period_ms
    pipeline = Pipeline(rules)
    assert [o for e in log.events for o in pipeline.apply(e)] == []
    assert pipeline.apply(ShopLog().tick(at=when(hours=2) + grace + HOUR - 1)) == []
    decided = pipeline.apply(ShopLog().tick(at=when(hours=2) + grace + HOUR))
    assert [(a.status, a.occurred_at) for a in of_type(decided, Attribution)] == [
        ("attributed", when(hours=2) + grace)]  # stamped with its deadline, as always


def test_an_event_within_the_lateness_is_not_late_and_one_past_it_is() -> None:
    rules = _rules(HOUR)
    log = ShopLog()
    log.tick(at=when(hours=5))
    on_time = log.click("v-1", at=when(hours=4), code="R-x")
    late = log.click("v-2", at=when(hours=4) - 1, code="R-x")
    outputs = run(log.events, rules)
    assert [r.event_id for r in of_type(outputs, LateArrival)] == [late.event_id]
    assert on_time.event_id not in {r.event_id for r in of_type(outputs, LateArrival)}


def test_a_late_return_after_the_rewards_fell_due_is_compensated_by_a_reversal() -> None:
    """Sorted, the return falls inside the hold and voids the rewards; arriving after the
    watermark passed the hold, the rewards fell due and the late return reverses them: the
    same money in the end (nothing owed), through a visible compensating event."""
    rules = _rules(HOUR)
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0))
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.order("o-1", "bob", 40_000, at=when(hours=3))
    returned = log.ret("r-1", "o-1", "bob", 40_000, at=when(days=5))
    sorted_outputs = run([*log.events, ShopLog().tick(at=when(days=120))], rules)
    stall = ShopLog().tick(at=when(hours=3) + HOLD + DAY)
    late_outputs = run([*log.events[:-1], stall, returned, ShopLog().tick(at=when(days=120))],
                       rules)
    assert of_type(sorted_outputs, RewardDue) == []
    assert [r.event_id for r in of_type(late_outputs, LateArrival)] == [returned.event_id]
    due = {d.reward_id: d.amount_minor for d in of_type(late_outputs, RewardDue)}
    clawed = {r.reward_id: r.amount_minor for r in of_type(late_outputs, RewardReversal)}
    assert due and due == clawed  # every due reward reversed: net money as sorted, zero


def test_a_waiting_event_survives_a_snapshot_and_a_repeat_changes_nothing() -> None:
    rules = _rules()
    groups, head = _six_referees()
    events = [*head, *(e for g in groups for e in g)]
    expected = _summary(run([*events, ShopLog().tick(at=when(days=120))], rules))
    for cut in range(len(events) + 1):
        before = Pipeline(rules)
        outputs = [o for e in events[:cut] for o in before.apply(e)]
        state = pickle.dumps(before.state)
        assert [before.apply(e) for e in events[:cut]] == [[] for _ in range(cut)]
        assert before.state == pickle.loads(state)
        after = Pipeline.restore(rules, before.snapshot())
        outputs += [o for e in [*events[cut:], ShopLog().tick(at=when(days=120))]
                    for o in after.apply(e)]
        assert _summary(outputs) == expected


def test_a_late_arrival_has_a_row_and_a_wire_schema() -> None:
    report = LateArrival("click-9", SHOP, when(hours=5), "v1", "click", when(hours=2),
                         3 * HOUR)
    table, row = row_for(report) or (None, None)
    assert table is LATE_EVENTS
    assert dict(zip(LATE_EVENTS.column_names, row or (), strict=True)) == {
        "shop_id": SHOP, "event_id": "click-9", "event_type": "click",
        "event_occurred_at": when(hours=2), "applied_at_watermark": when(hours=5),
        "lateness_ms": 3 * HOUR, "rules_version": "v1"}
    codec = Codec()
    assert codec.decode(codec.encode(report)) == report


def test_allowed_lateness_is_a_validated_rule_field() -> None:
    assert _rules(90 * MINUTE).event_time.allowed_lateness_ms == 90 * MINUTE
    with pytest.raises(ValueError, match="allowed_lateness_minutes"):
        rules_with({"event_time": {"allowed_lateness_minutes": -1}})
    with pytest.raises(ValueError, match="allowed_lateness_mins"):
        rules_with({"event_time": {"allowed_lateness_mins": 5}})
    later = DEFAULT_RULES.with_lateness(15)
    assert later.event_time.allowed_lateness_ms == 15 * MINUTE
    assert later.version == f"{DEFAULT_RULES.version}-lateness-15"
    assert (later.model_dump(exclude={"version", "event_time"})
            == DEFAULT_RULES.model_dump(exclude={"version", "event_time"}))


@pytest.mark.parametrize("lateness", [0, HOUR])
def test_every_permutation_of_a_referees_events_within_the_lateness_decides_the_same(
        lateness: int) -> None:
    """All 24 orders of share, click, signup and order, two minutes apart, each then
    followed by a stall: with an hour of lateness identical outputs; with none, not always
    (the decisions were taken before the events they needed)."""
    log = ShopLog()
    events = [log.share("alice", "R-alice", at=when(0)),
              log.click("v-bob", at=when(minutes=2), code="R-alice"),
              log.signup("bob", at=when(minutes=4), visitor="v-bob"),
              log.order("o-1", "bob", 40_000, at=when(minutes=6))]
    rules = rules_with({"version": "v-no-grace", "attribution": {"grace_period_minutes": 0},
                        "event_time": {"allowed_lateness_minutes": lateness // MINUTE}})
    end = ShopLog().tick(at=when(days=120))
    outcomes = {_summary(run([*order, end], rules))
                for order in itertools.permutations(events)}
    assert (len(outcomes) == 1) == (lateness > 0)
