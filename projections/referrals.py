"""A referral's life after attribution: fraud actions, qualification, hold period, review, returns.

Each step moves the referral (a new Attribution revision) and tells the reward ledger what
happens to the money; the ledger owns amounts, caps, tiers and the reward events.
"""

from __future__ import annotations

from refstream.fraud import signals as fraud
from refstream.fraud.identity import DEVICE, PAYMENT, SHIPPING, Fact, facts, first_seen
from refstream.fraud.signals import FraudVerdict
from refstream.projections.attribution import move
from refstream.projections.state import (
    HOLD_PERIOD_ENDS,
    OPEN_STATUSES,
    Customer,
    OrderFacts,
    Referral,
)
from refstream.projections.step import Step
from refstream.projections.timers import schedule
from refstream.rewards import ledger
from refstream.rewards.eligibility import never_reason, order_verdict
from refstream.rewards.rules import RewardSpec, Rules
from refstream.schemas.events import OrderReturned, ReviewDecided
from refstream.schemas.status import AttributionStatus, FraudAction, ReviewDecision


def _actionable(referral: Referral) -> bool:
    # Once rewards fell due finance may have paid: only a return can claw them back.
    return referral.status in OPEN_STATUSES and not referral.rewards_due


def awaits_qualification(referral: Referral) -> bool:
    return referral.status == AttributionStatus.ATTRIBUTED or (
        referral.status == AttributionStatus.HELD
        and referral.status_before_hold == AttributionStatus.ATTRIBUTED)


# -------------------------------------------------------------------------------- fraud


def apply_verdicts(step: Step, verdicts: list[FraudVerdict]) -> None:
    """Emit each flag, then apply its action to the referrals it concerns."""
    for verdict in verdicts:
        flag = verdict.flag
        step.out.append(flag)
        if flag.action == FraudAction.FLAG:
            continue
        reason = f"fraud signal {flag.signal} on {flag.entity_type} (flag {flag.flag_id})"
        for rid in verdict.referral_ids:
            referral = step.shop.referrals.get(rid)
            if referral is None:
                continue
            if flag.action == FraudAction.HOLD:
                hold(step, referral, reason)
            else:
                reject(step, referral, reason)


def hold(step: Step, referral: Referral, reason: str) -> None:
    if not _actionable(referral) or referral.status == AttributionStatus.HELD:
        return
    referral.status_before_hold = referral.status
    move(step, referral, AttributionStatus.HELD, reason)
    step.out += ledger.hold(step.shop.ledger, step.rules, step.now, referral.referral_id, reason)


def reject(step: Step, referral: Referral, reason: str) -> None:
    if not _actionable(referral):
        return
    referral.status_before_hold = None
    move(step, referral, AttributionStatus.REJECTED, reason)
    step.out += ledger.reject(step.shop.ledger, step.rules, step.now, referral.referral_id,
                              reason)


def check_attributed(step: Step, referral: Referral, referee: Customer) -> None:
    """Fraud checks when a referee is (re)attributed to a referrer."""
    if referral.status != AttributionStatus.ATTRIBUTED or referral.referrer_id is None:
        return
    shop = step.shop
    referrer = shop.customers.get(referral.referrer_id)
    verdicts = fraud.matches_referrer(
        shop.fraud, step.signals, step.now, referral_id=referral.referral_id,
        referee=facts(referee.identity), referrer=referrer.identity if referrer else ())
    verdicts += fraud.referred_conversion(
        shop.fraud, step.signals, step.now, referral_id=referral.referral_id,
        at=referee.converted_at, event_id=referee.conversion_event_id, ip_hash=referee.ip_hash,
        device_id=referee.device_id, code=referral.referral_code)
    apply_verdicts(step, verdicts)


# ------------------------------------------------------------------------ qualification


def referee_ordered(step: Step, referral: Referral, referee: Customer,
                    order: OrderFacts) -> None:
    """An order of a referee: fraud checks while the referral is open, then qualification."""
    if referral.referrer_id is not None and _actionable(referral):
        _check_order(step, referral, referral.referrer_id, referee, order)
    number = order.number - referral.order_base
    if awaits_qualification(referral):
        verdict = order_verdict(step.rules.qualification, number, order.amount_minor)
        if verdict == "qualifies":
            qualify(step, referral, order, order.at)
        elif verdict == "never":
            reject(step, referral, never_reason(step.rules.qualification))
    elif (referral.status == AttributionStatus.QUALIFIED
          and referral.qualifying_order_id is None and number == 1):
        # Qualified at signup: the first order is still watched for return abuse.
        step.shop.watched_orders[order.order_id] = (referral.referral_id, order.event_id)


def _check_order(step: Step, referral: Referral, referrer_id: str, referee: Customer,
                 order: OrderFacts) -> None:
    shop, signals = step.shop, step.signals
    referrer = shop.customers.get(referrer_id)
    verdicts: list[FraudVerdict] = []
    if referrer is not None:
        verdicts += fraud.matches_referrer(shop.fraud, signals, step.now,
                                           referral_id=referral.referral_id,
                                           referee=_shown_by(order, referee),
                                           referrer=referrer.identity)
    verdicts += fraud.referee_ordered(
        shop.fraud, signals, step.now, referral_id=referral.referral_id, at=order.at,
        event_id=order.event_id, payment_hash=order.payment_hash,
        shipping_hash=order.shipping_hash)
    apply_verdicts(step, verdicts)


def _shown_by(order: OrderFacts, referee: Customer) -> list[Fact]:
    """The identifiers an order shows, each with the referee's first event that showed it."""
    shown = []
    for kind, value in ((DEVICE, order.device_id), (PAYMENT, order.payment_hash),
                        (SHIPPING, order.shipping_hash)):
        if value:
            shown.append((kind, value, first_seen(referee.identity, kind, value)
                          or order.event_id))
    return shown


def qualify(step: Step, referral: Referral, order: OrderFacts | None, at: int) -> None:
    """The trigger is met: grant the rewards (held if the referral is) and start the hold."""
    rules = step.rules
    trigger = rules.qualification.trigger
    referral.qualified_at = at
    if order is not None:
        referral.qualifying_order_id = order.order_id
        referral.qualifying_order_event_id = order.event_id
        referral.qualifying_amount_minor = order.amount_minor
        step.shop.watched_orders[order.order_id] = (referral.referral_id, order.event_id)
    held = referral.status == AttributionStatus.HELD
    if held:
        referral.status_before_hold = AttributionStatus.QUALIFIED
        move(step, referral, AttributionStatus.HELD, referral.reason)
    else:
        move(step, referral, AttributionStatus.QUALIFIED, f"qualified by {trigger}")
    referrer_spec, referee_spec = _reward_specs(rules, referral)
    step.out += ledger.grant(step.shop.ledger, rules, step.now, ledger.Qualification(
        referral_id=referral.referral_id, referrer_id=referral.referrer_id,
        referee_id=referral.referee_id, trigger=trigger, qualified_at=at,
        order_id=order.order_id if order else None,
        order_amount_minor=order.amount_minor if order else 0,
        order_currency=order.currency if order else None,
        referrer_reward=referrer_spec, referee_reward=referee_spec, held=held))
    if referral.referrer_id is not None:
        schedule(step.shop, at + rules.rewards.hold_period_ms, HOLD_PERIOD_ENDS,
                 referral.referral_id)


def _reward_specs(rules: Rules, referral: Referral) -> tuple[RewardSpec | None, RewardSpec | None]:
    """Campaign rewards if the referral came through a campaign, else the programme's."""
    if referral.referrer_id is None:
        return None, None  # a campaign touch without a referrer pays no kickback
    campaign = rules.campaign_by_id.get(referral.campaign_id) if referral.campaign_id else None
    if campaign is None:
        return rules.rewards.referrer, rules.rewards.referee
    return campaign.referrer_reward, campaign.referee_reward


# ---------------------------------------------------------------------- hold and review


def hold_period_ended(step: Step, referral_id: str) -> None:
    """No return inside the hold period: rewards fall due (unless fraud review holds them)."""
    referral = step.shop.referrals.get(referral_id)
    if (referral is None or referral.status != AttributionStatus.QUALIFIED
            or referral.rewards_due):
        return
    referral.rewards_due = True
    step.out += ledger.settle(step.shop.ledger, step.rules, step.now, referral_id)
    _count_success(step, referral)


def _count_success(step: Step, referral: Referral) -> None:
    if referral.referrer_id is not None:
        step.out += ledger.record_success(
            step.shop.ledger, step.rules, step.now, referral.referral_id,
            referrer_id=referral.referrer_id, order_id=referral.qualifying_order_id)


def review(step: Step, event: ReviewDecided) -> None:
    """A person decided a held referral; decisions on referrals not held change nothing."""
    referral = step.shop.referrals.get(event.referral_id)
    if referral is None or referral.status != AttributionStatus.HELD:
        return
    if event.decision == ReviewDecision.REJECT:
        reject(step, referral, f"rejected in review by {event.reviewer_id}")
        return
    resumed = referral.status_before_hold or AttributionStatus.ATTRIBUTED
    referral.status_before_hold = None
    reason = f"approved in review by {event.reviewer_id}"
    move(step, referral, resumed, reason)
    hold_over = (resumed == AttributionStatus.QUALIFIED and referral.qualified_at is not None
                 and referral.qualified_at + step.rules.rewards.hold_period_ms <= step.now)
    step.out += ledger.release(step.shop.ledger, step.rules, step.now, referral.referral_id,
                               reason=reason, hold_period_over=hold_over)
    if hold_over:
        referral.rewards_due = True
        _count_success(step, referral)


# ------------------------------------------------------------------------------ returns


def order_returned(step: Step, event: OrderReturned) -> None:
    """A watched order came back: void (inside the hold) or reverse (after), then flag."""
    watched = step.shop.watched_orders.get(event.order_id)
    if watched is None:
        return
    rid, order_event_id = watched
    referral = step.shop.referrals[rid]
    if event.order_id == referral.qualifying_order_id and not referral.closed_by_return:
        referral.returned_minor += event.amount_minor
        if (step.rules.rewards.return_policy == "any_return"
                or referral.returned_minor >= referral.qualifying_amount_minor):
            _undo_rewards(step, referral, event)
    if not referral.return_flagged:
        referral.return_flagged = True
        apply_verdicts(step, fraud.qualifying_return(
            step.shop.fraud, step.signals, step.now, referral_id=rid,
            referee_id=referral.referee_id, order_event_id=order_event_id,
            return_event_id=event.event_id))


def _undo_rewards(step: Step, referral: Referral, event: OrderReturned) -> None:
    referral.closed_by_return = True
    shop_ledger, rules, now = step.shop.ledger, step.rules, step.now
    if referral.rewards_due:
        reason = f"qualifying order returned after the rewards fell due (return {event.return_id})"
        step.out += ledger.reverse(shop_ledger, rules, now, referral.referral_id, event.return_id)
    else:
        reason = f"qualifying order returned inside the hold period (return {event.return_id})"
        step.out += ledger.void(shop_ledger, rules, now, referral.referral_id, reason)
    if referral.status != AttributionStatus.REJECTED:
        referral.status_before_hold = None
        move(step, referral, AttributionStatus.REJECTED, reason)
