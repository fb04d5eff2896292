"""Rules: the shipped files validate, and every mistake is reported with file:line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from refstream.rewards.rules import RulesError, default_rules_path, load_rules, parse_rules

RULES_DIR = default_rules_path().parent
DEFAULT_TEXT = default_rules_path().read_text()


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def _error(text: str, source: str = "broken.yaml") -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, source)
    return str(caught.value)


def test_default_rules_ship_the_campaigns_the_synthetic_shop_uses() -> None:
    rules = load_rules(default_rules_path())
    assert rules.version == "2026.11-default"
    shape = {c.id: (c.type, c.utm_campaign, c.eligible_referrers) for c in rules.campaigns}
    assert shape == {
        "friends": ("customer_to_customer", "friends", "all"),
        "vip": ("customer_to_customer", "vip", "named"),
        "podcast": ("media", "podcast-fall", "all"),
        "partner-blog": ("third_party", "partner-blog", "all"),
    }
    friends, vip, podcast = (rules.campaign_by_id[k] for k in ("friends", "vip", "podcast"))
    assert not hasattr(friends, "referee_discount_percent")
    assert friends.referrer_reward is not None and friends.referrer_reward.fixed_minor == 1000
    assert friends.referee_reward is not None and friends.referee_reward.fixed_minor == 500
    assert vip.named_referrers == ["inf-001", "inf-002", "inf-003"]
    assert vip.referrer_reward is not None and vip.referrer_reward.points_per_unit == 2
    assert (podcast.starts_at_ms, podcast.ends_at_ms) == (1_790_812_800_000, 1_792_886_400_000)
    assert podcast.referrer_reward is None and podcast.referee_reward is None
    assert rules.qualification.trigger == "first_order"
    assert rules.rewards.hold_period_days == 30
    fraud = rules.fraud
    assert (fraud.ip_velocity.threshold, fraud.ip_velocity.window_ms) == (6, 3_600_000)
    assert (fraud.device_velocity.threshold, fraud.device_velocity.window_ms) == (3, 259_200_000)
    assert fraud.self_referral.action == "block"
    assert fraud.broadcasting.action == "flag"


@pytest.mark.parametrize("path", sorted(RULES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_rules_file_validates(path: Path) -> None:
    assert load_rules(path).version


def test_a_bad_value_names_file_line_and_field() -> None:
    text = DEFAULT_TEXT.replace("window_days: 30 ", "window_days: 0 ")
    message = _error(text)
    line = _line_of(text, "window_days: 0")
    assert f"broken.yaml:{line}: attribution.window_days: Input should be greater than 0" in message


def test_an_unknown_choice_lists_the_allowed_ones() -> None:
    text = DEFAULT_TEXT.replace("model: last_touch", "model: latest_touch")
    message = _error(text)
    assert f"broken.yaml:{_line_of(text, 'latest_touch')}: attribution.model:" in message
    assert "'last_touch' or 'first_touch'" in message


def test_a_typo_in_a_key_is_refused_at_its_line() -> None:
    text = DEFAULT_TEXT.replace("hold_period_days: 30", "hold_period_dayz: 30")
    message = _error(text)
    line = _line_of(text, "hold_period_dayz")
    assert f":{line}: rewards.hold_period_dayz: Extra inputs" in message
    assert "rewards.hold_period_days: Field required" in message


def test_a_missing_section_points_at_its_parent() -> None:
    text = DEFAULT_TEXT.replace("  return_abuse: {action: flag}", "")
    assert f"broken.yaml:{_line_of(text, 'fraud:')}: fraud.return_abuse: Field required" in _error(
        text)


def test_campaign_errors_name_the_campaign_by_index() -> None:
    text = DEFAULT_TEXT.replace(
        "    type: third_party\n",
        "    type: third_party\n    referrer_reward: {kind: cash, fixed_minor: 100}\n")
    message = _error(text)
    line = _line_of(text, "- id: partner-blog")
    assert f":{line}: campaigns.3: a third_party campaign" in message
    assert "pays no kickback" in message


def test_named_referrers_are_required_for_named_eligibility() -> None:
    text = DEFAULT_TEXT.replace("    named_referrers: [inf-001, inf-002, inf-003]\n", "")
    assert "campaigns.1: eligible_referrers: named needs a non-empty named_referrers" in _error(
        text)


def test_a_reward_needs_exactly_one_amount() -> None:
    text = DEFAULT_TEXT.replace("referrer: {kind: credit, fixed_minor: 1000}",
                                "referrer: {kind: credit, fixed_minor: 1000, percent_of_order: 5}")
    message = _error(text)
    line = _line_of(text, "percent_of_order: 5")
    assert f"broken.yaml:{line}: rewards.referrer: give exactly one of fixed_minor" in message


def test_trigger_arguments_are_checked() -> None:
    text = DEFAULT_TEXT.replace("trigger: first_order ", "trigger: first_order_min_amount ")
    assert "qualification: min_amount_minor is required by" in _error(text)
    text = DEFAULT_TEXT.replace("trigger: first_order ", "trigger: nth_order ")
    assert "qualification: n is required by" in _error(text)


def test_a_signup_trigger_cannot_pay_a_share_of_an_order() -> None:
    text = DEFAULT_TEXT.replace("trigger: first_order ", "trigger: signup ")
    assert "campaigns.1.referrer_reward computes its amount from an order" in _error(text)


def test_campaign_end_must_follow_its_start() -> None:
    text = DEFAULT_TEXT.replace("ends_at: 2026-10-25T00:00:00Z", "ends_at: 2026-09-01T00:00:00Z")
    assert "is not after starts_at" in _error(text)


def test_repeated_campaign_slugs_are_refused() -> None:
    text = DEFAULT_TEXT.replace("utm_campaign: vip", "utm_campaign: friends")
    assert "campaigns: utm_campaign must be unique, repeated: ['friends']" in _error(text)


def test_broken_yaml_and_missing_files_are_rules_errors() -> None:
    assert _error("version: x\nattribution: [\n").startswith("broken.yaml:3: not valid YAML")
    with pytest.raises(RulesError, match=r"nowhere\.yaml: cannot read the rules file"):
        load_rules("/nonexistent/nowhere.yaml")
    assert _error("- just\n- a list\n").startswith("broken.yaml:1: the rules file must be")


def test_referee_discount_percent_was_removed_with_a_reason() -> None:
    # Never applied by the core: a rules file that still sets it is told why and what to do.
    text = DEFAULT_TEXT.replace("    utm_campaign: friends\n",
                                "    utm_campaign: friends\n    referee_discount_percent: 10\n")
    message = _error(text)
    assert "campaigns.0: referee_discount_percent is no longer part of the rules format" in message
    assert "use referee_reward" in message
