"""The reward ledger of one shop: every reward's lifecycle, per-referrer caps and tier bonuses.

pending -> due after the hold period; held by fraud until reviewed; voided by a return inside
the hold; reversed (never edited) by a return after it fell due. Ids are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from refstream.persistence.records import by_fields
from refstream.rewards.eligibility import reward_amount
from refstream.rewards.rules import Cap, RewardSpec, Rules
from refstream.schemas.events import RewardDue, RewardReversal, RewardStatus
from refstream.schemas.ids import reversal_id, reward_id
from refstream.schemas.status import (
    OWED_REWARD_STATUSES,
    RewardKind,
    RewardSide,
    RewardStatusName,
)

# Rewards that count against a referrer's caps: granted and not (yet) taken back; held
# ones only when the rules say so (`held_rewards_use_caps`), else from their release on.
_LIVE = frozenset(OWED_REWARD_STATUSES)
_LIVE_RELEASED = frozenset({RewardStatusName.PENDING, RewardStatusName.DUE})
# Rewards a review, a block or a return inside the hold period still reaches: not yet due.
_NOT_YET_DUE = (RewardStatusName.PENDING, RewardStatusName.HELD)

# The reward-kind part of a reward id; the trigger is left out on purpose, so a rules
# change of trigger cannot mint a second payable reward for the same referral and side.
QUALIFICATION: Final = "qualification"

LedgerOutput = RewardStatus | RewardDue | RewardReversal


@dataclass(slots=True, init=False)
class Reward:
    reward_id: str
    referral_id: str
    beneficiary_id: str
    side: RewardSide
    kind: RewardKind
    amount_minor: int
    currency: str
    due_at: int
    reason: str
    order_id: str | None
    status: RewardStatusName
    revision: int = 0

    # Written out (init=False): mypyc compiles an explicit __init__, while a dataclass-
    # generated one stays interpreted, a Python call per object on the hot path.
    def __init__(self, reward_id: str, referral_id: str, beneficiary_id: str,  # noqa: PLR0917
                 side: RewardSide, kind: RewardKind, amount_minor: int, currency: str,
                 due_at: int, reason: str, order_id: str | None, status: RewardStatusName,
                 revision: int = 0) -> None:
        self.reward_id = reward_id
        self.referral_id = referral_id
        self.beneficiary_id = beneficiary_id
        self.side = side
        self.kind = kind
        self.amount_minor = amount_minor
        self.currency = currency
        self.due_at = due_at
        self.reason = reason
        self.order_id = order_id
        self.status = status
        self.revision = revision

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return by_fields(self)


@dataclass(slots=True)
class ReferrerRecord:
    successful_referrals: int = 0
    # (granted_at, reward_id) of referrer rewards within the longest cap period.
    recent_grants: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class LedgerState:
    shop_id: str
    rewards: dict[str, Reward] = field(default_factory=dict)
    by_referral: dict[str, list[str]] = field(default_factory=dict)
    referrers: dict[str, ReferrerRecord] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Qualification:
    """A referral met its trigger; what the ledger needs to grant its rewards."""

    referral_id: str
    referrer_id: str | None
    referee_id: str
    trigger: str
    qualified_at: int
    order_id: str | None
    order_amount_minor: int
    order_currency: str | None
    referrer_reward: RewardSpec | None
    referee_reward: RewardSpec | None
    held: bool


def _status(state: LedgerState, rules: Rules, now: int, reward: Reward) -> RewardStatus:
    return RewardStatus(reward.reward_id, state.shop_id, now, rules.version, reward.status,
                        reward.referral_id, reward.beneficiary_id, reward.side, reward.kind,
                        reward.amount_minor, reward.currency, reward.due_at, reward.reason,
                        reward.order_id, reward.revision)


def _due(state: LedgerState, rules: Rules, now: int, reward: Reward) -> RewardDue:
    return RewardDue(reward.reward_id, state.shop_id, now, rules.version, reward.referral_id,
                     reward.beneficiary_id, reward.side, reward.kind, reward.amount_minor,
                     reward.currency, reward.due_at, reward.reason, reward.order_id)


def _move(state: LedgerState, rules: Rules, now: int, reward: Reward, *,
          status: RewardStatusName, reason: str) -> RewardStatus:
    reward.status = status
    reward.reason = reason
    reward.revision += 1
    return _status(state, rules, now, reward)


def _add(state: LedgerState, reward: Reward) -> None:
    state.rewards[reward.reward_id] = reward
    state.by_referral.setdefault(reward.referral_id, []).append(reward.reward_id)


def _of_referral(state: LedgerState, referral_id: str) -> list[Reward]:
    return [state.rewards[r] for r in state.by_referral.get(referral_id, ())]


# ---------------------------------------------------------------------------------- grant


def grant(state: LedgerState, rules: Rules, now: int, q: Qualification) -> list[LedgerOutput]:
    """The rewards of a qualified referral: pending (or held), due after the hold period."""
    out: list[LedgerOutput] = []
    due_at = q.qualified_at + rules.rewards.hold_period_ms
    sides = ((RewardSide.REFERRER, q.referrer_id, q.referrer_reward),
             (RewardSide.REFEREE, q.referee_id, q.referee_reward))
    for side, beneficiary, spec in sides:
        if spec is None or beneficiary is None:
            continue
        amount, currency = reward_amount(spec, rules.rewards, q.order_amount_minor,
                                         q.order_currency)
        if amount <= 0:
            continue  # an order too small to earn a whole point or cent earns nothing
        rid = reward_id(state.shop_id, q.referral_id, side, QUALIFICATION)
        if rid in state.rewards:
            continue
        status = RewardStatusName.HELD if q.held else RewardStatusName.PENDING
        reason = f"referral qualified by {q.trigger}"
        if side == RewardSide.REFERRER and rules.rewards.caps:
            allowed, cap_note = _within_caps(state, rules, beneficiary, at=q.qualified_at,
                                             amount=amount, currency=currency)
            if cap_note:
                reason = f"{reason}; {cap_note}"
            if allowed == 0:
                # keeps the amount it would have paid, for the record
                status = RewardStatusName.REJECTED
            else:
                amount = allowed
        reward = Reward(rid, q.referral_id, beneficiary, side, spec.kind, amount, currency,
                        due_at, reason, q.order_id, status)
        _add(state, reward)
        if (side == RewardSide.REFERRER and status != RewardStatusName.REJECTED
                and rules.rewards.caps):
            _referrer(state, beneficiary).recent_grants.append((q.qualified_at, rid))
        out.append(_status(state, rules, now, reward))
    return out


def _referrer(state: LedgerState, referrer_id: str) -> ReferrerRecord:
    record = state.referrers.get(referrer_id)
    if record is None:
        record = state.referrers[referrer_id] = ReferrerRecord()
    return record


def _within_caps(state: LedgerState, rules: Rules, referrer_id: str, *, at: int, amount: int,
                 currency: str) -> tuple[int, str | None]:
    """The amount the caps still allow (0: none) and a note when a cap cut it."""
    recent = _referrer(state, referrer_id).recent_grants
    horizon = at - rules.rewards.longest_cap_ms
    expired = 0
    while expired < len(recent) and recent[expired][0] <= horizon:
        expired += 1
    del recent[:expired]
    note: str | None = None
    counted = _LIVE if rules.rewards.held_rewards_use_caps else _LIVE_RELEASED
    for cap in rules.rewards.caps:
        live = [state.rewards[rid] for granted_at, rid in recent
                if granted_at > at - cap.period_ms and state.rewards[rid].status in counted]
        if cap.max_count is not None and len(live) >= cap.max_count:
            return 0, f"cap reached: {cap.max_count} rewards per {cap.period_days} days"
        # Amount caps are in the rules' currency; points are limited by count caps only.
        if cap.max_amount_minor is not None and currency == rules.rewards.currency:
            room = cap.max_amount_minor - sum(
                r.amount_minor for r in live if r.currency == currency)
            if room <= 0:
                return 0, _amount_cap_note(cap)
            if amount > room:
                amount, note = room, f"cut to {room} by {_amount_cap_note(cap)}"
    return amount, note


def _amount_cap_note(cap: Cap) -> str:
    return f"cap reached: {cap.max_amount_minor} per {cap.period_days} days"


# ------------------------------------------------------------------------------ lifecycle


def hold(state: LedgerState, rules: Rules, now: int, referral_id: str,
         reason: str) -> list[LedgerOutput]:
    """Fraud review: pending rewards wait, whatever the hold period does meanwhile."""
    return [_move(state, rules, now, r, status=RewardStatusName.HELD, reason=reason)
            for r in _of_referral(state, referral_id) if r.status == RewardStatusName.PENDING]


def release(state: LedgerState, rules: Rules, now: int, referral_id: str, *, reason: str,
            hold_period_over: bool) -> list[LedgerOutput]:
    """A reviewer approved: held rewards go on to pending, or straight to due."""
    out: list[LedgerOutput] = []
    for reward in _of_referral(state, referral_id):
        if reward.status != RewardStatusName.HELD:
            continue
        if not _fits_caps_on_release(state, rules, reward):
            out.append(_move(state, rules, now, reward, status=RewardStatusName.REJECTED,
                             reason=f"{reason}; {reward.reason}"))
            continue
        if hold_period_over:
            out.append(_move(state, rules, now, reward, status=RewardStatusName.DUE, reason=reason))
            out.append(_due(state, rules, now, reward))
        else:
            out.append(_move(state, rules, now, reward, status=RewardStatusName.PENDING,
                             reason=reason))
    return out


def _fits_caps_on_release(state: LedgerState, rules: Rules, reward: Reward) -> bool:
    """A held referrer reward that took no cap slot while held takes one now, in the period
    it was granted in; the caps may cut it or leave no room (the reason then says which)."""
    if (reward.side != RewardSide.REFERRER or not rules.rewards.caps
            or rules.rewards.held_rewards_use_caps):
        return True
    granted = [t for t, rid in _referrer(state, reward.beneficiary_id).recent_grants
               if rid == reward.reward_id]
    if not granted:
        return True  # granted longer ago than the longest cap period: no cap applies
    allowed, note = _within_caps(state, rules, reward.beneficiary_id, at=granted[0],
                                 amount=reward.amount_minor, currency=reward.currency)
    if note:
        reward.reason = note
    if allowed == 0:
        return False
    reward.amount_minor = allowed
    return True


def settle(state: LedgerState, rules: Rules, now: int, referral_id: str) -> list[LedgerOutput]:
    """The hold period passed without a return: pending rewards fall due."""
    out: list[LedgerOutput] = []
    for reward in _of_referral(state, referral_id):
        if reward.status == RewardStatusName.PENDING:
            out.append(_move(state, rules, now, reward, status=RewardStatusName.DUE,
                             reason="hold period passed"))
            out.append(_due(state, rules, now, reward))
    return out


def reject(state: LedgerState, rules: Rules, now: int, referral_id: str,
           reason: str) -> list[LedgerOutput]:
    return [_move(state, rules, now, r, status=RewardStatusName.REJECTED, reason=reason)
            for r in _of_referral(state, referral_id) if r.status in _NOT_YET_DUE]


def void(state: LedgerState, rules: Rules, now: int, referral_id: str,
         reason: str) -> list[LedgerOutput]:
    """A return inside the hold period: nothing was paid, so nothing is owed."""
    return [_move(state, rules, now, r, status=RewardStatusName.VOIDED, reason=reason)
            for r in _of_referral(state, referral_id) if r.status in _NOT_YET_DUE]


def reverse(state: LedgerState, rules: Rules, now: int, referral_id: str,
            return_id: str) -> list[LedgerOutput]:
    """A return after the rewards fell due: a clawback event per reward, never an edit."""
    out: list[LedgerOutput] = []
    reason = f"qualifying order returned after the rewards fell due (return {return_id})"
    for reward in _of_referral(state, referral_id):
        if reward.status != RewardStatusName.DUE:
            continue
        out.append(_move(state, rules, now, reward, status=RewardStatusName.REVERSED,
                         reason=reason))
        out.append(RewardReversal(reversal_id(reward.reward_id, return_id), reward.reward_id,
                                  state.shop_id, now, rules.version, reward.beneficiary_id,
                                  reward.amount_minor, reward.currency, reason, return_id))
    return out


def record_success(state: LedgerState, rules: Rules, now: int, referral_id: str, *,
                   referrer_id: str, order_id: str | None) -> list[LedgerOutput]:
    """Count a referral whose hold passed; a tier bonus when the count reaches a tier.

    The bonus belongs to the referral that reached the tier, so it is reversed with that
    referral's rewards if its order comes back; counts never go down, so tiers pay once.
    """
    record = _referrer(state, referrer_id)
    record.successful_referrals += 1
    tier = rules.rewards.tier_by_level.get(record.successful_referrals)
    if tier is None:
        return []
    level = tier.at_successful_referrals
    rid = reward_id(state.shop_id, referral_id, RewardSide.REFERRER, f"tier-{level}")
    currency = (rules.rewards.points_currency if tier.kind == RewardKind.POINTS
                else rules.rewards.currency)
    reward = Reward(rid, referral_id, referrer_id, RewardSide.REFERRER, tier.kind,
                    tier.fixed_minor, currency, now, f"tier bonus at {level} successful referrals",
                    order_id, RewardStatusName.DUE)
    _add(state, reward)
    return [_status(state, rules, now, reward), _due(state, rules, now, reward)]
