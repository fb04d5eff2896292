"""Fraud signals of one shop: velocity, multi-accounting, self-referral, broadcasting, returns.

Each check folds one fact into sliding windows and returns verdicts: a FraudFlag with its
evidence and the referrals its action (flag, hold, block) applies to. Pure; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from refstream.fraud.identity import ENTITY_TYPE, SHIPPING, Fact, Identity, first_seen
from refstream.fraud.policy import CountingSignal, RulesView
from refstream.fraud.windows import WindowGroup
from refstream.schemas.events import FraudFlag
from refstream.schemas.ids import flag_id
from refstream.schemas.status import FraudAction

# Signal names as they appear on FraudFlag.signal and in the rules' `fraud` section.
IP_VELOCITY: Final = "ip_velocity"
DEVICE_VELOCITY: Final = "device_velocity"
PAYMENT_SHARED: Final = "payment_shared"
SHIPPING_SHARED: Final = "shipping_shared"
SHIPPING_MATCHES_REFERRER: Final = "shipping_matches_referrer"
SELF_REFERRAL: Final = "self_referral"
BROADCASTING: Final = "broadcasting"
RETURN_ABUSE: Final = "return_abuse"

# Match signals fire on one fact and watch no window.
_ONE_FACT, _NO_WINDOW = 1, 0
_VISITORS, _SOURCES = 0, 1  # dimensions of a code's window


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal as the rules set it: what a flag says about its threshold and action."""

    name: str
    entity_type: str
    threshold: int
    window_ms: int
    action: FraudAction


@dataclass(frozen=True, slots=True)
class FraudSignals:
    """The fraud section of one rules version, read once: thresholds, windows, actions."""

    rules_version: str
    ip_velocity: Signal
    device_velocity: Signal
    payment_shared: Signal
    shipping_shared: Signal
    shipping_matches_referrer: Signal
    self_referral: Signal
    broadcasting: Signal  # threshold: distinct visitors
    broadcasting_min_sources: int
    return_abuse: Signal

    @classmethod
    def from_rules(cls, rules: RulesView) -> FraudSignals:
        fraud = rules.fraud

        def counting(name: str, entity_type: str, rule: CountingSignal) -> Signal:
            return Signal(name, entity_type, rule.threshold, rule.window_ms, rule.action)

        def matching(name: str, entity_type: str, action: FraudAction) -> Signal:
            return Signal(name, entity_type, _ONE_FACT, _NO_WINDOW, action)

        broadcast = fraud.broadcasting
        return cls(
            rules_version=rules.version,
            ip_velocity=counting(IP_VELOCITY, "ip_hash", fraud.ip_velocity),
            device_velocity=counting(DEVICE_VELOCITY, "device", fraud.device_velocity),
            payment_shared=counting(PAYMENT_SHARED, "payment_hash", fraud.payment_shared),
            shipping_shared=counting(SHIPPING_SHARED, "shipping_hash", fraud.shipping_shared),
            shipping_matches_referrer=matching(SHIPPING_MATCHES_REFERRER, "shipping_hash",
                                               fraud.shipping_matches_referrer.action),
            self_referral=matching(SELF_REFERRAL, "identity", fraud.self_referral.action),
            broadcasting=Signal(BROADCASTING, "referral_code", broadcast.min_distinct_visitors,
                                broadcast.window_ms, broadcast.action),
            broadcasting_min_sources=broadcast.min_distinct_sources,
            return_abuse=matching(RETURN_ABUSE, "customer", fraud.return_abuse.action))


@dataclass(frozen=True, slots=True)
class FraudVerdict:
    """A flag, and the referrals (oldest first) its action applies to."""

    flag: FraudFlag
    referral_ids: tuple[str, ...]


def _group(signal: Signal, dimensions: int = 1) -> WindowGroup:
    return WindowGroup(signal.window_ms, dimensions)


@dataclass(slots=True)
class FraudState:
    """Per shop: one window per watched entity and signal."""

    shop_id: str
    ip_windows: WindowGroup
    device_windows: WindowGroup
    payment_windows: WindowGroup
    shipping_windows: WindowGroup
    code_windows: WindowGroup
    # Referrals attributed through a code within the broadcasting window, so a
    # broadcasting action can reach them.
    code_referrals: WindowGroup
    # "referral|kind|value" already flagged, so a repeated match is not flagged again.
    matched_identities: set[str] = field(default_factory=set)

    @classmethod
    def empty(cls, shop_id: str, signals: FraudSignals) -> FraudState:
        return cls(shop_id, _group(signals.ip_velocity), _group(signals.device_velocity),
                   _group(signals.payment_shared), _group(signals.shipping_shared),
                   _group(signals.broadcasting, dimensions=2), _group(signals.broadcasting))


def _flag(state: FraudState, signals: FraudSignals, now: int, *, episode_id: str,
          signal: Signal, entity_type: str, entity_key: str, observed: int,
          evidence: tuple[str, ...], referral_id: str | None) -> FraudFlag:
    return FraudFlag(
        flag_id=episode_id, shop_id=state.shop_id, occurred_at=now,
        rules_version=signals.rules_version, signal=signal.name, entity_type=entity_type,
        entity_key=entity_key, threshold=signal.threshold, observed=observed,
        window_ms=signal.window_ms, action=signal.action, evidence_event_ids=evidence,
        referral_id=referral_id)


def _count_referees(state: FraudState, signals: FraudSignals, now: int, *,
                    group: WindowGroup, signal: Signal, key: str, referral_id: str, at: int,
                    event_id: str) -> list[FraudVerdict]:
    """Add one referee fact; a verdict when the episode opens or reaches a new referee."""
    group.sweep(now)
    window, new_referee = group.add(key, at, event_id, (referral_id,))
    observed = window.distinct()
    if observed < signal.threshold:
        window.open_flag_id = None
        return []
    if window.open_flag_id is None:
        # The episode keeps the id it opened with, whatever slides out of the window later.
        window.open_flag_id = flag_id(state.shop_id, signal.name, key, window.opening_event_id)
        concerned = window.members_in_order()
    elif new_referee:
        concerned = (referral_id,)
    else:
        return []
    flag = _flag(state, signals, now, episode_id=window.open_flag_id, signal=signal,
                 entity_type=signal.entity_type, entity_key=key, observed=observed,
                 evidence=window.evidence(), referral_id=referral_id)
    return [FraudVerdict(flag, concerned)]


def referred_conversion(state: FraudState, signals: FraudSignals, now: int, *,
                        referral_id: str, at: int, event_id: str, ip_hash: str | None,
                        device_id: str | None, code: str | None) -> list[FraudVerdict]:
    """A referee was attributed to a referrer: velocity per IP and device, open broadcasts."""
    verdicts: list[FraudVerdict] = []
    if ip_hash:
        verdicts += _count_referees(state, signals, now, group=state.ip_windows,
                                    signal=signals.ip_velocity, key=ip_hash,
                                    referral_id=referral_id, at=at, event_id=event_id)
    if device_id:
        verdicts += _count_referees(state, signals, now, group=state.device_windows,
                                    signal=signals.device_velocity, key=device_id,
                                    referral_id=referral_id, at=at, event_id=event_id)
    if code:
        verdicts += _broadcast_reaches(state, signals, now, code=code, referral_id=referral_id,
                                       at=at, event_id=event_id)
    return verdicts


def referee_ordered(state: FraudState, signals: FraudSignals, now: int, *, referral_id: str,
                    at: int, event_id: str, payment_hash: str | None,
                    shipping_hash: str | None) -> list[FraudVerdict]:
    """Multi-accounting: one payment method or shipping address across many referees."""
    verdicts: list[FraudVerdict] = []
    if payment_hash:
        verdicts += _count_referees(state, signals, now, group=state.payment_windows,
                                    signal=signals.payment_shared, key=payment_hash,
                                    referral_id=referral_id, at=at, event_id=event_id)
    if shipping_hash:
        verdicts += _count_referees(state, signals, now, group=state.shipping_windows,
                                    signal=signals.shipping_shared, key=shipping_hash,
                                    referral_id=referral_id, at=at, event_id=event_id)
    return verdicts


def matches_referrer(state: FraudState, signals: FraudSignals, now: int, *, referral_id: str,
                     referee: Iterable[Fact], referrer: Identity) -> list[FraudVerdict]:
    """Self-referral: the referee shows an email, device or payment (or shipping) of the
    referrer. Verdicts come in the order the referee revealed the identifiers."""
    verdicts: list[FraudVerdict] = []
    for kind, value, referee_event in referee:
        referrer_event = first_seen(referrer, kind, value)
        if referrer_event is None:
            continue
        already = f"{referral_id}|{kind}|{value}"
        if already in state.matched_identities:
            continue
        state.matched_identities.add(already)
        signal = signals.shipping_matches_referrer if kind == SHIPPING else signals.self_referral
        flag = _flag(state, signals, now,
                     episode_id=flag_id(state.shop_id, signal.name, value, referee_event),
                     signal=signal, entity_type=ENTITY_TYPE[kind], entity_key=value,
                     observed=_ONE_FACT, evidence=tuple(sorted({referee_event, referrer_event})),
                     referral_id=referral_id)
        verdicts.append(FraudVerdict(flag, (referral_id,)))
    return verdicts


def code_used(state: FraudState, signals: FraudSignals, now: int, *, code: str, visitor: str,
              source: str, at: int, event_id: str) -> list[FraudVerdict]:
    """Broadcasting: a personal code used by many distinct visitors from several sources."""
    group = state.code_windows
    group.sweep(now)
    window, _ = group.add(code, at, event_id, (visitor, source))
    signal = signals.broadcasting
    if (window.distinct(_VISITORS) < signal.threshold
            or window.distinct(_SOURCES) < signals.broadcasting_min_sources):
        window.open_flag_id = None
        return []
    if window.open_flag_id is not None:
        return []
    window.open_flag_id = flag_id(state.shop_id, BROADCASTING, code, window.opening_event_id)
    referrals = state.code_referrals.windows.get(code)
    concerned: tuple[str, ...] = ()
    if referrals is not None:
        referrals.prune(window.newest_at)
        concerned = referrals.members_in_order()
    flag = _flag(state, signals, now, episode_id=window.open_flag_id, signal=signal,
                 entity_type=signal.entity_type, entity_key=code,
                 observed=window.distinct(_VISITORS), evidence=window.evidence(),
                 referral_id=concerned[-1] if concerned else None)
    return [FraudVerdict(flag, concerned)]


def _broadcast_reaches(state: FraudState, signals: FraudSignals, now: int, *, code: str,
                       referral_id: str, at: int, event_id: str) -> list[FraudVerdict]:
    """Record a referral through `code`; if the code is being broadcast, it is concerned too."""
    state.code_referrals.sweep(now)
    state.code_referrals.add(code, at, event_id, (referral_id,))
    signal = signals.broadcasting
    window = state.code_windows.windows.get(code)
    if window is None or window.open_flag_id is None or not window.size:
        return []
    window.prune(max(at, window.newest_at))
    if (window.distinct(_VISITORS) < signal.threshold
            or window.distinct(_SOURCES) < signals.broadcasting_min_sources):
        window.open_flag_id = None
        return []
    flag = _flag(state, signals, now, episode_id=window.open_flag_id, signal=signal,
                 entity_type=signal.entity_type, entity_key=code,
                 observed=window.distinct(_VISITORS), evidence=window.evidence(),
                 referral_id=referral_id)
    return [FraudVerdict(flag, (referral_id,))]


def qualifying_return(state: FraudState, signals: FraudSignals, now: int, *, referral_id: str,
                      referee_id: str, order_event_id: str,
                      return_event_id: str) -> list[FraudVerdict]:
    """Return abuse: a referred order was returned after it triggered the reward."""
    signal = signals.return_abuse
    flag = _flag(state, signals, now,
                 episode_id=flag_id(state.shop_id, RETURN_ABUSE, referee_id, order_event_id),
                 signal=signal, entity_type=signal.entity_type, entity_key=referee_id,
                 observed=_ONE_FACT, evidence=tuple(sorted((order_event_id, return_event_id))),
                 referral_id=referral_id)
    return [FraudVerdict(flag, (referral_id,))]
