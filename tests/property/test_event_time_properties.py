"""Event time as invariants over generated shop logs (tests/property/logs.py):

- any arrival order that keeps every event within the allowed lateness of its time-sorted
  position (and equal times in log order) gives the same derived events as the sorted log:
  referrals, flags, rewards, amounts, all of them;
- every event that arrives after its shop's watermark passed it, and only such an event, is
  reported once by a LateArrival (a repeat of an applied event is no late arrival);
- events later than the lateness change nothing decided before their time, and every
  referral whose money differs from the sorted log's is marked late by the read model.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_case
from hypothesis import strategies as st

from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import Pipeline, is_organic
from refstream.rewards.rules import Rules
from refstream.schemas.events import (
    Attribution,
    Click,
    DerivedEvent,
    LateArrival,
    LogEvent,
    OrderPlaced,
    OrderReturned,
    RewardDue,
    RewardReversal,
    RewardStatus,
    Signup,
    Tick,
)
from tests.property.logs import RULE_VARIANTS, IndexChooser, build_log
from tests.unit.core.builders import DAY, HOUR, MINUTE

# build_log's producers lag up to two hours: three hours of lateness covers them.
LATENESS = 3 * HOUR


def _with_lateness(rules: Rules, lateness_ms: int) -> Rules:
    return rules.with_lateness(lateness_ms // MINUTE)


VARIANTS = tuple(_with_lateness(rules, LATENESS) for rules in RULE_VARIANTS)


def _run(rules: Rules, events: list[LogEvent]) -> list[DerivedEvent]:
    """Every derived event, once the watermark has passed everything (a final tick per
    shop, long after the log's last event)."""
    pipeline = Pipeline(rules)
    outputs = [o for event in events for o in pipeline.apply(event)]
    end = max(e.occurred_at for e in events) + 200 * DAY + rules.event_time.allowed_lateness_ms
    for shop in sorted({e.shop_id for e in events}):
        outputs += pipeline.apply(Tick(f"end-{shop}", shop, end))
    return outputs


def _time_sorted(events: list[LogEvent]) -> list[LogEvent]:
    return sorted(events, key=lambda e: e.occurred_at)  # stable: log order among equal times


def _arrival(events: list[LogEvent], delays: list[int]) -> list[LogEvent]:
    """The events appended in order of time + delay (each delay within the lateness), equal
    times kept in their log order: when an event arrives, no event more than its delay
    later has arrived, so its shop's watermark has not passed it."""
    order = sorted(range(len(events)), key=lambda i: (events[i].occurred_at + delays[i], i))
    by_time: dict[int, list[LogEvent]] = {}
    for event in events:
        by_time.setdefault(event.occurred_at, []).append(event)
    taken: Counter[int] = Counter()
    arrived = []
    for i in order:
        at = events[i].occurred_at
        arrived.append(by_time[at][taken[at]])
        taken[at] += 1
    return arrived


MAX_LOG = 60
DRAWS_PER_EVENT = 16  # as tests/property/test_core_properties.py: one byte per choice
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def shop_logs(draw: st.DrawFn, min_length: int = 1) -> list[LogEvent]:
    length = draw(st.integers(min_length, MAX_LOG))
    choices = draw(st.binary(min_size=length * DRAWS_PER_EVENT,
                             max_size=length * DRAWS_PER_EVENT))
    return build_log(IndexChooser(choices), length)


@SETTINGS
@given(shop_logs(), st.sampled_from(VARIANTS), st.data())
def test_arrival_within_the_lateness_derives_what_the_sorted_log_derives(
        log: list[LogEvent], rules: Rules, data: st.DataObject) -> None:
    in_time = _time_sorted(log)
    lateness = rules.event_time.allowed_lateness_ms
    delays = data.draw(st.lists(st.sampled_from((0, 0, MINUTE, HOUR, lateness)),
                                min_size=len(in_time), max_size=len(in_time)), label="delays")
    appended = _arrival(in_time, delays)
    expected = _run(rules, in_time)
    outputs = _run(rules, appended)
    assert not [o for o in outputs if isinstance(o, LateArrival)]
    # Shops are independent: which shop's outputs come first follows the arrival.
    assert _by_shop(outputs) == _by_shop(expected)


def _by_shop(outputs: list[DerivedEvent]) -> dict[str, list[DerivedEvent]]:
    shops: dict[str, list[DerivedEvent]] = {}
    for output in outputs:
        shops.setdefault(output.shop_id, []).append(output)
    return shops


def _late_by_definition(rules: Rules, events: list[LogEvent]) -> list[str]:
    """The events a LateArrival must report, worked out from the log alone: not a repeat of
    an event id seen before, and earlier than the shop's largest time so far minus the
    lateness. (Only logs without natural-key repeats: which of two orders with one order id
    is the order depends on the core.)"""
    lateness = rules.event_time.allowed_lateness_ms
    latest: dict[str, int] = {}
    seen: set[str] = set()
    late = []
    for event in events:
        shop = event.shop_id
        counted = not isinstance(event, Tick) and not _organic(rules, event)
        if counted and event.event_id in seen:
            continue
        if counted:
            seen.add(event.event_id)
        if counted and shop in latest and event.occurred_at < latest[shop] - lateness:
            late.append(event.event_id)
        latest[shop] = max(latest.get(shop, event.occurred_at), event.occurred_at)
    return late


def _organic(rules: Rules, event: LogEvent) -> bool:
    return isinstance(event, Click) and is_organic(rules, event)


@SETTINGS
@given(shop_logs(), st.sampled_from((0, 30 * MINUTE, LATENESS)))
def test_exactly_the_events_the_watermark_passed_are_reported_late(
        log: list[LogEvent], lateness: int) -> None:
    rules = _with_lateness(RULE_VARIANTS[0], lateness)
    events = _without_natural_key_repeats(log)
    outputs = _run(rules, events)
    reported = [o.event_id for o in outputs if isinstance(o, LateArrival)]
    assert reported == _late_by_definition(rules, events)
    assert all(o.lateness_ms > 0 for o in outputs if isinstance(o, LateArrival))


def _without_natural_key_repeats(events: list[LogEvent]) -> list[LogEvent]:
    """The log without a second order of one order id, return of one return id or signup
    of one customer under another event id (repeats of one event stay)."""
    first: dict[tuple[str, str, str], str] = {}
    kept = []
    for event in events:
        key = None
        if isinstance(event, OrderPlaced):
            key = ("order", event.shop_id, event.order_id)
        elif isinstance(event, OrderReturned):
            key = ("return", event.shop_id, event.return_id)
        elif isinstance(event, Signup):
            key = ("signup", event.shop_id, event.customer_id)
        if key is not None and first.setdefault(key, event.event_id) != event.event_id:
            continue
        kept.append(event)
    return kept


# --------------------------------------------------------------- late events (issue #18, 3)

def _stamped_before(outputs: list[DerivedEvent], since: int) -> dict[str, list[DerivedEvent]]:
    """Per shop, the derived events decided before `since` (a LateArrival is stamped when
    its event was applied, so it never falls here)."""
    return _by_shop([o for o in outputs if o.occurred_at < since
                     and not isinstance(o, LateArrival)])


def _money(outputs: list[DerivedEvent]) -> dict[str, tuple[object, ...]]:
    """Per referral id: its status and, per reward, status, amount, currency and what the
    ledger told finance (due, reversals) — the rows the read model keeps, latest wins."""
    status: dict[str, str] = {}
    rewards: dict[str, tuple[str, str, int, str]] = {}
    ledger: dict[str, list[tuple[str, int]]] = {}
    for o in outputs:
        if isinstance(o, Attribution):
            status[o.referral_id] = o.status
        elif isinstance(o, RewardStatus):
            rewards[o.reward_id] = (o.referral_id, o.status, o.amount_minor, o.currency)
        elif isinstance(o, RewardDue):
            ledger.setdefault(o.reward_id, []).append(("due", o.amount_minor))
        elif isinstance(o, RewardReversal):
            ledger.setdefault(o.reward_id, []).append(("reversal", o.amount_minor))
    per_referral: dict[str, list[object]] = {r: [s] for r, s in status.items()}
    for reward_id, (referral, reward_status, amount, currency) in sorted(rewards.items()):
        per_referral.setdefault(referral, [None]).append(
            (reward_id, reward_status, amount, currency, tuple(ledger.get(reward_id, ()))))
    return {r: tuple(v) for r, v in per_referral.items()}


def _marked_late(outputs: list[DerivedEvent]) -> set[str]:
    """The referral ids the read model marks late (the `referrals_marked_late` view over
    the tables these outputs fill), asked of DuckDB as an analyst would."""
    store = ProjectionStore(":memory:")
    try:
        store.add_all(outputs)
        store.flush()
        rows = store.connection.execute(
            "SELECT DISTINCT referral_id FROM referrals_marked_late").fetchall()
    finally:
        store.close()
    return {r for (r,) in rows}


def _first_decision(outputs: list[DerivedEvent]) -> dict[str, int]:
    first: dict[str, int] = {}
    for o in outputs:
        referral = getattr(o, "referral_id", None)
        if isinstance(o, Attribution | RewardStatus) and referral is not None:
            first.setdefault(referral, o.occurred_at)
    return first


LATE_VARIANTS = (*VARIANTS, _with_lateness(RULE_VARIANTS[0], 0),
                 _with_lateness(RULE_VARIANTS[1], 30 * MINUTE))


@settings(SETTINGS, max_examples=400)
@given(shop_logs(min_length=10), st.sampled_from(LATE_VARIANTS), st.data())
def test_late_events_change_only_what_comes_after_them_and_the_rows_marked_late(
        log: list[LogEvent], rules: Rules, data: st.DataObject) -> None:
    """Events appended later than the allowed lateness: everything decided before the
    earliest late event's time is what the time-sorted log decides, and every referral
    whose money ends up different is marked late by the read model (or, missing from this
    run, was first decided after the earliest late event's time: the late_events table
    names it)."""
    in_time = _time_sorted(log)
    lateness = rules.event_time.allowed_lateness_ms
    delays = data.draw(st.lists(st.sampled_from((0, 0, 0, MINUTE, HOUR, lateness + HOUR,
                                                 lateness + DAY, lateness + 20 * DAY)),
                                min_size=len(in_time), max_size=len(in_time)), label="delays")
    appended = _arrival(in_time, delays)
    expected = _run(rules, in_time)
    outputs = _run(rules, appended)

    late_since: dict[str, int] = {}
    for o in outputs:
        if isinstance(o, LateArrival):
            late_since[o.shop_id] = min(late_since.get(o.shop_id, o.event_occurred_at),
                                        o.event_occurred_at)
    never = max(e.occurred_at for e in log) + 1000 * DAY
    for shop in {e.shop_id for e in log}:
        since = late_since.get(shop, never)
        # Never a silent edit: before the late event's time, both runs decided the same.
        assert (_stamped_before(outputs, since).get(shop, [])
                == _stamped_before(expected, since).get(shop, []))

    want, got = _money(expected), _money(outputs)
    differ = sorted(r for r in want.keys() | got.keys() if want.get(r) != got.get(r))
    note_case(f"late events: {bool(late_since)}; referrals that differ: {len(differ)}")
    marked = _marked_late(outputs) if any(r in got for r in differ) else set()
    first = _first_decision(expected)
    shop_of = {o.referral_id: o.shop_id for o in expected + outputs
               if isinstance(o, Attribution | RewardStatus) and o.referral_id is not None}
    for referral in differ:
        if referral in got:
            assert referral in marked, (referral, want.get(referral), got[referral])
        else:
            since = late_since.get(shop_of[referral], never)
            assert first[referral] >= since, (referral, want[referral])
