"""Reward eligibility: whether an order qualifies a referral, and what a reward spec pays for it.

Pure functions of the rules and one order; the ledger decides what happens to the rewards.
"""

from __future__ import annotations

from typing import Literal

from refstream.rewards.rules import PERCENT, QualificationRules, RewardRules, RewardSpec
from refstream.schemas.status import RewardKind

OrderVerdict = Literal["qualifies", "not_yet", "never"]


def order_verdict(qualification: QualificationRules, order_number: int,
                  amount_minor: int) -> OrderVerdict:
    """What the referee's `order_number`-th order (counted from the referral) means."""
    match qualification.trigger:
        case "signup":
            # Qualified at the signup already; later orders change nothing.
            return "not_yet"
        case "first_order":
            return "qualifies" if order_number == 1 else "never"
        case "first_order_min_amount":
            minimum = qualification.min_amount_minor or 0
            return "qualifies" if order_number == 1 and amount_minor >= minimum else "never"
        case "nth_order":
            wanted = qualification.n or 1
            if order_number < wanted:
                return "not_yet"
            return "qualifies" if order_number == wanted else "never"
    raise ValueError(f"unknown qualification trigger {qualification.trigger!r}")


def never_reason(qualification: QualificationRules) -> str:
    """Why a referral can no longer qualify, for the rejected Attribution."""
    if qualification.trigger == "first_order_min_amount":
        return (f"first order below the minimum of {qualification.min_amount_minor} "
                "minor units")
    return f"the order that could qualify ({qualification.trigger}) did not"


def reward_amount(spec: RewardSpec, rewards: RewardRules, order_amount_minor: int,
                  order_currency: str | None) -> tuple[int, str]:
    """(amount in minor units or points, currency) a spec pays for the qualifying order.

    Points per unit spent count whole units of the order's currency: 2 points per unit on a
    first order of 400.00 EUR (40000 minor) pay 800 points.
    """
    if spec.fixed_minor is not None:
        currency = rewards.points_currency if spec.kind == RewardKind.POINTS else rewards.currency
        return spec.fixed_minor, currency
    currency = order_currency or rewards.currency
    if spec.percent_of_order is not None:
        return order_amount_minor * spec.percent_of_order // PERCENT, currency
    per_unit = spec.points_per_unit or 0
    return order_amount_minor * per_unit // rewards.unit_divisor(currency), rewards.points_currency
