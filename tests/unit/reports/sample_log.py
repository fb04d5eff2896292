"""A small hand-built event log for the report tests: two shops, every number countable by hand.

Shop A (EUR): 31 existing customers (c01..c31, one 100.00 order each), c01 and c02 share
(5 + 3 invites), 35 referred visitors, 9 referred signups. Shop B (SEK): 10 existing
customers, one referral (its referee earns points, currency PTS). The story of each
referral is told in `shop_a_events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from refstream.persistence.store import ProjectionStore
from refstream.schemas.events import (
    Attribution,
    Click,
    FraudFlag,
    OrderPlaced,
    OrderReturned,
    RewardDue,
    RewardReversal,
    RewardStatus,
    Share,
    Signup,
)

# Monday 2 March 2026 is the first day of ISO week 2026-W10.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
RULES = "rules-test-1"
SHOP_A, SHOP_B = "shop-a", "shop-b"
HOUR_MS = 3_600_000


def at(days: float, hours: float = 0) -> int:
    return int((T0 + timedelta(days=days, hours=hours)).timestamp() * 1000)


def _click(shop: str, event_id: str, visitor: str, when: int, code: str | None = None, *,
           campaign: str | None = None) -> Click:
    return Click(event_id=event_id, shop_id=shop, occurred_at=when, visitor_id=visitor,
                 landing_url="https://shop.example/", ip_hash=f"ip-{visitor}",
                 user_agent="test", referral_code=code, campaign_id=campaign,
                 device_id=f"dev-{visitor}")


def _signup(shop: str, customer: str, when: int, visitor: str | None,
            code: str | None = None) -> Signup:
    return Signup(event_id=f"e-signup-{customer}", shop_id=shop, occurred_at=when,
                  customer_id=customer, email_hash=f"em-{customer}", ip_hash="ip",
                  visitor_id=visitor, referral_code=code)


def _order(shop: str, order_id: str, customer: str, when: int, amount: int, *,
           currency: str = "EUR", visitor: str | None = None) -> OrderPlaced:
    return OrderPlaced(event_id=f"e-{order_id}", shop_id=shop, occurred_at=when,
                       order_id=order_id, customer_id=customer, amount_minor=amount,
                       currency=currency, ip_hash="ip", visitor_id=visitor)


def _referral(shop: str, referee: str, status: str, when: int, referrer: str | None, *,
              campaign: str | None, revision: int = 0, touch: str = "link",
              touch_event: str | None = None, reason: str | None = None,
              order_id: str | None = None) -> Attribution:
    return Attribution(referral_id=f"ref-{referee}", shop_id=shop, occurred_at=when,
                       rules_version=RULES, status=status, referee_id=referee,
                       referrer_id=referrer, referral_code=f"code-{referrer}" if referrer
                       else None, campaign_id=campaign, touch=touch, reason=reason,
                       touch_event_id=touch_event, signup_event_id=f"e-signup-{referee}",
                       qualifying_order_id=order_id, revision=revision)


@dataclass(frozen=True)
class Reward:
    """Who a reward is for; its status events and due message repeat these fields."""

    reward_id: str
    referee: str
    beneficiary: str
    side: str
    amount: int
    currency: str = "EUR"
    kind: str = "credit"


def _reward(shop: str, reward: Reward, status: str, when: int, revision: int = 0
            ) -> RewardStatus:
    return RewardStatus(reward_id=reward.reward_id, shop_id=shop, occurred_at=when,
                        rules_version=RULES, status=status,
                        referral_id=f"ref-{reward.referee}",
                        beneficiary_id=reward.beneficiary, side=reward.side, kind=reward.kind,
                        amount_minor=reward.amount, currency=reward.currency, due_at=when,
                        reason="first order", revision=revision)


def _due(shop: str, reward: Reward, when: int) -> RewardDue:
    return RewardDue(reward_id=reward.reward_id, shop_id=shop, occurred_at=when,
                     rules_version=RULES, referral_id=f"ref-{reward.referee}",
                     beneficiary_id=reward.beneficiary, side=reward.side, kind=reward.kind,
                     amount_minor=reward.amount, currency=reward.currency, due_at=when,
                     reason="hold period passed")


def _flag(shop: str, flag_id: str, referee: str, signal: str, action: str, *, when: int,
          evidence: tuple[str, ...]) -> FraudFlag:
    return FraudFlag(flag_id=flag_id, shop_id=shop, occurred_at=when, rules_version=RULES,
                     signal=signal, entity_type="device", entity_key=f"dev-{referee}",
                     threshold=2, observed=3, window_ms=72 * HOUR_MS, action=action,
                     evidence_event_ids=evidence, referral_id=f"ref-{referee}")


def shop_a_events() -> list[Any]:
    s = SHOP_A
    events: list[Any] = []
    # Invites: c01 shares 5 times, c02 3 times (8 share events, 2 sharers).
    events += [Share(f"e-share-c01-{i}", s, at(0, i), "c01", "code-c01", "email", "cmp-c2c")
               for i in range(5)]
    events += [Share(f"e-share-c02-{i}", s, at(0, i), "c02", "code-c02", "chat", "cmp-c2c")
               for i in range(3)]
    # v1: clicks twice, signs up as n01, orders 100.00 on day 2 and 50.00 on day 20.
    events += [_click(s, "e-click-v1a", "v1", at(0, 1), "code-c01"),
               _click(s, "e-click-v1b", "v1", at(1), "code-c01"),
               _signup(s, "n01", at(0, 2), "v1", None),
               _referral(s, "n01", "attributed", at(0, 2), "c01", campaign="cmp-c2c"),
               _order(s, "o-n01-1", "n01", at(2), 10_000),
               _referral(s, "n01", "qualified", at(2), "c01", campaign="cmp-c2c", revision=1,
                         order_id="o-n01-1"),
               _order(s, "o-n01-2", "n01", at(20), 5_000)]
    # v2 -> n02: orders 80.00 on day 3; the reward falls due, then the order is returned in
    # full on day 25 and the referrer reward is reversed.
    events += [_click(s, "e-click-v2", "v2", at(0, 3), "code-c01"),
               _signup(s, "n02", at(0, 4), "v2"),
               _order(s, "o-n02-1", "n02", at(3), 8_000),
               _referral(s, "n02", "qualified", at(3), "c01", campaign="cmp-c2c",
                         order_id="o-n02-1"),
               OrderReturned("e-ret-n02", s, at(25), "ret-n02", "o-n02-1", "n02", 8_000,
                             "EUR")]
    # v3 -> n03: orders 60.00 on day 9 (8 days after the click: week 1); reward pending.
    events += [_click(s, "e-click-v3", "v3", at(1), "code-c02"),
               _signup(s, "n03", at(1, 1), "v3"),
               _order(s, "o-n03-1", "n03", at(9), 6_000),
               _referral(s, "n03", "qualified", at(9), "c02", campaign="cmp-c2c",
                         order_id="o-n03-1")]
    # v4 -> n04: signs up, never orders.
    events += [_click(s, "e-click-v4", "v4", at(1, 2), "code-c02"),
               _signup(s, "n04", at(1, 3), "v4"),
               _referral(s, "n04", "attributed", at(1, 3), "c02", campaign="cmp-c2c")]
    # v5 -> n05: a second account of c02 (self-referral): rejected, orders 30.00.
    events += [_click(s, "e-click-v5", "v5", at(2), "code-c02"),
               _signup(s, "n05", at(2, 0.5), "v5"),
               _order(s, "o-n05-1", "n05", at(2, 1), 3_000),
               _referral(s, "n05", "rejected", at(2, 1), "c02", campaign="cmp-c2c",
                         reason="self_referral")]
    # v6 -> n06: held for fraud review, orders 40.00 on day 5.
    events += [_click(s, "e-click-v6", "v6", at(2, 2), "code-c01"),
               _signup(s, "n06", at(2, 3), "v6"),
               _order(s, "o-n06-1", "n06", at(5), 4_000),
               _referral(s, "n06", "held", at(5), "c01", campaign="cmp-c2c", reason="fraud_review")]
    # v7 -> n08: clicked an expired campaign link: invalid, not a referral.
    events += [_click(s, "e-click-v7", "v7", at(3), campaign="cmp-old"),
               _signup(s, "n08", at(3, 1), "v7"),
               _referral(s, "n08", "invalid", at(3, 1), None, campaign="cmp-old",
                         reason="campaign_ended")]
    # v8 and v10 only click. v9 is existing customer c03, whose order on day 18 carries v9.
    events += [_click(s, "e-click-v8", "v8", at(3, 2), "code-c01"),
               _click(s, "e-click-v9", "v9", at(4), "code-c02"),
               _click(s, "e-click-v10", "v10", at(4, 1), "code-c01")]
    # v11 -> n11: a media campaign link (no referral code), orders 20.00 the same day (W11).
    events += [_click(s, "e-click-v11", "v11", at(8), campaign="cmp-media"),
               _signup(s, "n11", at(8, 1), "v11"),
               _order(s, "o-n11-1", "n11", at(8, 2), 2_000),
               _referral(s, "n11", "qualified", at(8, 2), None, campaign="cmp-media",
                         order_id="o-n11-1")]
    # n07 typed c02's code at signup without any click.
    events += [_signup(s, "n07", at(6), None, "code-c02"),
               _referral(s, "n07", "attributed", at(6), "c02", campaign="cmp-c2c",
                         touch="signup_code")]
    # 24 more referred visitors who never order: 12 in week W10, 12 in week W11.
    events += [_click(s, f"e-click-v{n}", f"v{n}", at(5), "code-c01") for n in range(12, 24)]
    events += [_click(s, f"e-click-v{n}", f"v{n}", at(9), "code-c02") for n in range(24, 36)]
    # A click without referral code or campaign is not a referral click.
    events.append(_click(s, "e-click-v99", "v99", at(4)))
    # Existing customers c01..c31 order 100.00 each on day 10; c03 does it on day 18 as v9.
    for n in range(1, 32):
        customer = f"c{n:02d}"
        if customer == "c03":
            events.append(_order(s, "o-c03", customer, at(18), 10_000, visitor="v9"))
        else:
            events.append(_order(s, f"o-{customer}", customer, at(10), 10_000))
    # Rewards: n01 both sides due; n02 referrer due then reversed; n03 pending; n06 held;
    # n05 rejected.
    n01_referrer = Reward("rw-n01-ref", "n01", "c01", "referrer", 1_000)
    n01_referee = Reward("rw-n01-ree", "n01", "n01", "referee", 500)
    n02_referrer = Reward("rw-n02-ref", "n02", "c01", "referrer", 1_000)
    events += [
        _reward(s, n01_referrer, "pending", at(2)),
        _reward(s, n01_referrer, "due", at(16), revision=1),
        _due(s, n01_referrer, at(16)),
        _reward(s, n01_referee, "due", at(16)),
        _due(s, n01_referee, at(16)),
        _reward(s, n02_referrer, "reversed", at(25)),
        _due(s, n02_referrer, at(17)),
        RewardReversal("rev-n02", "rw-n02-ref", s, at(25), RULES, "c01", 1_000, "EUR",
                       "order returned", "ret-n02"),
        _reward(s, Reward("rw-n03-ref", "n03", "c02", "referrer", 1_000), "pending", at(9)),
        _reward(s, Reward("rw-n06-ref", "n06", "c01", "referrer", 1_000), "held", at(5)),
        _reward(s, Reward("rw-n05-ref", "n05", "c02", "referrer", 1_000), "rejected", at(2)),
    ]
    # Fraud: two hold flags on held n06 (the queue), a block on rejected n05 and a flag-only
    # flag on n04 (neither is in the queue).
    events += [
        _flag(s, "flag-1", "n06", "shared_device", "hold", when=at(2, 3),
              evidence=("e-click-v6", "e-signup-n06")),
        _flag(s, "flag-2", "n06", "ip_velocity", "hold", when=at(5),
              evidence=("e-click-v6", "e-o-n06-1")),
        _flag(s, "flag-3", "n05", "self_referral", "block", when=at(2, 1),
              evidence=("e-signup-n05",)),
        _flag(s, "flag-4", "n04", "email_alias", "flag", when=at(1, 3),
              evidence=("e-signup-n04",)),
    ]
    return events


def shop_b_events() -> list[Any]:
    s = SHOP_B
    nb1_referrer = Reward("rw-nb1-ref", "nb1", "b01", "referrer", 2_000, currency="SEK")
    events: list[Any] = [
        Share("e-share-b01", s, at(0), "b01", "code-b01", "email"),
        _click(s, "e-click-vb1", "vb1", at(1), "code-b01"),
        _signup(s, "nb1", at(1, 1), "vb1"),
        _referral(s, "nb1", "attributed", at(1, 1), "b01", campaign=None),
        _order(s, "o-nb1-1", "nb1", at(2), 5_000, currency="SEK"),
        _referral(s, "nb1", "qualified", at(2), "b01", campaign=None, revision=1,
                  order_id="o-nb1-1"),
        _reward(s, nb1_referrer, "due", at(16)),
        _due(s, nb1_referrer, at(16)),
        # The referee earns 1,250 points (the rules' points currency), still pending.
        _reward(s, Reward("rw-nb1-ree", "nb1", "nb1", "referee", 1_250, currency="PTS",
                          kind="points"), "pending", at(2)),
    ]
    events += [_order(s, f"o-b{n:02d}", f"b{n:02d}", at(10), 20_000, currency="SEK")
               for n in range(1, 11)]
    return events


def build_sample_db(path: Path) -> Path:
    """Write both shops' events through the projection store and close it."""
    store = ProjectionStore(path)
    for event in [*shop_a_events(), *shop_b_events()]:
        store.add(event)
    store.close()
    return path
