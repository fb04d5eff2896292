"""A shop's events appended out of event-time order, within the grace period, decide the same.

Ingest reads a shop's topics independently: a first order may be appended just before its
signup, a share just after the click that used its code. Within the grace period the core
decides by event time, not by log order.
"""

from __future__ import annotations

import itertools
import pickle

import pytest

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import Rules
from refstream.schemas.events import Attribution, LogEvent, RewardDue, RewardStatus
from refstream.schemas.ids import referral_id
from tests.unit.core.builders import (
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

BOB = referral_id(SHOP, "bob")
SIGNUP_AT = when(hours=2)
ORDER_AT = SIGNUP_AT + 3 * 60_000  # minutes after the signup, well within the grace
AFTER_HOLD = ORDER_AT + HOLD + GRACE

Outcome = tuple[list[tuple[str, str, str | None]], list[str]]


def _referee_events(*, code_at_signup: bool = False) -> list[LogEvent]:
    """share < click < signup < order in event time, in that (time) order."""
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.signup("bob", at=SIGNUP_AT, visitor="v-bob",
               code="R-alice" if code_at_signup else None)
    log.order("o-1", "bob", 40_000, at=ORDER_AT)
    return log.events


def _outcome(events: list[LogEvent], rules: Rules = DEFAULT_RULES) -> Outcome:
    """The referral's last status per referral, and the reward ids that fell due."""
    tail = ShopLog()
    outputs = run([*events, tail.tick(at=AFTER_HOLD)], rules)
    last: dict[str, tuple[str, str, str | None]] = {}
    for attribution in of_type(outputs, Attribution):
        last[attribution.referral_id] = (attribution.referral_id, attribution.status,
                                         attribution.qualifying_order_id)
    return sorted(last.values()), sorted(d.reward_id for d in of_type(outputs, RewardDue))


def test_the_reported_order_before_signup_log_is_attributed_and_paid() -> None:
    share, click, signup, order = _referee_events()
    in_time = _outcome([share, click, signup, order])
    assert in_time[0] == [(BOB, "qualified", "o-1")] and len(in_time[1]) == 2
    assert _outcome([share, click, order, signup]) == in_time


@pytest.mark.parametrize("rules", [
    DEFAULT_RULES,
    rules_with({"version": "v-signup", "qualification": {"trigger": "signup"},
                "campaigns": [{"id": "friends", "type": "customer_to_customer",
                               "utm_campaign": "friends",
                               "referrer_reward": {"kind": "credit", "fixed_minor": 1000},
                               "referee_reward": {"kind": "credit", "fixed_minor": 500}}]}),
    rules_with({"version": "v-first-touch", "attribution": {"model": "first_touch"}}),
], ids=lambda rules: rules.version)
@pytest.mark.parametrize("code_at_signup", [False, True])
def test_every_permutation_within_the_grace_decides_as_event_time_order(
        rules: Rules, code_at_signup: bool) -> None:
    events = _referee_events(code_at_signup=code_at_signup)
    expected = _outcome(events, rules)
    assert expected[0] and expected[1]  # the event-time order is a paid referral
    for permutation in itertools.permutations(events):
        assert _outcome(list(permutation), rules) == expected, [
            e.event_id for e in permutation]


def test_a_share_appended_after_the_signup_still_names_the_referrer() -> None:
    share, click, signup, order = _referee_events()
    outputs = run([click, signup, share, order, ShopLog().tick(at=SIGNUP_AT + GRACE)])
    [decided, qualified] = of_type(outputs, Attribution)
    assert (decided.referrer_id, decided.referral_code, decided.campaign_id) == (
        "alice", "R-alice", "friends")
    assert (qualified.status, qualified.qualifying_order_id) == ("qualified", "o-1")


def test_an_order_without_a_signup_within_the_grace_is_an_existing_customer() -> None:
    share, click, _, order = _referee_events()
    log = ShopLog()
    log.tick(at=ORDER_AT + GRACE)  # the grace after the order passes: no signup came
    late = log.signup("bob", at=SIGNUP_AT, visitor="v-bob")
    pipeline = run_pipeline([share, click, order, *log.events])
    bob = pipeline.state.shops[SHOP].customers["bob"]
    assert (bob.existed_before_log, bob.signed_up, bob.pending) == (True, True, None)
    assert pipeline.state.shops[SHOP].referrals == {}
    assert late.customer_id == "bob"


def test_a_signup_after_the_first_order_in_event_time_is_an_existing_customer() -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.order("o-1", "bob", 40_000, at=when(hours=1))
    # Appended within the grace after the order, but it happened after the order.
    log.signup("bob", at=when(hours=1) + 60_000, code="R-alice")
    outputs = run(log.events)
    assert [(a.status, a.reason) for a in of_type(outputs, Attribution)] == [
        ("rejected", "existing customer: ordered before the touch")]
    assert of_type(outputs, RewardStatus) == []


def test_an_existing_customers_checkout_code_is_decided_once_the_grace_is_over() -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.order("o-old", "cust-1", 3_000, at=when(hours=1), code="R-alice")
    log.tick(at=when(hours=1) + GRACE - 1)
    assert of_type(run(log.events), Attribution) == []  # a signup may still precede it
    log.tick(at=when(hours=1) + GRACE)
    [rejected] = of_type(run(log.events), Attribution)
    assert (rejected.status, rejected.reason, rejected.occurred_at) == (
        "rejected", "existing customer: ordered before the touch", when(hours=1) + GRACE)


def test_orders_appended_out_of_time_order_before_the_signup_qualify_by_time() -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(hours=1), code="R-alice")
    log.order("o-2", "bob", 40_000, at=SIGNUP_AT + 2 * 60_000)
    log.order("o-1", "bob", 40_000, at=SIGNUP_AT + 60_000)
    log.signup("bob", at=SIGNUP_AT, visitor="v-bob")
    log.tick(at=SIGNUP_AT + GRACE)
    [_, qualified] = of_type(run(log.events), Attribution)
    assert (qualified.status, qualified.qualifying_order_id) == ("qualified", "o-1")


def test_waiting_for_a_signup_is_idempotent_and_survives_a_snapshot() -> None:
    share, click, signup, order = _referee_events()
    events = [share, click, order, signup, ShopLog().tick(at=AFTER_HOLD)]
    expected = run(events)
    for cut in range(len(events) + 1):
        before = Pipeline(DEFAULT_RULES)
        outputs = [o for e in events[:cut] for o in before.apply(e)]
        state = pickle.dumps(before.state)
        assert [before.apply(e) for e in events[:cut]] == [[] for _ in range(cut)]
        assert before.state == pickle.loads(state)
        resumed = Pipeline.restore(DEFAULT_RULES, before.snapshot())
        assert resumed.state == before.state
        outputs += [o for e in events[cut:] for o in resumed.apply(e)]
        assert outputs == expected
