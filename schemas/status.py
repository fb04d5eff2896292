"""The status vocabularies, each defined once: referral and reward statuses, reward sides and
kinds, review decisions, fraud actions, reward-ledger entries; and their SQL spelling.

Each is a `StrEnum`, so a member *is* its string: the Avro bytes, the DuckDB rows, pickled
snapshots' meaning and every CSV/JSON output are those of the plain value. The core, the
tables and the reports use the members; SQL takes its literals from `sql_literal` and
`sql_list`, so renaming or adding a status is one edit here (tests/unit/schemas/
test_status_vocabulary.py fails on a status spelled by hand in report or table SQL).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final


class Vocabulary(StrEnum):
    """A vocabulary's base: its members pickle as their plain string, so a snapshot holds the
    same values it did before the vocabularies existed and stays readable by a release
    without this module (a rollback); it restores to strings equal to the members."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return str, (self.value,)


class AttributionStatus(Vocabulary):
    """`Attribution.status`, `referrals.status`: where a referral stands."""

    ATTRIBUTED = "attributed"  # a referrer is credited with the signup; not qualified yet
    QUALIFIED = "qualified"    # the referee met the rules' trigger; rewards were granted
    HELD = "held"              # waiting for a person's review (fraud controls)
    REJECTED = "rejected"      # not counted: self-referral, ineligible, a reviewer said no
    INVALID = "invalid"        # the touch did not count (e.g. its campaign was not running)


class RewardStatusName(Vocabulary):
    """`RewardStatus.status`, `rewards.status`: a reward's lifecycle step."""

    PENDING = "pending"    # waiting for the hold period to end
    HELD = "held"          # waiting for a fraud review
    DUE = "due"            # finance owes it (a RewardDue was sent)
    VOIDED = "voided"      # its order was returned inside the hold period
    REVERSED = "reversed"  # clawed back after it fell due (a RewardReversal was sent)
    REJECTED = "rejected"  # its referral was rejected (review, fraud block), or a cap was full


class RewardSide(Vocabulary):
    """Who a reward pays: the referrer or the referred customer."""

    REFERRER = "referrer"
    REFEREE = "referee"


class RewardKind(Vocabulary):
    """What a reward is paid in (the rules' `kind`); points are in the rules' points currency."""

    CREDIT = "credit"
    DISCOUNT = "discount"
    CASH = "cash"
    POINTS = "points"


class ReviewDecision(Vocabulary):
    """A reviewer's decision on a held referral (`ReviewDecided.decision`)."""

    APPROVE = "approve"
    REJECT = "reject"


class FraudAction(Vocabulary):
    """What a fraud signal does to the referrals it names (the rules' `action`)."""

    FLAG = "flag"    # record it; the referral goes on
    HOLD = "hold"    # hold the referral and its rewards for a review
    BLOCK = "block"  # reject the referral and its rewards


class LedgerEntry(Vocabulary):
    """`reward_ledger.entry_type`: a message finance was sent."""

    DUE = "due"            # a RewardDue: pay this reward
    REVERSAL = "reversal"  # a RewardReversal: claw it back


# Not a reward status the core sets: a due reward the payer's ledger recorded as paid (the
# payouts table the finance consumer writes). Reports and the referrer's page show it.
PAID: Final = "paid"

VOCABULARIES: tuple[type[StrEnum], ...] = (
    AttributionStatus, RewardStatusName, RewardSide, RewardKind, ReviewDecision, FraudAction,
    LedgerEntry)

# Referrals still in play: fraud actions and reviews reach them, reports count them as active
# (not rejected, not invalid). In declaration order, as SQL lists them.
ACTIVE_REFERRAL_STATUSES: tuple[AttributionStatus, ...] = (
    AttributionStatus.ATTRIBUTED, AttributionStatus.QUALIFIED, AttributionStatus.HELD)
# Rewards that may still be paid or are owed: granted and not taken back.
OWED_REWARD_STATUSES: tuple[RewardStatusName, ...] = (
    RewardStatusName.PENDING, RewardStatusName.HELD, RewardStatusName.DUE)
# A reward in these statuses will never fall due.
NEVER_DUE_REWARD_STATUSES: frozenset[RewardStatusName] = frozenset(
    {RewardStatusName.VOIDED, RewardStatusName.REJECTED})


def sql_literal(member: StrEnum) -> str:
    """A member as an SQL string literal: `'due'`."""
    if not isinstance(member, StrEnum):  # a plain string is exactly what this replaces
        raise TypeError(f"sql_literal takes a status member, not {member!r}")
    return f"'{member.value}'"


def sql_list(members: Iterable[StrEnum]) -> str:
    """Members as an SQL list for `IN`: `('pending', 'held', 'due')`, in the order given
    (a set in its vocabulary's declaration order, so the text is always the same)."""
    if isinstance(members, (set, frozenset)):
        ordered = sorted(members, key=lambda m: list(type(m).__members__).index(m.name))
    else:
        ordered = list(members)
    if not ordered:
        raise ValueError("sql_list needs at least one member: `IN ()` is not SQL")
    return "(" + ", ".join(sql_literal(m) for m in ordered) + ")"
