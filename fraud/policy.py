"""What the fraud signals read from the rules, declared here so `fraud/` imports only `schemas`.

The versioned rules of `refstream.rewards.rules` satisfy these protocols structurally.
"""

from __future__ import annotations

from typing import Protocol

from refstream.schemas.status import FraudAction


class CountingSignal(Protocol):
    """Flags when `threshold` distinct referees fall within `window_ms` of each other."""

    @property
    def threshold(self) -> int: ...
    @property
    def window_ms(self) -> int: ...
    @property
    def action(self) -> FraudAction: ...


class BroadcastSignal(Protocol):
    @property
    def min_distinct_visitors(self) -> int: ...
    @property
    def min_distinct_sources(self) -> int: ...
    @property
    def window_ms(self) -> int: ...
    @property
    def action(self) -> FraudAction: ...


class MatchSignal(Protocol):
    """Fires on a single matching fact."""

    @property
    def action(self) -> FraudAction: ...


class FraudPolicy(Protocol):
    @property
    def ip_velocity(self) -> CountingSignal: ...
    @property
    def device_velocity(self) -> CountingSignal: ...
    @property
    def payment_shared(self) -> CountingSignal: ...
    @property
    def shipping_shared(self) -> CountingSignal: ...
    @property
    def shipping_matches_referrer(self) -> MatchSignal: ...
    @property
    def self_referral(self) -> MatchSignal: ...
    @property
    def broadcasting(self) -> BroadcastSignal: ...
    @property
    def return_abuse(self) -> MatchSignal: ...


class RulesView(Protocol):
    """The rules as fraud sees them: their version (stamped on flags) and the fraud section."""

    @property
    def version(self) -> str: ...
    @property
    def fraud(self) -> FraudPolicy: ...
