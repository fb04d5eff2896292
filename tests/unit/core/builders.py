"""Small builders for scenario tests of the pure core: a shop's log, rules variants, outputs."""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import yaml

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import Rules, default_rules_path, load_rules
from refstream.schemas.events import (
    Click,
    DerivedEvent,
    LogEvent,
    OrderPlaced,
    OrderReturned,
    ReviewDecided,
    Share,
    Signup,
    Tick,
)

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_790_812_800_000  # 2026-10-01T00:00:00Z, the podcast campaign's start
SHOP = "shop-1"

DEFAULT_RULES = load_rules(default_rules_path())
GRACE = DEFAULT_RULES.attribution.grace_period_ms
HOLD = DEFAULT_RULES.rewards.hold_period_ms

T = TypeVar("T")


def when(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> int:
    """Epoch ms at an offset from T0."""
    return T0 + int(days * DAY + hours * HOUR + minutes * MINUTE + seconds * SECOND)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def rules_with(overrides: dict[str, Any]) -> Rules:
    """The default rules with `overrides` deep-merged in (a value of None clears a key)."""
    document = yaml.safe_load(default_rules_path().read_text())
    return Rules.model_validate(_merge(document, overrides))


class ShopLog:
    """Builds one shop's log in order; event ids are `<kind>-<n>` in log order."""

    def __init__(self, shop_id: str = SHOP) -> None:
        self.shop_id = shop_id
        self.events: list[LogEvent] = []
        self._count = 0

    def _next_id(self, kind: str) -> str:
        self._count += 1
        return f"{kind}-{self._count}"

    def _add(self, event: T) -> T:
        self.events.append(event)  # type: ignore[arg-type]
        return event

    def share(self, referrer: str, code: str, *, at: int, campaign: str | None = None,
              channel: str = "email") -> Share:
        return self._add(Share(self._next_id("share"), self.shop_id, at, referrer, code,
                               channel, campaign))

    def click(self, visitor: str, *, at: int, code: str | None = None,
              campaign_id: str | None = None, utm_campaign: str | None = None,
              utm_source: str | None = None, ip: str | None = None,
              device: str | None = None) -> Click:
        return self._add(Click(self._next_id("click"), self.shop_id, at, visitor,
                               "https://shop.example/", ip or f"ip:{visitor}", "test-agent",
                               code, campaign_id, utm_source, None, utm_campaign, device))

    def signup(self, customer: str, *, at: int, visitor: str | None = None,
               code: str | None = None, email: str | None = None, ip: str | None = None,
               device: str | None = None) -> Signup:
        return self._add(Signup(self._next_id("signup"), self.shop_id, at, customer,
                                email or f"email:{customer}", ip or f"ip:{customer}", visitor,
                                code, device))

    def order(self, order_id: str, customer: str, amount: int, *, at: int,
              code: str | None = None, currency: str = "EUR", payment: str | None = None,
              shipping: str | None = None, device: str | None = None,
              visitor: str | None = None) -> OrderPlaced:
        return self._add(OrderPlaced(self._next_id("order"), self.shop_id, at, order_id,
                                     customer, amount, currency, f"ip:{customer}", visitor,
                                     code, device, payment, shipping))

    def ret(self, return_id: str, order_id: str, customer: str, amount: int, *,
            at: int) -> OrderReturned:
        return self._add(OrderReturned(self._next_id("return"), self.shop_id, at, return_id,
                                       order_id, customer, amount, "EUR"))

    def review(self, referral_id: str, decision: str, *, at: int,
               reviewer: str = "reviewer-1") -> ReviewDecided:
        return self._add(ReviewDecided(self._next_id("review"), self.shop_id, at, referral_id,
                                       decision, reviewer))  # type: ignore[arg-type]

    def tick(self, *, at: int) -> Tick:
        return self._add(Tick(self._next_id("tick"), self.shop_id, at))


def run(events: list[LogEvent], rules: Rules = DEFAULT_RULES) -> list[DerivedEvent]:
    pipeline = Pipeline(rules)
    return [out for event in events for out in pipeline.apply(event)]


def run_pipeline(events: list[LogEvent], rules: Rules = DEFAULT_RULES) -> Pipeline:
    pipeline = Pipeline(rules)
    for event in events:
        pipeline.apply(event)
    return pipeline


def of_type(outputs: list[DerivedEvent], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]
