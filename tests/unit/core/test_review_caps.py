"""Held rewards and the referrer's caps: a reward waiting for review takes no cap slot (unless
the rules say `held_rewards_use_caps`), so a genuine referral later in the period keeps its
reward; the held one meets the caps when a reviewer releases it."""

from __future__ import annotations

from refstream.schemas.events import RewardStatus
from refstream.schemas.ids import referral_id, reward_id
from tests.unit.core.builders import HOLD, SHOP, ShopLog, of_type, rules_with, run, when

ONE_PER_MONTH = {"period_days": 30, "max_count": 1}


def _held_bob_then_genuine_carol() -> ShopLog:
    log = ShopLog()
    log.signup("alice", at=when(0))
    log.order("o-a", "alice", 5000, at=when(hours=1), shipping="address:home")
    log.share("alice", "R-alice", at=when(hours=2), campaign="friends")
    # bob ships to alice's address: held for review (shipping_matches_referrer).
    log.click("v-bob", at=when(hours=3), code="R-alice")
    log.signup("bob", at=when(hours=3, minutes=1), visitor="v-bob")
    log.order("o-b", "bob", 20_000, at=when(days=1), shipping="address:home")
    # carol, a genuine referral later in the same 30 days.
    log.click("v-carol", at=when(days=2), code="R-alice")
    log.signup("carol", at=when(days=2, minutes=1), visitor="v-carol")
    log.order("o-c", "carol", 20_000, at=when(days=3), shipping="address:carol")
    return log


def _referrer_reward(outputs: list, referee: str) -> RewardStatus:  # type: ignore[type-arg]
    rid = reward_id(SHOP, referral_id(SHOP, referee), "referrer", "qualification")
    return [r for r in of_type(outputs, RewardStatus) if r.reward_id == rid][-1]


def test_a_held_reward_leaves_the_cap_slot_to_a_genuine_referral() -> None:
    rules = rules_with({"rewards": {"caps": [ONE_PER_MONTH]}})
    outputs = run(_held_bob_then_genuine_carol().events, rules)
    assert _referrer_reward(outputs, "bob").status == "held"
    assert _referrer_reward(outputs, "carol").status == "pending"


def test_the_rules_can_make_held_rewards_take_their_slot() -> None:
    rules = rules_with({"rewards": {"caps": [ONE_PER_MONTH], "held_rewards_use_caps": True}})
    outputs = run(_held_bob_then_genuine_carol().events, rules)
    carol = _referrer_reward(outputs, "carol")
    assert (carol.status, carol.reason) == (
        "rejected", "referral qualified by first_order; cap reached: 1 rewards per 30 days")


def test_released_after_the_slot_was_taken_the_held_reward_meets_the_cap() -> None:
    rules = rules_with({"rewards": {"caps": [ONE_PER_MONTH]}})
    log = _held_bob_then_genuine_carol()
    log.review(referral_id(SHOP, "bob"), "approve", at=when(days=4))
    outputs = run(log.events, rules)
    bob = _referrer_reward(outputs, "bob")
    assert bob.status == "rejected"
    assert bob.reason == ("approved in review by reviewer-1; "
                          "cap reached: 1 rewards per 30 days")
    assert _referrer_reward(outputs, "carol").status == "pending"


def test_released_with_room_under_the_cap_the_reward_goes_on() -> None:
    rules = rules_with({"rewards": {"caps": [{"period_days": 30, "max_count": 2}]}})
    log = _held_bob_then_genuine_carol()
    log.review(referral_id(SHOP, "bob"), "approve", at=when(days=4))
    log.tick(at=when(days=3) + HOLD + 1)
    outputs = run(log.events, rules)
    assert _referrer_reward(outputs, "bob").status == "due"
    assert _referrer_reward(outputs, "carol").status == "due"
