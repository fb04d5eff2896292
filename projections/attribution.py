"""Attribution: which referral code or campaign brought a new customer, under the rules' model.

It records codes (shares) and touches (clicks, typed codes) and decides each new customer's
referral once stream time passes their conversion + grace; a typed code may revise it later.
"""

from __future__ import annotations

from typing import NamedTuple

from refstream.projections.state import (
    CAMPAIGN,
    CHECKOUT_CODE,
    LINK,
    OWNER_CAMPAIGN,
    SIGNUP_CODE,
    TOUCH_AT,
    Customer,
    PendingDecision,
    Referral,
    ShopState,
    StoredTouch,
    Touch,
)
from refstream.projections.step import Step
from refstream.rewards.rules import Campaign, Rules
from refstream.schemas.events import Attribution, Click, CodeIssued, FraudFlag, Share
from refstream.schemas.ids import flag_id, referral_id
from refstream.schemas.status import AttributionStatus, FraudAction

_TYPED = frozenset({SIGNUP_CODE, CHECKOUT_CODE})
# The flag a share of a code owned by someone else raises: recorded for review, the code
# keeps paying its owner.
FOREIGN_CODE_SIGNAL = "foreign_code_share"
FOREIGN_CODE_ACTION = FraudAction.FLAG


class Resolved(NamedTuple):
    """A touch read through the codes and the rules: who (if anyone) it pays, and if valid."""

    touch: Touch
    referrer_id: str | None
    code: str | None
    campaign: Campaign | None
    valid: bool


# ----------------------------------------------------------------------------- recording


def register_code(step: Step, event: Share | CodeIssued) -> None:
    """The first issue or share of a code fixes its owner; a later share or issue naming
    someone else cannot take it: the code keeps paying its owner and the attempt is flagged."""
    codes = step.shop.codes
    owner = codes.get(event.referral_code)
    if owner is None:
        codes[event.referral_code] = (event.referrer_id, event.campaign_id)
    elif owner[0] != event.referrer_id:
        step.out.append(foreign_code_flag(step, event, owner[0]))


def foreign_code_flag(step: Step, event: Share | CodeIssued, owner_id: str) -> FraudFlag:
    """Evidence that `event.referrer_id` used a code `owner_id` owns."""
    shop_id = step.shop.shop_id
    entity_key = f"{event.referral_code}:{event.referrer_id}"
    return FraudFlag(
        flag_id=flag_id(shop_id, FOREIGN_CODE_SIGNAL, entity_key, event.event_id),
        shop_id=shop_id, occurred_at=step.now, rules_version=step.rules.version,
        signal=FOREIGN_CODE_SIGNAL, entity_type="code", entity_key=entity_key, threshold=1,
        observed=1, window_ms=0, action=FOREIGN_CODE_ACTION,
        evidence_event_ids=(event.event_id,), referral_id=None)


def click_campaign(rules: Rules, event: Click) -> Campaign | None:
    """The campaign a click names: by campaign id first, then by its utm_campaign slug."""
    campaign = rules.campaign_by_id.get(event.campaign_id) if event.campaign_id else None
    if campaign is None and event.utm_campaign:
        campaign = rules.campaign_by_slug.get(event.utm_campaign)
    return campaign


def record_click(shop: ShopState, rules: Rules, event: Click) -> None:
    """Keep a referral or campaign click as a touch of its visitor.

    Two kinds are only counted: clicks by customers who already ordered (tracked, never a new
    referral) and clicks outside their campaign's start/end (also kept as touches, so a
    signup they alone explain gets an Attribution with status "invalid").
    """
    campaign = click_campaign(rules, event)
    code = event.referral_code or None
    if code is None and campaign is None:
        return  # an organic visit is no touch
    at = event.occurred_at
    customer_id = shop.visitor_customers.get(event.visitor_id)
    if customer_id is not None and shop.customers[customer_id].ordered_before(at):
        shop.existing_customer_clicks += 1
        return
    if campaign is None and code is not None:
        stored = shop.codes.get(code)  # the stored tuple: no CodeOwner built per click
        if stored is not None and stored[OWNER_CAMPAIGN]:
            campaign = rules.campaign_by_id.get(stored[OWNER_CAMPAIGN])
    if campaign is not None and not campaign.running_at(at):
        shop.invalid_clicks[campaign.id] = shop.invalid_clicks.get(campaign.id, 0) + 1
    touch: StoredTouch = (at, event.event_id, code, campaign.id if campaign else None, LINK)
    touches = shop.visitors.get(event.visitor_id)
    if touches is None:
        shop.visitors[event.visitor_id] = (touch,)
        shop.touch_expiries.append((at + rules.attribution.touch_lifetime_ms, event.visitor_id))
    else:
        shop.visitors[event.visitor_id] = _in_time_order(touches, touch)


def _in_time_order(touches: tuple[StoredTouch, ...],
                   touch: StoredTouch) -> tuple[StoredTouch, ...]:
    position = len(touches)
    # A click appended late goes before later ones (log order among equal times).
    while position > 0 and touches[position - 1][TOUCH_AT] > touch[TOUCH_AT]:
        position -= 1
    return (*touches[:position], touch, *touches[position:])


def expire_touches(shop: ShopState, rules: Rules, now: int) -> None:
    """Forget touches no undecided signup can use any more: memory stays bounded by the window.

    Called once the timers due by `now` fired: every decision still to come has a later
    deadline, and so only needs touches that run out after `now`.
    """
    expiries, visitors = shop.touch_expiries, shop.visitors
    lifetime = rules.attribution.touch_lifetime_ms
    while expiries and expiries[0][0] <= now:
        _, visitor_id = expiries.popleft()
        kept = tuple(t for t in visitors[visitor_id] if t[TOUCH_AT] + lifetime > now)
        if kept:
            visitors[visitor_id] = kept
            # Touches are kept in time order: the first is the next to run out.
            expiries.append((kept[0][TOUCH_AT] + lifetime, visitor_id))
        else:
            del visitors[visitor_id]


# ------------------------------------------------------------------------------ deciding


def resolve(shop: ShopState, rules: Rules, touch: Touch) -> Resolved | None:
    """Read a touch through the registered codes and the campaigns; None if it names neither."""
    owner = shop.code_owner(touch.code)
    campaign = rules.campaign_by_id.get(touch.campaign_id) if touch.campaign_id else None
    if campaign is None and owner is not None and owner.campaign_id:
        campaign = rules.campaign_by_id.get(owner.campaign_id)
    if owner is None and campaign is None:
        return None
    valid = campaign is None or campaign.running_at(touch.at)
    if owner is None or (campaign is not None and not campaign.pays_kickback):
        # Media and third-party touches credit the campaign; nobody earns a kickback.
        return Resolved(touch, None, None, campaign, valid)
    return Resolved(touch, owner.referrer_id, touch.code, campaign, valid)


def choose(rules: Rules, candidates: list[Resolved]) -> Resolved | None:
    """The winning touch: valid ones first, typed codes first if they override links, then
    the first or the last by time (log order among equal times)."""
    pool = [c for c in candidates if c.valid] or candidates
    if rules.attribution.code_overrides_link:
        pool = [c for c in pool if c.touch.kind in _TYPED] or pool
    if not pool:
        return None
    pool.sort(key=lambda c: c.touch.at)
    return pool[-1] if rules.attribution.model == "last_touch" else pool[0]


def judge(rules: Rules, customer: Customer,
          chosen: Resolved) -> tuple[AttributionStatus, str | None]:
    """(status, reason) of a referral through the winning touch."""
    campaign, referrer = chosen.campaign, chosen.referrer_id
    if not chosen.valid and campaign is not None:
        return (AttributionStatus.INVALID,
                f"campaign {campaign.id} was not running at the touch")
    if referrer is not None and referrer == customer.customer_id:
        return AttributionStatus.REJECTED, "self-referral: the referee is the referrer"
    if referrer is not None and campaign is not None and not campaign.accepts_referrer(referrer):
        return AttributionStatus.REJECTED, f"referrer not eligible for campaign {campaign.id}"
    if customer.ordered_before(chosen.touch.at):
        if rules.qualification.new_customers_only:
            return AttributionStatus.REJECTED, "existing customer: ordered before the touch"
        return AttributionStatus.ATTRIBUTED, "existing customer"
    return AttributionStatus.ATTRIBUTED, None


def decide(step: Step, customer: Customer, pending: PendingDecision) -> Referral | None:
    """A new customer's referral, once the grace period after their signup is over.

    Touches count from less than a window before the signup to less than a grace period after
    it: a click whose producer stamped it a few seconds after the signup still counts.
    """
    shop, rules = step.shop, step.rules
    window_start = customer.converted_at - rules.attribution.window_ms
    grace_end = customer.converted_at + rules.attribution.grace_period_ms
    touches: list[Touch] = []
    visited = shop.visitors.get(customer.visitor_id) if customer.visitor_id else None
    if visited is not None:
        touches = [touch for stored in visited
                   if window_start < (touch := Touch(*stored)).at < grace_end]
    touches += pending.typed_codes
    candidates = [r for t in touches if (r := resolve(shop, rules, t)) is not None]
    chosen = choose(rules, candidates)
    if chosen is None:
        return None  # organic: no referral
    status, reason = judge(rules, customer, chosen)
    return _open_referral(step, customer, chosen, status=status, reason=reason, order_base=0)


def typed_code_later(step: Step, customer: Customer, touch: Touch,
                     orders_before: int) -> Referral | None:
    """A code typed after the decision: attributes an organic customer, replaces an invalid
    touch, or (if codes override links) re-attributes a referral not qualified yet.

    Returns the referral when it was (re)attributed, so fraud can look at it.
    """
    shop, rules = step.shop, step.rules
    resolved = resolve(shop, rules, touch)
    if resolved is None:
        return None
    status, reason = judge(rules, customer, resolved)
    referral = shop.referrals.get(customer.referral_id) if customer.referral_id else None
    if referral is None:
        return _open_referral(step, customer, resolved, status=status, reason=reason,
                              order_base=orders_before)
    # Only an attributable code replaces a touch: a customer's own or an expired code
    # never undoes a referral that stands.
    if status != AttributionStatus.ATTRIBUTED or referral.status not in (
            AttributionStatus.ATTRIBUTED, AttributionStatus.INVALID):
        return None
    campaign_id = resolved.campaign.id if resolved.campaign else None
    if referral.status == AttributionStatus.ATTRIBUTED:
        unchanged = (resolved.referrer_id, campaign_id) == (referral.referrer_id,
                                                            referral.campaign_id)
        if unchanged or not rules.attribution.code_overrides_link:
            return None
    else:
        referral.order_base = orders_before  # an invalid touch never counted any order
    referral.referrer_id = resolved.referrer_id
    referral.referral_code = resolved.code
    referral.campaign_id = campaign_id
    referral.touch = touch.kind
    referral.touch_event_id = touch.event_id
    move(step, referral, status, reason or f"a code typed later ({touch.kind}) replaced the touch")
    return referral


def _open_referral(step: Step, customer: Customer, chosen: Resolved, *,
                   status: AttributionStatus, reason: str | None,
                   order_base: int) -> Referral:
    touch = chosen.touch
    referral = Referral(
        referral_id=referral_id(step.shop.shop_id, customer.customer_id),
        referee_id=customer.customer_id, referrer_id=chosen.referrer_id,
        referral_code=chosen.code, campaign_id=chosen.campaign.id if chosen.campaign else None,
        touch=CAMPAIGN if touch.kind == LINK and chosen.code is None else touch.kind,
        touch_event_id=touch.event_id, conversion_event_id=customer.conversion_event_id,
        converted_at=customer.converted_at, status=status, reason=reason, order_base=order_base)
    step.shop.referrals[referral.referral_id] = referral
    customer.referral_id = referral.referral_id
    step.out.append(attribution_event(step, referral))
    return referral


# ------------------------------------------------------------------------------- emitting


def attribution_event(step: Step, referral: Referral) -> Attribution:
    return Attribution(
        referral.referral_id, step.shop.shop_id, step.now, step.rules.version, referral.status,
        referral.referee_id, referral.referrer_id, referral.referral_code, referral.campaign_id,
        referral.touch, referral.reason, referral.touch_event_id, referral.conversion_event_id,
        referral.qualifying_order_id, referral.revision)


def move(step: Step, referral: Referral, status: AttributionStatus,
         reason: str | None) -> None:
    """A visible change of the referral: same id, next revision."""
    referral.status = status
    referral.reason = reason
    referral.revision += 1
    step.out.append(attribution_event(step, referral))
