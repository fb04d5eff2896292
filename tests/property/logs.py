"""Plausible shop logs for property tests: shares, clicks with codes, signups, orders, returns,
reviews and ticks over a small cast (so codes, devices and cards collide), with repeats.

The builder draws through a `Chooser`, so hypothesis (drawn integers, shrinking) or a seeded
`random.Random` (cross-process checks) can drive the same shapes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from refstream.rewards.rules import Rules
from refstream.schemas.events import (
    Click,
    LogEvent,
    OrderPlaced,
    OrderReturned,
    ReviewDecided,
    Share,
    Signup,
    Tick,
)
from refstream.schemas.ids import referral_id
from tests.unit.core.builders import DAY, DEFAULT_RULES, HOUR, MINUTE, SECOND, T0, rules_with

T = TypeVar("T")

SHOPS = ("shop-1", "shop-1", "shop-1", "shop-2")
REFERRERS = ("alice", "carol", "inf-001")
CUSTOMERS = ("bob", "dan", "eve", "fay", "gus", "alice", "carol")
VISITORS = ("v1", "v2", "v3", "v4", "v5")
SHARE_CAMPAIGNS = (None, "friends", "friends", "vip", "podcast")
UTM_CAMPAIGNS = (None, None, "friends", "vip", "podcast-fall", "partner-blog")
SOURCES = (None, "email", "coupons-a", "coupons-b", "social")
IPS = ("ip:1", "ip:2", "ip:3")
DEVICES = (None, "dev-1", "dev-2")
EMAILS = ("email:a", "email:b", "email:c", "email:d", "email:e")
PAYMENTS = (None, "payment:1", "payment:2")
ADDRESSES = (None, "address:1", "address:2")
AMOUNTS = (500, 4_999, 20_000, 40_000)
GAPS = (0, SECOND, MINUTE, 10 * MINUTE, HOUR, HOUR, DAY, 10 * DAY, 31 * DAY)
KINDS = ("share", "click", "click", "click", "signup", "signup", "order", "order", "return",
         "review", "tick", "repeat")


class Chooser(Protocol):
    def pick(self, options: Sequence[T]) -> T: ...
    def below(self, n: int) -> int: ...


class IndexChooser:
    """Consumes drawn integers: hypothesis shrinks them towards 0, i.e. the first options."""

    def __init__(self, numbers: Sequence[int]) -> None:
        self._numbers = numbers
        self._next = 0

    def _take(self) -> int:
        position = self._next
        self._next += 1
        return self._numbers[position] if position < len(self._numbers) else 0

    def pick(self, options: Sequence[T]) -> T:
        return options[self._take() % len(options)]

    def below(self, n: int) -> int:
        return self._take() % n


class RandomChooser:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def pick(self, options: Sequence[T]) -> T:
        return options[self._rng.randrange(len(options))]

    def below(self, n: int) -> int:
        return self._rng.randrange(n)


def build_log(choose: Chooser, length: int) -> list[LogEvent]:
    """`length` events in log order; time mostly moves on, sometimes an event arrives late."""
    events: list[LogEvent] = []
    orders: list[tuple[str, str, str]] = []  # (shop, order id, customer)
    now = T0 - 2 * DAY
    for n in range(length):
        now += choose.pick(GAPS)
        at = now - choose.pick((0, 0, 0, 5 * SECOND, 2 * HOUR))  # some producers lag
        shop = choose.pick(SHOPS)
        kind = choose.pick(KINDS)
        event_id = f"e{n}"
        event: LogEvent
        if kind == "repeat" and events:
            event = events[choose.below(len(events))]
        elif kind == "share":
            referrer = choose.pick(REFERRERS)
            event = Share(event_id, shop, at, referrer, f"R-{referrer}", "email",
                          choose.pick(SHARE_CAMPAIGNS))
        elif kind == "click":
            event = Click(event_id, shop, at, choose.pick(VISITORS), "https://shop.example/",
                          choose.pick(IPS), "agent", _code(choose), None, choose.pick(SOURCES),
                          None, choose.pick(UTM_CAMPAIGNS), choose.pick(DEVICES))
        elif kind == "signup":
            event = Signup(event_id, shop, at, choose.pick(CUSTOMERS), choose.pick(EMAILS),
                           choose.pick(IPS), choose.pick((*VISITORS, None)), _code(choose),
                           choose.pick(DEVICES))
        elif kind == "order":
            if orders and choose.below(6) == 0:
                _, order_id, customer = orders[choose.below(len(orders))]  # a retried order
            else:
                order_id, customer = f"o{n}", choose.pick(CUSTOMERS)
                orders.append((shop, order_id, customer))
            event = OrderPlaced(event_id, shop, at, order_id, customer, choose.pick(AMOUNTS),
                                "EUR", choose.pick(IPS), choose.pick((*VISITORS, None)),
                                _code(choose), choose.pick(DEVICES), choose.pick(PAYMENTS),
                                choose.pick(ADDRESSES))
        elif kind == "return" and orders:
            order_shop, order_id, customer = orders[choose.below(len(orders))]
            return_id = choose.pick((f"r{n}", f"r{n}", "r-repeated"))
            event = OrderReturned(event_id, order_shop, at, return_id, order_id, customer,
                                  choose.pick(AMOUNTS), "EUR")
        elif kind == "review":
            event = ReviewDecided(event_id, shop, at, referral_id(shop, choose.pick(CUSTOMERS)),
                                  choose.pick(("approve", "reject")), "reviewer")
        else:
            event = Tick(event_id, shop, now)
        events.append(event)
    return events


def _code(choose: Chooser) -> str | None:
    return choose.pick((None, None, "R-alice", "R-carol", "R-inf-001", "R-unknown"))


def _friends_only() -> list[dict[str, Any]]:
    return [{"id": "friends", "type": "customer_to_customer", "utm_campaign": "friends",
             "referrer_reward": {"kind": "credit", "fixed_minor": 1000},
             "referee_reward": {"kind": "credit", "fixed_minor": 500}}]


# Variants that exercise other branches: touch model, grace, triggers, hold, caps, actions.
RULE_VARIANTS: tuple[Rules, ...] = (
    DEFAULT_RULES,
    rules_with({"version": "v-first-touch",
                "attribution": {"model": "first_touch", "code_overrides_link": False,
                                "grace_period_minutes": 0},
                "rewards": {"hold_period_days": 0, "return_policy": "full_return",
                            "caps": [{"period_days": 1, "max_count": 1,
                                      "max_amount_minor": 1200}],
                            "tiers": [{"at_successful_referrals": 1, "kind": "cash",
                                       "fixed_minor": 300}]}}),
    rules_with({"version": "v-signup", "qualification": {"trigger": "signup"},
                "campaigns": _friends_only(),
                "fraud": {"ip_velocity": {"threshold": 2}, "device_velocity": {"threshold": 2},
                          "broadcasting": {"min_distinct_visitors": 2,
                                           "min_distinct_sources": 2, "action": "hold"},
                          "return_abuse": {"action": "block"}}}),
    rules_with({"version": "v-nth", "qualification": {"trigger": "nth_order", "n": 2,
                                                      "new_customers_only": False},
                "fraud": {"payment_shared": {"threshold": 2, "action": "block"},
                          "shipping_matches_referrer": {"action": "block"}}}),
)
