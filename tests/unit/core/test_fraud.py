"""Fraud: each signal flags with its evidence at its threshold, and its action holds or blocks."""

from __future__ import annotations

from typing import Any

import pytest

from refstream.schemas.events import (
    Attribution,
    DerivedEvent,
    FraudFlag,
    RewardDue,
    RewardStatus,
)
from refstream.schemas.ids import flag_id, referral_id
from tests.unit.core.builders import (
    DAY,
    DEFAULT_RULES,
    GRACE,
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

VERSION = DEFAULT_RULES.version
CODE = "R-alice"


def _log_with_code() -> ShopLog:
    log = ShopLog()
    log.share("alice", CODE, at=when(0), campaign="friends")
    return log


def _referred_signup(log: ShopLog, referee: str, at: int, **signup: Any) -> str:
    log.click(f"v-{referee}", at=at - MINUTE, code=CODE)
    return log.signup(referee, at=at, visitor=f"v-{referee}", **signup).event_id


def _status_of(outputs: list[DerivedEvent], referee: str) -> str:
    rid = referral_id(SHOP, referee)
    return [a.status for a in of_type(outputs, Attribution) if a.referral_id == rid][-1]


# ------------------------------------------------------------------------------- velocity


def test_more_than_five_referred_signups_from_one_ip_within_an_hour_are_held() -> None:
    log = _log_with_code()
    signups = [_referred_signup(log, f"c{n}", when(hours=1, minutes=5 * n), ip="ip:shared")
               for n in range(6)]
    log.tick(at=when(days=1))
    outputs = run(log.events)
    [flag] = of_type(outputs, FraudFlag)
    sixth_decided = when(hours=1, minutes=25) + GRACE
    assert flag == FraudFlag(
        flag_id=flag_id(SHOP, "ip_velocity", "ip:shared", signups[0]), shop_id=SHOP,
        occurred_at=sixth_decided, rules_version=VERSION, signal="ip_velocity",
        entity_type="ip_hash", entity_key="ip:shared", threshold=6, observed=6,
        window_ms=HOUR, action="hold", evidence_event_ids=tuple(sorted(signups)),
        referral_id=referral_id(SHOP, "c5"))
    after_flag = outputs[outputs.index(flag) + 1:]
    assert [(a.referee_id, a.status, a.revision) for a in of_type(after_flag, Attribution)] == [
        (f"c{n}", "held", 1) for n in range(6)]


def test_a_seventh_signup_in_the_same_burst_re_emits_the_flag_and_is_held_too() -> None:
    log = _log_with_code()
    for n in range(7):
        _referred_signup(log, f"c{n}", when(hours=1, minutes=5 * n), ip="ip:shared")
    log.tick(at=when(days=1))
    outputs = run(log.events)
    first, second = of_type(outputs, FraudFlag)
    assert second.flag_id == first.flag_id
    assert (second.observed, second.referral_id) == (7, referral_id(SHOP, "c6"))
    assert _status_of(outputs, "c6") == "held"


def test_five_signups_an_hour_or_six_spread_wider_are_not_flagged() -> None:
    log = _log_with_code()
    for n in range(5):
        _referred_signup(log, f"c{n}", when(hours=1, minutes=5 * n), ip="ip:shared")
    for n in range(6):
        _referred_signup(log, f"d{n}", when(days=1, minutes=13 * n), ip="ip:other")
    log.tick(at=when(days=2))
    assert of_type(run(log.events), FraudFlag) == []


def test_the_velocity_threshold_and_window_come_from_the_rules() -> None:
    log = _log_with_code()
    for n in range(3):
        _referred_signup(log, f"c{n}", when(hours=1, minutes=50 * n), ip="ip:shared")
    log.tick(at=when(days=1))
    assert of_type(run(log.events), FraudFlag) == []
    assert of_type(run(log.events, rules_with(
        {"fraud": {"ip_velocity": {"threshold": 3}}})), FraudFlag) == []  # spans 100 minutes
    [flag] = of_type(run(log.events, rules_with(
        {"fraud": {"ip_velocity": {"threshold": 3, "window_minutes": 120}}})), FraudFlag)
    assert (flag.threshold, flag.observed, flag.window_ms) == (3, 3, 2 * HOUR)


def test_three_referred_accounts_on_one_device_within_72_hours_are_held() -> None:
    log = _log_with_code()
    for n in range(3):
        _referred_signup(log, f"c{n}", when(hours=1 + 30 * n), device="dev-rig")
    log.tick(at=when(days=5))
    outputs = run(log.events)
    [flag] = of_type(outputs, FraudFlag)
    assert (flag.signal, flag.entity_type, flag.entity_key, flag.observed, flag.window_ms) == (
        "device_velocity", "device", "dev-rig", 3, 72 * HOUR)
    assert [_status_of(outputs, f"c{n}") for n in range(3)] == ["held"] * 3


def test_the_action_of_a_signal_comes_from_the_rules() -> None:
    log = _log_with_code()
    for n in range(3):
        _referred_signup(log, f"c{n}", when(hours=1 + n), device="dev-rig")
    log.tick(at=when(days=1))
    blocked = run(log.events, rules_with({"fraud": {"device_velocity": {"action": "block"}}}))
    flagged = run(log.events, rules_with({"fraud": {"device_velocity": {"action": "flag"}}}))
    assert [_status_of(blocked, f"c{n}") for n in range(3)] == ["rejected"] * 3
    assert [_status_of(flagged, f"c{n}") for n in range(3)] == ["attributed"] * 3
    assert len(of_type(flagged, FraudFlag)) == 1


# -------------------------------------------------------------------------- multi-account


def test_one_payment_method_across_three_referees_holds_their_rewards() -> None:
    log = _log_with_code()
    for n in range(3):
        _referred_signup(log, f"c{n}", when(days=n, hours=1))
        log.order(f"o-{n}", f"c{n}", 20_000, at=when(days=n, hours=5), payment="pay:card")
    outputs = run(log.events)
    [flag] = of_type(outputs, FraudFlag)
    assert (flag.signal, flag.entity_key, flag.observed, flag.referral_id) == (
        "payment_shared", "pay:card", 3, referral_id(SHOP, "c2"))
    assert [_status_of(outputs, f"c{n}") for n in range(3)] == ["held"] * 3
    # The first two had pending rewards (now held); the third qualified while held.
    assert [(r.beneficiary_id, r.status) for r in of_type(outputs, RewardStatus)][-6:] == [
        ("alice", "held"), ("c0", "held"), ("alice", "held"), ("c1", "held"),
        ("alice", "held"), ("c2", "held")]


def test_one_shipping_address_across_three_referees_is_held() -> None:
    log = _log_with_code()
    for n in range(3):
        _referred_signup(log, f"c{n}", when(days=n, hours=1))
        log.order(f"o-{n}", f"c{n}", 20_000, at=when(days=n, hours=5), shipping="address:drop")
    [flag] = of_type(run(log.events), FraudFlag)
    assert (flag.signal, flag.entity_type, flag.threshold) == (
        "shipping_shared", "shipping_hash", 3)


# -------------------------------------------------------------------------- self-referral


def test_a_referee_with_the_referrers_mailbox_is_blocked() -> None:
    log = ShopLog()
    alice_signup = log.signup("alice", at=when(0), email="email:alice-box")
    log.share("alice", CODE, at=when(hours=1), campaign="friends")
    bob_signup = _referred_signup(log, "bob", when(hours=2), email="email:alice-box")
    log.order("o-1", "bob", 20_000, at=when(hours=5))
    outputs = run(log.events)
    [flag] = of_type(outputs, FraudFlag)
    bob = referral_id(SHOP, "bob")
    assert flag == FraudFlag(
        flag_id(SHOP, "self_referral", "email:alice-box", bob_signup), SHOP,
        when(hours=2) + GRACE, VERSION, "self_referral", "email_hash", "email:alice-box", 1, 1,
        0, "block", tuple(sorted((alice_signup.event_id, bob_signup))), bob)
    assert [(a.status, a.revision) for a in of_type(outputs, Attribution)] == [
        ("attributed", 0), ("rejected", 1)]
    assert of_type(outputs, Attribution)[-1].reason == (
        f"fraud signal self_referral on email_hash (flag {flag.flag_id})")
    assert of_type(outputs, RewardStatus) == []


def test_a_referee_on_the_referrers_device_is_blocked() -> None:
    log = ShopLog()
    log.signup("alice", at=when(0), device="dev-alice")
    log.share("alice", CODE, at=when(hours=1), campaign="friends")
    _referred_signup(log, "bob", when(hours=2), device="dev-alice")
    log.tick(at=when(days=1))
    outputs = run(log.events)
    assert [(f.signal, f.entity_type) for f in of_type(outputs, FraudFlag)] == [
        ("self_referral", "device")]
    assert _status_of(outputs, "bob") == "rejected"


def test_paying_with_the_referrers_card_blocks_before_any_reward() -> None:
    log = ShopLog()
    log.signup("alice", at=when(0))
    log.order("o-a", "alice", 5000, at=when(hours=1), payment="payment:alice-card")
    log.share("alice", CODE, at=when(hours=2), campaign="friends")
    _referred_signup(log, "bob", when(hours=3))
    log.order("o-1", "bob", 20_000, at=when(days=1), payment="payment:alice-card")
    outputs = run(log.events)
    assert [(f.signal, f.entity_type, f.action) for f in of_type(outputs, FraudFlag)] == [
        ("self_referral", "payment_hash", "block")]
    assert _status_of(outputs, "bob") == "rejected"
    assert of_type(outputs, RewardStatus) == []


def test_shipping_to_the_referrers_address_is_held_for_review() -> None:
    log = ShopLog()
    log.signup("alice", at=when(0))
    log.order("o-a", "alice", 5000, at=when(hours=1), shipping="address:home")
    log.share("alice", CODE, at=when(hours=2), campaign="friends")
    _referred_signup(log, "bob", when(hours=3))
    log.order("o-1", "bob", 20_000, at=when(days=1), shipping="address:home")
    outputs = run(log.events)
    assert [f.signal for f in of_type(outputs, FraudFlag)] == ["shipping_matches_referrer"]
    assert [(r.side, r.status) for r in of_type(outputs, RewardStatus)] == [
        ("referrer", "held"), ("referee", "held")]


# --------------------------------------------------------------------------- broadcasting


def _broadcast(log: ShopLog, visitors: int, sources: int, start: int) -> list[str]:
    return [log.click(f"v-{n}", at=start + n * HOUR, code=CODE,
                      utm_source=f"coupons-{n % sources}").event_id for n in range(visitors)]


def test_a_code_used_by_ten_visitors_from_three_sources_in_a_day_is_flagged() -> None:
    log = _log_with_code()
    clicks = _broadcast(log, visitors=10, sources=3, start=when(hours=1))
    [flag] = of_type(run(log.events), FraudFlag)
    assert flag == FraudFlag(
        flag_id(SHOP, "broadcasting", CODE, clicks[0]), SHOP, when(hours=10), VERSION,
        "broadcasting", "referral_code", CODE, 10, 10, 24 * HOUR, "flag",
        tuple(sorted(clicks)), None)


@pytest.mark.parametrize(("visitors", "sources", "spacing"), [
    (9, 3, HOUR), (10, 2, HOUR), (10, 3, 3 * HOUR)], ids=["few-visitors", "few-sources", "slow"])
def test_no_broadcast_below_any_threshold(visitors: int, sources: int, spacing: int) -> None:
    log = _log_with_code()
    for n in range(visitors):
        log.click(f"v-{n}", at=when(hours=1) + n * spacing, code=CODE,
                  utm_source=f"coupons-{n % sources}")
    assert of_type(run(log.events), FraudFlag) == []


def test_a_broadcast_held_by_the_rules_holds_the_referrals_through_the_code() -> None:
    log = _log_with_code()
    _referred_signup(log, "early", when(hours=1))
    log.tick(at=when(hours=2))
    _broadcast(log, visitors=10, sources=3, start=when(hours=2))
    _referred_signup(log, "late", when(hours=12))
    log.tick(at=when(days=1))
    outputs = run(log.events, rules_with({"fraud": {"broadcasting": {"action": "hold"}}}))
    flags = of_type(outputs, FraudFlag)
    assert [f.referral_id for f in flags] == [referral_id(SHOP, "early"),
                                              referral_id(SHOP, "late")]
    assert flags[0].flag_id == flags[1].flag_id
    assert (_status_of(outputs, "early"), _status_of(outputs, "late")) == ("held", "held")


# ---------------------------------------------------------------------------- return abuse


def test_returning_the_qualifying_order_is_flagged_as_return_abuse() -> None:
    log = _log_with_code()
    _referred_signup(log, "bob", when(hours=1))
    order = log.order("o-1", "bob", 20_000, at=when(days=1))
    returned = log.ret("r-1", "o-1", "bob", 20_000, at=when(days=3))
    [flag] = of_type(run(log.events), FraudFlag)
    assert (flag.signal, flag.entity_type, flag.entity_key, flag.action,
            flag.evidence_event_ids, flag.referral_id, flag.flag_id) == (
        "return_abuse", "customer", "bob", "flag",
        tuple(sorted((order.event_id, returned.event_id))), referral_id(SHOP, "bob"),
        flag_id(SHOP, "return_abuse", "bob", order.event_id))


# ---------------------------------------------------------------------------------- review


def _held_referral(log: ShopLog) -> int:
    """bob (referred) ships to alice's address: held; returns when bob ordered."""
    log.signup("alice", at=when(0))
    log.order("o-a", "alice", 5000, at=when(hours=1), shipping="address:home")
    log.share("alice", CODE, at=when(hours=2), campaign="friends")
    _referred_signup(log, "bob", when(hours=3))
    ordered_at = when(days=1)
    log.order("o-1", "bob", 20_000, at=ordered_at, shipping="address:home")
    return ordered_at


def test_approval_inside_the_hold_resumes_pending_then_due() -> None:
    log = ShopLog()
    ordered_at = _held_referral(log)
    log.review(referral_id(SHOP, "bob"), "approve", at=ordered_at + DAY)
    log.tick(at=ordered_at + HOLD)
    outputs = run(log.events)
    assert [(a.status, a.reason) for a in of_type(outputs, Attribution)][-1] == (
        "qualified", "approved in review by reviewer-1")
    assert [r.status for r in of_type(outputs, RewardStatus)] == [
        "held", "held", "pending", "pending", "due", "due"]
    assert [d.occurred_at for d in of_type(outputs, RewardDue)] == [ordered_at + HOLD] * 2


def test_a_held_reward_stays_held_past_its_due_date_until_approved() -> None:
    log = ShopLog()
    ordered_at = _held_referral(log)
    log.tick(at=ordered_at + HOLD + DAY)
    assert of_type(run(log.events), RewardDue) == []
    approved_at = ordered_at + HOLD + 2 * DAY
    log.review(referral_id(SHOP, "bob"), "approve", at=approved_at)
    outputs = run(log.events)
    assert [r.status for r in of_type(outputs, RewardStatus)] == ["held", "held", "due", "due"]
    assert [(d.occurred_at, d.due_at) for d in of_type(outputs, RewardDue)] == [
        (approved_at, ordered_at + HOLD)] * 2


def test_rejection_in_review_rejects_the_referral_and_its_rewards() -> None:
    log = ShopLog()
    ordered_at = _held_referral(log)
    log.review(referral_id(SHOP, "bob"), "reject", at=ordered_at + DAY)
    log.tick(at=ordered_at + HOLD + DAY)
    outputs = run(log.events)
    assert _status_of(outputs, "bob") == "rejected"
    assert [r.status for r in of_type(outputs, RewardStatus)] == [
        "held", "held", "rejected", "rejected"]
    assert of_type(outputs, RewardDue) == []


def test_a_review_of_a_referral_that_is_not_held_changes_nothing() -> None:
    log = _log_with_code()
    _referred_signup(log, "bob", when(hours=1))
    log.tick(at=when(days=1))
    before = run(log.events)
    log.review(referral_id(SHOP, "bob"), "reject", at=when(days=2))
    log.review(referral_id(SHOP, "nobody"), "approve", at=when(days=2))
    assert run(log.events) == before
