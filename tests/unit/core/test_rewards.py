"""Rewards: qualification triggers, amounts per side, hold period, returns, tiers and caps."""

from __future__ import annotations

from typing import Any

import yaml

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.events import (
    Attribution,
    DerivedEvent,
    RewardDue,
    RewardReversal,
    RewardStatus,
)
from refstream.schemas.ids import referral_id, reversal_id, reward_id
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
    when,
)

VERSION = DEFAULT_RULES.version
BOB = referral_id(SHOP, "bob")
BOB_REFERRER = reward_id(SHOP, BOB, "referrer", "qualification")
BOB_REFEREE = reward_id(SHOP, BOB, "referee", "qualification")
ORDER_AT = when(days=1)
DUE_AT = ORDER_AT + HOLD
FRIENDS_ONLY = [c for c in yaml.safe_load(default_rules_path().read_text())["campaigns"]
                if c["id"] == "friends"]


def _referred(log: ShopLog, referee: str, *, referrer: str = "alice", campaign: str | None =
              "friends", at: int = when(0)) -> None:
    """`referee` arrives through `referrer`'s link and signs up an hour later."""
    code = f"R-{referrer}"
    if not any(getattr(e, "referral_code", None) == code for e in log.events):
        log.share(referrer, code, at=at, campaign=campaign)
    log.click(f"v-{referee}", at=at + 1, code=code)
    log.signup(referee, at=at + 2, visitor=f"v-{referee}")


def _statuses(outputs: list[DerivedEvent]) -> list[tuple[str, str, int, str]]:
    return [(r.side, r.status, r.amount_minor, r.currency) for r in of_type(outputs, RewardStatus)]


def _friends_first_order(amount: int = 40_000) -> ShopLog:
    log = ShopLog()
    _referred(log, "bob")
    log.order("o-1", "bob", amount, at=ORDER_AT)
    return log


# -------------------------------------------------------------------------- the lifecycle


def test_a_first_order_qualifies_both_sides_and_they_fall_due_after_the_hold() -> None:
    log = _friends_first_order()
    log.tick(at=DUE_AT - 1)
    before_due = run(log.events)
    log.tick(at=DUE_AT)
    outputs = run(log.events)
    assert outputs[:len(before_due)] == before_due
    pending = RewardStatus(
        reward_id=BOB_REFERRER, shop_id=SHOP, occurred_at=ORDER_AT, rules_version=VERSION,
        status="pending", referral_id=BOB, beneficiary_id="alice", side="referrer",
        kind="credit", amount_minor=1000, currency="EUR", due_at=DUE_AT,
        reason="referral qualified by first_order", order_id="o-1", revision=0)
    referee_pending = RewardStatus(
        BOB_REFEREE, SHOP, ORDER_AT, VERSION, "pending", BOB, "bob", "referee", "credit", 500,
        "EUR", DUE_AT, "referral qualified by first_order", "o-1", 0)
    [attributed] = of_type(before_due[:1], Attribution)
    assert attributed.status == "attributed"
    assert before_due[1:] == [
        Attribution(BOB, SHOP, ORDER_AT, VERSION, "qualified", "bob", "alice", "R-alice",
                    "friends", "link", "qualified by first_order", "click-2", "signup-3",
                    "o-1", 1),
        pending, referee_pending]
    assert outputs[len(before_due):] == [
        RewardStatus(BOB_REFERRER, SHOP, DUE_AT, VERSION, "due", BOB, "alice", "referrer",
                     "credit", 1000, "EUR", DUE_AT, "hold period passed", "o-1", 1),
        RewardDue(BOB_REFERRER, SHOP, DUE_AT, VERSION, BOB, "alice", "referrer", "credit",
                  1000, "EUR", DUE_AT, "hold period passed", "o-1"),
        RewardStatus(BOB_REFEREE, SHOP, DUE_AT, VERSION, "due", BOB, "bob", "referee",
                     "credit", 500, "EUR", DUE_AT, "hold period passed", "o-1", 1),
        RewardDue(BOB_REFEREE, SHOP, DUE_AT, VERSION, BOB, "bob", "referee", "credit", 500,
                  "EUR", DUE_AT, "hold period passed", "o-1"),
    ]


def test_later_orders_do_not_qualify_again() -> None:
    log = _friends_first_order()
    log.order("o-2", "bob", 9000, at=ORDER_AT + DAY)
    assert len(of_type(run(log.events), RewardStatus)) == 2


def test_points_per_unit_spent_two_points_on_400_units_make_800() -> None:
    # The rules: 2 points per unit spent, first order of 400 -> 800 points.
    log = ShopLog()
    _referred(log, "bob", referrer="inf-001", campaign="vip")
    log.order("o-1", "bob", 40_000, at=ORDER_AT)
    [reward] = of_type(run(log.events), RewardStatus)
    assert (reward.beneficiary_id, reward.kind, reward.amount_minor, reward.currency) == (
        "inf-001", "points", 800, "PTS")


def test_points_count_whole_units_of_the_order_currency() -> None:
    log = ShopLog()
    _referred(log, "bob", referrer="inf-001", campaign="vip")
    log.order("o-1", "bob", 400, at=ORDER_AT, currency="JPY")  # 400 yen: no minor unit
    [reward] = of_type(run(log.events), RewardStatus)
    assert reward.amount_minor == 800


def test_a_percent_of_the_qualifying_order() -> None:
    log = ShopLog()
    _referred(log, "bob", campaign=None)  # no campaign: the programme's rewards apply
    log.order("o-1", "bob", 40_000, at=ORDER_AT)
    rules = rules_with({"rewards": {"referrer": {"kind": "cash", "fixed_minor": None,
                                                     "percent_of_order": 5}}})
    assert _statuses(run(log.events, rules)) == [
        ("referrer", "pending", 2000, "EUR"), ("referee", "pending", 500, "EUR")]


def test_one_sided_rewards_pay_the_referrer_only() -> None:
    log = ShopLog()
    _referred(log, "bob", campaign=None)
    log.order("o-1", "bob", 40_000, at=ORDER_AT)
    rules = rules_with({"rewards": {"referee": None}})
    assert _statuses(run(log.events, rules)) == [("referrer", "pending", 1000, "EUR")]


def test_a_zero_hold_period_makes_rewards_due_with_the_order() -> None:
    outputs = run(_friends_first_order().events, rules_with({"rewards": {"hold_period_days": 0}}))
    assert [(r.side, r.status, r.occurred_at, r.due_at) for r in of_type(outputs, RewardStatus)] \
        == [("referrer", "pending", ORDER_AT, ORDER_AT), ("referee", "pending", ORDER_AT, ORDER_AT),
            ("referrer", "due", ORDER_AT, ORDER_AT), ("referee", "due", ORDER_AT, ORDER_AT)]
    assert len(of_type(outputs, RewardDue)) == 2


# -------------------------------------------------------------------------------- triggers


def test_signup_trigger_qualifies_at_the_decision() -> None:
    log = ShopLog()
    _referred(log, "bob")
    log.tick(at=when(0) + 2 + HOLD)
    rules = rules_with({"qualification": {"trigger": "signup"}, "campaigns": FRIENDS_ONLY})
    outputs = run(log.events, rules)
    decided_at = when(0) + 2 + GRACE
    assert [(a.status, a.revision, a.occurred_at, a.qualifying_order_id)
            for a in of_type(outputs, Attribution)] == [
        ("attributed", 0, decided_at, None), ("qualified", 1, decided_at, None)]
    assert [(r.status, r.due_at, r.order_id) for r in of_type(outputs, RewardStatus)] == [
        ("pending", when(0) + 2 + HOLD, None), ("pending", when(0) + 2 + HOLD, None),
        ("due", when(0) + 2 + HOLD, None), ("due", when(0) + 2 + HOLD, None)]


def test_first_order_minimum_amount() -> None:
    rules = rules_with({"qualification": {"trigger": "first_order_min_amount",
                                          "min_amount_minor": 5000}})
    below = run(_friends_first_order(4999).events, rules)
    assert [(a.status, a.reason) for a in of_type(below, Attribution)][-1] == (
        "rejected", "first order below the minimum of 5000 minor units")
    assert of_type(below, RewardStatus) == []
    at_minimum = run(_friends_first_order(5000).events, rules)
    assert of_type(at_minimum, Attribution)[-1].status == "qualified"


def test_nth_order_trigger_waits_for_the_nth_order() -> None:
    log = _friends_first_order()
    rules = rules_with({"qualification": {"trigger": "nth_order", "n": 2}})
    assert of_type(run(log.events, rules), RewardStatus) == []
    log.order("o-2", "bob", 7000, at=ORDER_AT + DAY)
    outputs = run(log.events, rules)
    assert of_type(outputs, Attribution)[-1].qualifying_order_id == "o-2"
    assert [(r.order_id, r.due_at) for r in of_type(outputs, RewardStatus)] == [
        ("o-2", ORDER_AT + DAY + HOLD), ("o-2", ORDER_AT + DAY + HOLD)]


def test_an_order_inside_the_grace_period_qualifies_at_the_decision() -> None:
    log = ShopLog()
    _referred(log, "bob")
    log.order("o-1", "bob", 40_000, at=when(0) + 3)  # before the decision fires
    log.tick(at=when(days=1))
    outputs = run(log.events)
    decided_at = when(0) + 2 + GRACE
    assert [(a.status, a.occurred_at) for a in of_type(outputs, Attribution)] == [
        ("attributed", decided_at), ("qualified", decided_at)]
    # The hold runs from the order, not from the decision.
    assert of_type(outputs, RewardStatus)[0].due_at == when(0) + 3 + HOLD


# --------------------------------------------------------------------------------- returns


def test_a_return_inside_the_hold_voids_the_pending_rewards() -> None:
    log = _friends_first_order()
    log.ret("r-1", "o-1", "bob", 40_000, at=ORDER_AT + 5 * DAY)
    log.tick(at=DUE_AT + DAY)
    outputs = run(log.events)
    assert of_type(outputs, RewardDue) == []
    reason = "qualifying order returned inside the hold period (return r-1)"
    assert [(r.side, r.status, r.revision, r.reason) for r in of_type(outputs, RewardStatus)] == [
        ("referrer", "pending", 0, "referral qualified by first_order"),
        ("referee", "pending", 0, "referral qualified by first_order"),
        ("referrer", "voided", 1, reason), ("referee", "voided", 1, reason)]
    assert (of_type(outputs, Attribution)[-1].status,
            of_type(outputs, Attribution)[-1].reason) == ("rejected", reason)


def test_a_return_after_the_rewards_fell_due_reverses_them() -> None:
    log = _friends_first_order()
    log.tick(at=DUE_AT)
    returned_at = DUE_AT + DAY
    log.ret("r-1", "o-1", "bob", 40_000, at=returned_at)
    outputs = run(log.events)
    reason = "qualifying order returned after the rewards fell due (return r-1)"
    assert of_type(outputs, RewardReversal) == [
        RewardReversal(reversal_id(BOB_REFERRER, "r-1"), BOB_REFERRER, SHOP, returned_at,
                       VERSION, "alice", 1000, "EUR", reason, "r-1"),
        RewardReversal(reversal_id(BOB_REFEREE, "r-1"), BOB_REFEREE, SHOP, returned_at,
                       VERSION, "bob", 500, "EUR", reason, "r-1")]
    assert [(r.status, r.revision) for r in of_type(outputs, RewardStatus)][-2:] == [
        ("reversed", 2), ("reversed", 2)]
    # Finance was told once, and the clawback is its own event: the RewardDue stays as sent.
    assert len(of_type(outputs, RewardDue)) == 2


def test_a_return_at_the_hold_deadline_comes_after_the_rewards_fell_due() -> None:
    log = _friends_first_order()
    log.ret("r-1", "o-1", "bob", 40_000, at=DUE_AT)
    outputs = run(log.events)
    assert len(of_type(outputs, RewardDue)) == 2
    assert len(of_type(outputs, RewardReversal)) == 2


def test_full_return_policy_ignores_a_partial_return() -> None:
    rules = rules_with({"rewards": {"return_policy": "full_return"}})
    log = _friends_first_order()
    log.ret("r-1", "o-1", "bob", 10_000, at=ORDER_AT + DAY)
    assert [r.status for r in of_type(run(log.events, rules), RewardStatus)] == [
        "pending", "pending"]
    log.ret("r-2", "o-1", "bob", 30_000, at=ORDER_AT + 2 * DAY)
    assert [r.status for r in of_type(run(log.events, rules), RewardStatus)] == [
        "pending", "pending", "voided", "voided"]
    # Under any_return the first, partial return already voids.
    assert [r.status for r in of_type(run(log.events), RewardStatus)][2:] == ["voided", "voided"]


def test_returns_of_other_orders_change_nothing() -> None:
    log = _friends_first_order()
    log.order("o-2", "bob", 9000, at=ORDER_AT + DAY)
    log.ret("r-1", "o-2", "bob", 9000, at=ORDER_AT + 2 * DAY)
    before = run(log.events[:-1])
    assert run(log.events) == before


# ------------------------------------------------------------------------- tiers and caps


def _referrals_of_alice(count: int, spacing: int = DAY) -> ShopLog:
    log = ShopLog()
    for n in range(count):
        referee = f"ref-{n}"
        _referred(log, referee, at=when(0) + n * spacing)
        log.order(f"o-{n}", referee, 40_000, at=when(0) + n * spacing + 3)
    log.tick(at=when(0) + count * spacing + HOLD)
    return log


def test_a_tier_bonus_is_due_when_the_third_referral_succeeds() -> None:
    outputs = run(_referrals_of_alice(3).events)
    third = referral_id(SHOP, "ref-2")
    tier_id = reward_id(SHOP, third, "referrer", "tier-3")
    tier_due_at = when(0) + 2 * DAY + 3 + HOLD
    assert of_type(outputs, RewardDue)[-1] == RewardDue(
        tier_id, SHOP, tier_due_at, VERSION, third, "alice", "referrer", "credit", 2000, "EUR",
        tier_due_at, "tier bonus at 3 successful referrals", "o-2")
    assert [r.reward_id for r in of_type(outputs, RewardDue)].count(tier_id) == 1


def test_two_referrals_earn_no_tier_bonus() -> None:
    outputs = run(_referrals_of_alice(2).events)
    assert not [r for r in of_type(outputs, RewardDue) if r.reason.startswith("tier")]


def test_a_count_cap_rejects_the_referrer_reward_beyond_it() -> None:
    rules = rules_with({"rewards": {"caps": [{"period_days": 30, "max_count": 1}]}})
    outputs = run(_referrals_of_alice(2).events, rules)
    referrer_rewards = [r for r in of_type(outputs, RewardStatus)
                        if r.side == "referrer" and r.revision == 0]
    assert [(r.status, r.amount_minor, r.reason) for r in referrer_rewards] == [
        ("pending", 1000, "referral qualified by first_order"),
        ("rejected", 1000,
         "referral qualified by first_order; cap reached: 1 rewards per 30 days")]
    # The referee's side is not capped.
    assert [r.status for r in of_type(outputs, RewardStatus)
            if r.side == "referee" and r.revision == 0] == ["pending", "pending"]


def test_an_amount_cap_cuts_then_refuses() -> None:
    rules = rules_with({"rewards": {"caps": [{"period_days": 30, "max_amount_minor": 1500}]}})
    outputs = run(_referrals_of_alice(3).events, rules)
    assert [(r.status, r.amount_minor) for r in of_type(outputs, RewardStatus)
            if r.reason.startswith("referral qualified") and r.side == "referrer"] == [
        ("pending", 1000), ("pending", 500), ("rejected", 1000)]


def test_caps_apply_per_period() -> None:
    rules = rules_with({"rewards": {"caps": [{"period_days": 30, "max_count": 1}]}})
    outputs = run(_referrals_of_alice(2, spacing=31 * DAY).events, rules)
    assert [r.status for r in of_type(outputs, RewardStatus)
            if r.side == "referrer" and r.revision == 0] == ["pending", "pending"]


def test_a_voided_reward_frees_its_place_under_the_cap() -> None:
    rules = rules_with({"rewards": {"caps": [{"period_days": 30, "max_count": 1}]}})
    log = ShopLog()
    _referred(log, "bob")
    log.order("o-1", "bob", 40_000, at=ORDER_AT)
    log.ret("r-1", "o-1", "bob", 40_000, at=ORDER_AT + DAY)
    _referred(log, "carol", at=ORDER_AT + 2 * DAY)
    log.order("o-2", "carol", 40_000, at=ORDER_AT + 3 * DAY)
    carol_referrer = reward_id(SHOP, referral_id(SHOP, "carol"), "referrer", "qualification")
    [granted] = [r for r in of_type(run(log.events, rules), RewardStatus)
                 if r.reward_id == carol_referrer]
    assert granted.status == "pending"


# ------------------------------------------------------------------------------ identity


def test_reward_ids_survive_a_rules_version_change() -> None:
    log = _friends_first_order()
    log.tick(at=DUE_AT)
    rollout: dict[str, Any] = {"version": "2026.12-rollout",
                               "qualification": {"trigger": "nth_order", "n": 1}}
    before, after = run(log.events), run(log.events, rules_with(rollout))
    assert [d.reward_id for d in of_type(before, RewardDue)] == [
        d.reward_id for d in of_type(after, RewardDue)] == [BOB_REFERRER, BOB_REFEREE]
    assert {d.rules_version for d in of_type(after, RewardDue)} == {"2026.12-rollout"}


def test_the_shipped_cash_programme_pays_a_share_of_the_second_order() -> None:
    rules = load_rules(default_rules_path().parent / "cash-second-order.yaml")
    log = _friends_first_order(40_000)
    log.order("o-2", "bob", 25_000, at=ORDER_AT + DAY)
    log.tick(at=ORDER_AT + DAY + rules.rewards.hold_period_ms)
    outputs = run(log.events, rules)
    assert [(d.beneficiary_id, d.kind, d.amount_minor, d.order_id, d.rules_version)
            for d in of_type(outputs, RewardDue)] == [
        ("alice", "cash", 2500, "o-2", "2026.11-cash-second-order"),
        ("bob", "discount", 500, "o-2", "2026.11-cash-second-order")]
