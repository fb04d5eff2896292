"""Attribution: given shares, clicks, signups and orders, which referral is decided, and when."""

from __future__ import annotations

import pytest

from refstream.schemas.events import Attribution, RewardStatus
from refstream.schemas.ids import referral_id
from tests.unit.core.builders import (
    DAY,
    DEFAULT_RULES,
    GRACE,
    SHOP,
    ShopLog,
    of_type,
    rules_with,
    run,
    run_pipeline,
    when,
)

VERSION = DEFAULT_RULES.version
BOB = referral_id(SHOP, "bob")


def _friends_link(log: ShopLog, referrer: str = "alice", at: int = when(0)) -> str:
    code = f"R-{referrer}"
    log.share(referrer, code, at=at, campaign="friends")
    return code


def _attributions(log: ShopLog, **rule_overrides: object) -> list[Attribution]:
    rules = rules_with(rule_overrides) if rule_overrides else DEFAULT_RULES
    return of_type(run(log.events, rules), Attribution)


# ---------------------------------------------------------------------- the basic decision


def test_a_link_click_then_signup_is_attributed_once_grace_has_passed() -> None:
    log = ShopLog()
    code = _friends_link(log)
    click = log.click("v-bob", at=when(hours=1), code=code, utm_campaign="friends")
    signup = log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.tick(at=when(hours=2) + GRACE - 1)
    assert run(log.events) == []  # still inside the grace period
    log.tick(at=when(hours=2) + GRACE)
    assert run(log.events) == [Attribution(
        referral_id=BOB, shop_id=SHOP, occurred_at=when(hours=2) + GRACE,
        rules_version=VERSION, status="attributed", referee_id="bob", referrer_id="alice",
        referral_code=code, campaign_id="friends", touch="link", reason=None,
        touch_event_id=click.event_id, signup_event_id=signup.event_id,
        qualifying_order_id=None, revision=0)]


def test_a_signup_without_any_touch_is_organic_and_emits_nothing() -> None:
    log = ShopLog()
    _friends_link(log)
    log.click("v-bob", at=when(hours=1))  # no code, no campaign
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.tick(at=when(days=1))
    assert run(log.events) == []


def test_a_click_stamped_seconds_after_the_signup_still_counts_within_grace() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    late = log.click("v-bob", at=when(hours=2, seconds=3), code=code)
    log.tick(at=when(days=1))
    [decided] = _attributions(log)
    assert (decided.referrer_id, decided.touch_event_id) == ("alice", late.event_id)


def test_the_grace_period_comes_from_the_rules() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.click("v-bob", at=when(hours=2, minutes=20), code=code)
    log.tick(at=when(days=1))
    assert _attributions(log) == []  # 20 minutes late: past the default 15 minutes of grace
    [decided] = _attributions(log, attribution={"grace_period_minutes": 30})
    assert decided.occurred_at == when(hours=2, minutes=30)


def test_a_click_at_the_grace_deadline_comes_too_late() -> None:
    # The decision fires before the event that moved stream time to its deadline.
    log = ShopLog()
    code = _friends_link(log)
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.click("v-bob", at=when(hours=2) + GRACE, code=code)
    log.tick(at=when(days=1))
    assert _attributions(log) == []


@pytest.mark.parametrize(("before_signup", "attributed"), [
    (30 * DAY - 1, True),   # less than a window before: counts
    (30 * DAY, False),      # exactly a window before: outside
])
def test_the_attribution_window(before_signup: int, attributed: bool) -> None:
    log = ShopLog()
    code = _friends_link(log, at=when(0))
    log.click("v-bob", at=when(days=1), code=code)
    log.signup("bob", at=when(days=1) + before_signup, visitor="v-bob")
    log.tick(at=when(days=40))
    assert len(_attributions(log)) == (1 if attributed else 0)


def test_touches_are_forgotten_once_no_signup_can_use_them() -> None:
    log = ShopLog()
    code = _friends_link(log)
    click = log.click("v-bob", at=when(days=1), code=code)
    log.signup("bob", at=click.occurred_at + 30 * DAY - 1, visitor="v-bob")  # just in time
    lifetime = DEFAULT_RULES.attribution.touch_lifetime_ms
    log.tick(at=click.occurred_at + lifetime - 1)
    pipeline = run_pipeline(log.events)
    assert list(pipeline.state.shops[SHOP].visitors) == ["v-bob"]
    assert [a.referrer_id for a in _attributions(log)] == ["alice"]
    pipeline.apply(log.tick(at=click.occurred_at + lifetime))
    assert pipeline.state.shops[SHOP].visitors == {}


def test_a_shorter_window_from_the_rules() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.click("v-bob", at=when(days=1), code=code)
    log.signup("bob", at=when(days=9), visitor="v-bob")
    log.tick(at=when(days=10))
    assert len(_attributions(log)) == 1
    assert _attributions(log, attribution={"window_days": 7}) == []


# ------------------------------------------------------------------------ touch models


def _two_links_then_signup() -> ShopLog:
    log = ShopLog()
    first = _friends_link(log, "alice")
    second = _friends_link(log, "carol")
    log.click("v-bob", at=when(hours=1), code=first)
    log.click("v-bob", at=when(hours=3), code=second)
    log.signup("bob", at=when(hours=4), visitor="v-bob")
    log.tick(at=when(days=1))
    return log


def test_last_touch_credits_the_latest_link() -> None:
    [decided] = _attributions(_two_links_then_signup())
    assert decided.referrer_id == "carol"


def test_first_touch_credits_the_earliest_link() -> None:
    [decided] = _attributions(_two_links_then_signup(), attribution={"model": "first_touch"})
    assert decided.referrer_id == "alice"


def test_a_touch_appended_late_is_ordered_by_its_event_time() -> None:
    log = ShopLog()
    first, second = _friends_link(log, "alice"), _friends_link(log, "carol")
    log.click("v-bob", at=when(hours=3), code=second)
    log.click("v-bob", at=when(hours=1), code=first)  # older, but appended later
    log.signup("bob", at=when(hours=4), visitor="v-bob")
    log.tick(at=when(days=1))
    assert _attributions(log)[0].referrer_id == "carol"
    assert _attributions(log, attribution={"model": "first_touch"})[0].referrer_id == "alice"


def _link_then_typed_code() -> ShopLog:
    log = ShopLog()
    link, typed = _friends_link(log, "alice"), _friends_link(log, "carol")
    log.click("v-bob", at=when(hours=1), code=link)
    log.signup("bob", at=when(hours=2), visitor="v-bob", code=typed)
    log.tick(at=when(days=1))
    return log


def test_a_code_typed_at_signup_overrides_the_link() -> None:
    [decided] = _attributions(_link_then_typed_code(),
                              attribution={"model": "first_touch", "code_overrides_link": True})
    assert (decided.referrer_id, decided.touch) == ("carol", "signup_code")


def test_without_override_a_typed_code_is_one_touch_among_others() -> None:
    log = _link_then_typed_code()
    first = _attributions(log, attribution={"model": "first_touch", "code_overrides_link": False})
    last = _attributions(log, attribution={"model": "last_touch", "code_overrides_link": False})
    assert (first[0].referrer_id, first[0].touch) == ("alice", "link")
    assert (last[0].referrer_id, last[0].touch) == ("carol", "signup_code")


def _attributed_then_checkout_code() -> tuple[ShopLog, str]:
    log = ShopLog()
    link, typed = _friends_link(log, "alice"), _friends_link(log, "carol")
    log.click("v-bob", at=when(hours=1), code=link)
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    order = log.order("o-1", "bob", 5000, at=when(days=1), code=typed)
    return log, order.event_id


def test_a_checkout_code_re_attributes_a_referral_not_yet_qualified() -> None:
    log, order_event = _attributed_then_checkout_code()
    decided, overridden, qualified = _attributions(log)
    assert (decided.referrer_id, decided.revision) == ("alice", 0)
    assert (overridden.referrer_id, overridden.touch, overridden.touch_event_id,
            overridden.status, overridden.revision) == (
        "carol", "checkout_code", order_event, "attributed", 1)
    assert (qualified.referrer_id, qualified.status, qualified.revision,
            qualified.qualifying_order_id) == ("carol", "qualified", 2, "o-1")


def test_without_override_a_checkout_code_leaves_the_link_in_place() -> None:
    log, _ = _attributed_then_checkout_code()
    decided, qualified = _attributions(log, attribution={"code_overrides_link": False})
    assert (decided.referrer_id, qualified.referrer_id, qualified.status) == (
        "alice", "alice", "qualified")


def test_a_code_that_would_be_rejected_does_not_replace_a_referral() -> None:
    log = ShopLog()
    link = _friends_link(log, "alice")
    log.share("bob", "R-bob", at=when(0), campaign="friends")
    log.click("v-bob", at=when(hours=1), code=link)
    log.signup("bob", at=when(hours=2), visitor="v-bob")
    log.order("o-1", "bob", 5000, at=when(days=1), code="R-bob")  # bob's own code
    decided, qualified = _attributions(log)
    assert (decided.referrer_id, qualified.referrer_id, qualified.status) == (
        "alice", "alice", "qualified")


def test_a_checkout_code_attributes_an_organic_customer() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.signup("bob", at=when(hours=2))
    log.tick(at=when(days=1))
    order = log.order("o-1", "bob", 5000, at=when(days=2), code=code)
    attributed, qualified = _attributions(log)
    assert (attributed.status, attributed.touch, attributed.touch_event_id,
            attributed.occurred_at) == ("attributed", "checkout_code", order.event_id, when(days=2))
    assert (qualified.status, qualified.qualifying_order_id) == ("qualified", "o-1")


def test_an_unregistered_code_attributes_nobody() -> None:
    log = ShopLog()
    log.click("v-bob", at=when(hours=1), code="R-nobody")
    log.signup("bob", at=when(hours=2), visitor="v-bob", code="R-nobody")
    log.tick(at=when(days=1))
    assert _attributions(log) == []


def test_the_first_share_of_a_code_owns_it() -> None:
    log = ShopLog()
    log.share("alice", "R-shared", at=when(0))
    log.share("mallory", "R-shared", at=when(hours=1))
    log.click("v-bob", at=when(hours=2), code="R-shared")
    log.signup("bob", at=when(hours=3), visitor="v-bob")
    log.tick(at=when(days=1))
    assert _attributions(log)[0].referrer_id == "alice"


# -------------------------------------------------------------------- existing customers


def test_an_existing_customer_clicking_a_link_is_counted_but_not_a_touch() -> None:
    log = ShopLog()
    code = _friends_link(log)
    # First seen placing an order, never signing up: a customer from before the log began.
    log.order("o-old", "cust-1", 3000, at=when(hours=1), visitor="v-c1")
    log.click("v-c1", at=when(hours=2), code=code)
    pipeline = run_pipeline(log.events)
    shop = pipeline.state.shops[SHOP]
    assert shop.existing_customer_clicks == 1
    assert shop.visitors == {}


def test_a_customer_who_ordered_before_clicking_is_an_existing_customer() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.signup("bob", at=when(hours=1), visitor="v-bob")
    log.order("o-1", "bob", 3000, at=when(hours=2), visitor="v-bob")
    log.click("v-bob", at=when(days=2), code=code)
    assert run_pipeline(log.events).state.shops[SHOP].existing_customer_clicks == 1


def test_an_existing_customer_typing_a_code_is_tracked_and_rejected() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.order("o-old", "cust-1", 3000, at=when(hours=1))
    log.order("o-2", "cust-1", 4000, at=when(days=3), code=code)
    outputs = run(log.events)
    assert [(a.status, a.reason, a.referrer_id) for a in of_type(outputs, Attribution)] == [
        ("rejected", "existing customer: ordered before the touch", "alice")]
    assert of_type(outputs, RewardStatus) == []


def test_existing_customers_can_qualify_when_the_rules_allow_it() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.order("o-old", "cust-1", 3000, at=when(hours=1))
    log.order("o-2", "cust-1", 4000, at=when(days=3), code=code)
    outputs = run(log.events, rules_with({"qualification": {"new_customers_only": False}}))
    attributed, qualified = of_type(outputs, Attribution)
    assert (attributed.status, attributed.reason) == ("attributed", "existing customer")
    # Orders are counted from the referral's touch: o-2 is the first order after it.
    assert (qualified.status, qualified.qualifying_order_id) == ("qualified", "o-2")
    assert len(of_type(outputs, RewardStatus)) == 2


def test_a_referrer_cannot_refer_themselves() -> None:
    log = ShopLog()
    code = _friends_link(log, "alice")
    log.signup("alice", at=when(hours=1), code=code)
    log.tick(at=when(days=1))
    [decided] = _attributions(log)
    assert (decided.status, decided.reason) == (
        "rejected", "self-referral: the referee is the referrer")


# ----------------------------------------------------------------------------- campaigns


def test_a_media_campaign_credits_the_campaign_and_nobody_earns() -> None:
    log = ShopLog()
    click = log.click("v-bob", at=when(days=2), utm_campaign="podcast-fall",
                      utm_source="podcast")
    log.signup("bob", at=when(days=2, hours=1), visitor="v-bob")
    log.order("o-1", "bob", 9000, at=when(days=3))
    log.tick(at=when(days=40))
    outputs = run(log.events)
    attributed, qualified = of_type(outputs, Attribution)
    assert (attributed.status, attributed.campaign_id, attributed.referrer_id,
            attributed.referral_code, attributed.touch, attributed.touch_event_id) == (
        "attributed", "podcast", None, None, "campaign", click.event_id)
    assert qualified.status == "qualified"
    assert of_type(outputs, RewardStatus) == []


def test_a_referral_code_on_a_media_link_pays_no_kickback() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.click("v-bob", at=when(days=2), code=code, utm_campaign="podcast-fall")
    log.signup("bob", at=when(days=2, hours=1), visitor="v-bob")
    log.tick(at=when(days=3))
    [decided] = _attributions(log)
    assert (decided.campaign_id, decided.referrer_id, decided.referral_code) == (
        "podcast", None, None)


def test_a_third_party_campaign_is_tracked_like_media() -> None:
    log = ShopLog()
    log.click("v-bob", at=when(days=2), campaign_id="partner-blog")
    log.signup("bob", at=when(days=2, hours=1), visitor="v-bob")
    log.order("o-1", "bob", 9000, at=when(days=3))
    outputs = run(log.events)
    assert [(a.status, a.campaign_id) for a in of_type(outputs, Attribution)] == [
        ("attributed", "partner-blog"), ("qualified", "partner-blog")]
    assert of_type(outputs, RewardStatus) == []


@pytest.mark.parametrize("click_at", [when(days=-1), when(days=24), when(days=30)],
                         ids=["before-start", "at-end", "after-end"])
def test_a_click_outside_the_campaign_is_recorded_as_invalid(click_at: int) -> None:
    log = ShopLog()
    click = log.click("v-bob", at=click_at, utm_campaign="podcast-fall")
    log.signup("bob", at=click_at + 1000, visitor="v-bob")
    log.tick(at=click_at + DAY)
    pipeline = run_pipeline(log.events)
    assert pipeline.state.shops[SHOP].invalid_clicks == {"podcast": 1}
    [decided] = _attributions(log)
    assert (decided.status, decided.reason, decided.campaign_id, decided.touch_event_id) == (
        "invalid", "campaign podcast was not running at the touch", "podcast", click.event_id)


def test_a_valid_touch_beats_a_later_invalid_one() -> None:
    log = ShopLog()
    code = _friends_link(log, at=when(days=20))
    log.click("v-bob", at=when(days=23), code=code)
    log.click("v-bob", at=when(days=25), utm_campaign="podcast-fall")  # podcast has ended
    log.signup("bob", at=when(days=26), visitor="v-bob")
    log.tick(at=when(days=27))
    [decided] = _attributions(log)
    assert (decided.status, decided.referrer_id) == ("attributed", "alice")


def test_a_typed_code_later_replaces_an_invalid_attribution() -> None:
    log = ShopLog()
    code = _friends_link(log)
    log.click("v-bob", at=when(days=26), utm_campaign="podcast-fall")
    log.signup("bob", at=when(days=26, hours=1), visitor="v-bob")
    log.tick(at=when(days=27))
    log.order("o-1", "bob", 5000, at=when(days=28), code=code)
    invalid, attributed, qualified = _attributions(log)
    assert (invalid.status, invalid.revision) == ("invalid", 0)
    assert (attributed.status, attributed.referrer_id, attributed.campaign_id,
            attributed.revision) == ("attributed", "alice", "friends", 1)
    assert (qualified.status, qualified.revision) == ("qualified", 2)


def test_the_campaign_is_resolved_by_id_first_then_by_slug_then_by_the_share() -> None:
    log = ShopLog()
    log.share("inf-001", "R-inf", at=when(0), campaign="vip")
    log.click("v-1", at=when(hours=1), code="R-inf", campaign_id="vip", utm_campaign="friends")
    log.click("v-2", at=when(hours=1), code="R-inf", utm_campaign="friends")
    log.click("v-3", at=when(hours=1), code="R-inf")
    for n in (1, 2, 3):
        log.signup(f"c{n}", at=when(hours=2), visitor=f"v-{n}")
    log.tick(at=when(days=1))
    assert [a.campaign_id for a in _attributions(log)] == ["vip", "friends", "vip"]


def test_named_referrers_only_earn_through_their_campaign() -> None:
    log = ShopLog()
    log.share("inf-001", "R-inf", at=when(0), campaign="vip")
    log.share("alice", "R-alice", at=when(0), campaign="vip")
    log.click("v-1", at=when(hours=1), code="R-inf")
    log.click("v-2", at=when(hours=1), code="R-alice")
    log.signup("c1", at=when(hours=2), visitor="v-1")
    log.signup("c2", at=when(hours=2), visitor="v-2")
    log.tick(at=when(days=1))
    named, stranger = _attributions(log)
    assert (named.status, named.referrer_id) == ("attributed", "inf-001")
    assert (stranger.status, stranger.reason) == (
        "rejected", "referrer not eligible for campaign vip")
