"""The referral programme's rules: a versioned YAML file validated into one frozen `Rules` value.

It owns every knob the pure core reads (attribution, campaigns, qualification, rewards, fraud)
and the loader whose errors name the file, the line and the field that is wrong.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from refstream.schemas.epoch import epoch_ms
from refstream.schemas.errors import RefstreamError
from refstream.schemas.status import FraudAction, RewardKind

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
PERCENT = 100

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=100)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Positive = Annotated[int, Field(gt=0)]
NonNegative = Annotated[int, Field(ge=0)]
Percent = Annotated[int, Field(ge=0, le=100)]

CampaignType = Literal["media", "customer_to_customer", "third_party"]
Trigger = Literal["signup", "first_order", "first_order_min_amount", "nth_order"]


class RulesError(RefstreamError):
    """A rules file that cannot be used; the message names file:line and the field."""


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise. Derived values (milliseconds, lookups)
    # are cached properties: computed once per rules version, read on every event.
    model_config = ConfigDict(frozen=True, extra="forbid")


# ------------------------------------------------------------------------------ attribution


class AttributionRules(_Strict):
    model: Literal["last_touch", "first_touch"]
    window_days: Positive
    code_overrides_link: bool
    grace_period_minutes: NonNegative

    @cached_property
    def window_ms(self) -> int:
        return self.window_days * DAY_MS

    @cached_property
    def grace_period_ms(self) -> int:
        return self.grace_period_minutes * MINUTE_MS

    @cached_property
    def touch_lifetime_ms(self) -> int:
        """A touch matters to signups less than a window after it, decided a grace later."""
        return self.window_ms + self.grace_period_ms


# ------------------------------------------------------------------------------- event time


class EventTimeRules(_Strict):
    """How far behind a shop's stream time an event may arrive and still be decided as if it
    had come in time order: the watermark is stream time minus `allowed_lateness_minutes`,
    and every decision waits for it. 0: decided as events arrive (stream time)."""

    allowed_lateness_minutes: NonNegative = 0

    @cached_property
    def allowed_lateness_ms(self) -> int:
        return self.allowed_lateness_minutes * MINUTE_MS


# ---------------------------------------------------------------------------------- rewards


class RewardSpec(_Strict):
    """What one side earns: a kind and exactly one way to compute the amount."""

    kind: RewardKind
    fixed_minor: Positive | None = None
    percent_of_order: Annotated[int, Field(gt=0, le=100)] | None = None
    points_per_unit: Positive | None = None

    @model_validator(mode="after")
    def _exactly_one_amount(self) -> RewardSpec:
        given = [n for n in ("fixed_minor", "percent_of_order", "points_per_unit")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of fixed_minor, percent_of_order, "
                             f"points_per_unit (found {', '.join(given) or 'none'})")
        if self.points_per_unit is not None and self.kind != RewardKind.POINTS:
            raise ValueError(f"points_per_unit needs kind: points (kind is {self.kind})")
        if self.kind == RewardKind.POINTS and self.percent_of_order is not None:
            raise ValueError("kind: points takes fixed_minor (points) or points_per_unit")
        return self

    @property
    def needs_order(self) -> bool:
        return self.fixed_minor is None


class Tier(_Strict):
    """A milestone bonus for the referrer when their Nth referral succeeds."""

    at_successful_referrals: Positive
    kind: RewardKind
    fixed_minor: Positive


class Cap(_Strict):
    """At most `max_count` rewards and/or `max_amount_minor` per referrer per period."""

    period_days: Positive
    max_count: Positive | None = None
    max_amount_minor: Positive | None = None

    @model_validator(mode="after")
    def _limits_something(self) -> Cap:
        if self.max_count is None and self.max_amount_minor is None:
            raise ValueError("a cap needs max_count and/or max_amount_minor")
        return self

    @cached_property
    def period_ms(self) -> int:
        return self.period_days * DAY_MS


class RewardRules(_Strict):
    currency: Currency
    points_currency: Annotated[str, Field(min_length=1, max_length=8)]
    default_minor_unit_digits: Annotated[int, Field(ge=0, le=4)]
    minor_unit_digits: dict[Currency, Annotated[int, Field(ge=0, le=4)]] = {}
    hold_period_days: NonNegative
    return_policy: Literal["any_return", "full_return"]
    referrer: RewardSpec | None = None
    referee: RewardSpec | None = None
    tiers: list[Tier] = []
    caps: list[Cap] = []
    # Whether a reward held for fraud review takes a cap slot while it waits. By default it
    # does not: a genuine referral later in the period keeps its reward, and the held one is
    # checked against the caps when a reviewer releases it.
    held_rewards_use_caps: bool = False

    @model_validator(mode="after")
    def _tiers_ascend(self) -> RewardRules:
        levels = [t.at_successful_referrals for t in self.tiers]
        if levels != sorted(set(levels)):
            raise ValueError("tiers: at_successful_referrals must be unique and ascending, "
                             f"got {levels}")
        return self

    @cached_property
    def hold_period_ms(self) -> int:
        return self.hold_period_days * DAY_MS

    @cached_property
    def tier_by_level(self) -> dict[int, Tier]:
        return {t.at_successful_referrals: t for t in self.tiers}

    @cached_property
    def longest_cap_ms(self) -> int:
        return max((c.period_ms for c in self.caps), default=0)

    def unit_divisor(self, currency: str) -> int:
        """Minor units per unit of `currency` (100 for EUR, 1 for JPY)."""
        digits = self.minor_unit_digits.get(currency, self.default_minor_unit_digits)
        return int(10**digits)


# -------------------------------------------------------------------------------- campaigns


class Campaign(_Strict):
    id: Slug
    type: CampaignType
    utm_campaign: Slug
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    eligible_referrers: Literal["all", "named"] = "all"
    named_referrers: list[Annotated[str, Field(min_length=1)]] = []
    referrer_reward: RewardSpec | None = None
    referee_reward: RewardSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_referee_discount(cls, data: object) -> object:
        # Removed from the format: refstream never sees a checkout price, only the order
        # amount the shop reports after its own discounts, so a percentage here could neither
        # be applied nor checked; the referee's benefit refstream decides is referee_reward.
        if isinstance(data, dict) and "referee_discount_percent" in data:
            raise ValueError(
                "referee_discount_percent is no longer part of the rules format: the shop "
                "applies a checkout discount itself and reports the order amount after it; "
                "remove the key, and use referee_reward for a benefit refstream decides (an "
                "offer on the landing page of `refstream serve` is "
                "REFSTREAM_WEB_REFEREE_DISCOUNTS)")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError(f"ends_at {self.ends_at.isoformat()} is not after starts_at "
                             f"{self.starts_at.isoformat()}")
        if self.eligible_referrers == "named" and not self.named_referrers:
            raise ValueError("eligible_referrers: named needs a non-empty named_referrers list")
        if self.eligible_referrers == "all" and self.named_referrers:
            raise ValueError("named_referrers is only read with eligible_referrers: named")
        if self.type != "customer_to_customer":
            if self.referrer_reward or self.referee_reward:
                raise ValueError(f"a {self.type} campaign pays no kickback: remove "
                                 "referrer_reward/referee_reward")
            if self.eligible_referrers != "all":
                raise ValueError(f"a {self.type} campaign has no referrers to name")
        return self

    @cached_property
    def starts_at_ms(self) -> int | None:
        return _epoch_ms(self.starts_at)

    @cached_property
    def ends_at_ms(self) -> int | None:
        return _epoch_ms(self.ends_at)

    @cached_property
    def named_referrer_set(self) -> frozenset[str]:
        return frozenset(self.named_referrers)

    @property
    def pays_kickback(self) -> bool:
        return self.type == "customer_to_customer"

    def running_at(self, at_ms: int) -> bool:
        """Open interval on the right: a click at exactly `ends_at` is outside."""
        starts, ends = self.starts_at_ms, self.ends_at_ms
        return (starts is None or at_ms >= starts) and (ends is None or at_ms < ends)

    def accepts_referrer(self, referrer_id: str) -> bool:
        return self.eligible_referrers == "all" or referrer_id in self.named_referrer_set


def _epoch_ms(value: datetime | None) -> int | None:
    return None if value is None else epoch_ms(value)


# ---------------------------------------------------------------------------- qualification


class QualificationRules(_Strict):
    trigger: Trigger
    min_amount_minor: Positive | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    new_customers_only: bool

    @model_validator(mode="after")
    def _trigger_arguments(self) -> QualificationRules:
        if (self.trigger == "first_order_min_amount") != (self.min_amount_minor is not None):
            raise ValueError("min_amount_minor is required by, and only read with, "
                             "trigger: first_order_min_amount")
        if (self.trigger == "nth_order") != (self.n is not None):
            raise ValueError("n is required by, and only read with, trigger: nth_order")
        return self


# ------------------------------------------------------------------------------------ fraud


class IpVelocityRule(_Strict):
    """Referred signups from one IP hash; flags when `threshold` fall within the window."""

    threshold: Positive
    window_minutes: Positive
    action: FraudAction

    @cached_property
    def window_ms(self) -> int:
        return self.window_minutes * MINUTE_MS


class DeviceVelocityRule(_Strict):
    """Distinct referred accounts on one device within the window."""

    threshold: Positive
    window_hours: Positive
    action: FraudAction

    @cached_property
    def window_ms(self) -> int:
        return self.window_hours * HOUR_MS


class SharedAcrossRefereesRule(_Strict):
    """Distinct referees ordering with one payment (or shipping) hash within the window."""

    threshold: Positive
    window_days: Positive
    action: FraudAction

    @cached_property
    def window_ms(self) -> int:
        return self.window_days * DAY_MS


class BroadcastingRule(_Strict):
    """One code used by many distinct visitors arriving from several sources."""

    min_distinct_visitors: Positive
    min_distinct_sources: Positive
    window_hours: Positive
    action: FraudAction

    @cached_property
    def window_ms(self) -> int:
        return self.window_hours * HOUR_MS


class ActionRule(_Strict):
    """A signal without a count: it fires on one matching fact."""

    action: FraudAction


class FraudRules(_Strict):
    ip_velocity: IpVelocityRule
    device_velocity: DeviceVelocityRule
    payment_shared: SharedAcrossRefereesRule
    shipping_shared: SharedAcrossRefereesRule
    shipping_matches_referrer: ActionRule
    self_referral: ActionRule
    broadcasting: BroadcastingRule
    return_abuse: ActionRule


# ------------------------------------------------------------------------------------ rules


class Rules(_Strict):
    """One version of the programme; the version is stamped on every derived event."""

    version: Annotated[str, Field(min_length=1, max_length=100)]
    attribution: AttributionRules
    qualification: QualificationRules
    rewards: RewardRules
    campaigns: list[Campaign] = []
    fraud: FraudRules
    # Optional so rules files written before it keep loading (with the default lateness).
    event_time: EventTimeRules = EventTimeRules()

    def with_lateness(self, minutes: int) -> Rules:
        """These rules with `event_time.allowed_lateness_minutes` set to `minutes` and the
        version stamped with it (another lateness decides differently: a rules change)."""
        document = self.model_dump(mode="json")
        document["event_time"] = {"allowed_lateness_minutes": minutes}
        document["version"] = f"{self.version}-lateness-{minutes}"
        return Rules.model_validate(document)

    @model_validator(mode="after")
    def _coherent(self) -> Rules:
        for attr in ("id", "utm_campaign"):
            values = [getattr(c, attr) for c in self.campaigns]
            doubles = sorted({v for v in values if values.count(v) > 1})
            if doubles:
                raise ValueError(f"campaigns: {attr} must be unique, repeated: {doubles}")
        if self.qualification.trigger == "signup":
            for where, spec in self._reward_specs():
                if spec.needs_order:
                    raise ValueError(f"{where} computes its amount from an order, but "
                                     "qualification.trigger is signup: use fixed_minor")
        return self

    def _reward_specs(self) -> list[tuple[str, RewardSpec]]:
        found = [(f"rewards.{side}", spec) for side, spec in
                 (("referrer", self.rewards.referrer), ("referee", self.rewards.referee))
                 if spec is not None]
        for i, campaign in enumerate(self.campaigns):
            for side in ("referrer_reward", "referee_reward"):
                spec = getattr(campaign, side)
                if spec is not None:
                    found.append((f"campaigns.{i}.{side}", spec))
        return found

    @cached_property
    def campaign_by_id(self) -> dict[str, Campaign]:
        return {c.id: c for c in self.campaigns}

    @cached_property
    def campaign_by_slug(self) -> dict[str, Campaign]:
        return {c.utm_campaign: c for c in self.campaigns}


# ----------------------------------------------------------------------------------- loader


def default_rules_path() -> Path:
    """The rules shipped with refstream (`rewards/rules/default.yaml`)."""
    return Path(str(resources.files("refstream.rewards") / "rules" / "default.yaml"))


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file; RulesError names file:line and field of every problem."""
    location = Path(path)
    try:
        text = location.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{location}: cannot read the rules file: {exc.strerror or exc}") from exc
    return parse_rules(text, str(location))


def parse_rules(text: str, source: str = "<rules>") -> Rules:
    """Validate rules given as YAML text; `source` names it in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RulesError(f"{source}:{line}: not valid YAML: {exc.problem or exc}") from exc
    if not isinstance(document, dict) or root is None:
        raise RulesError(f"{source}:1: the rules file must be a mapping with a `version` key")
    lines: dict[tuple[str | int, ...], int] = {}
    _record_lines(root, (), lines)
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        raise RulesError(_describe(exc, source, lines)) from exc


def _record_lines(node: yaml.Node, path: tuple[str | int, ...],
                  lines: dict[tuple[str | int, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            lines[key_path] = key_node.start_mark.line + 1
            _record_lines(value_node, key_path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            lines[item_path] = item.start_mark.line + 1
            _record_lines(item, item_path, lines)


def _line_of(loc: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> int:
    # A missing field has no line of its own: point at the nearest enclosing key.
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line is not None:
            return line
    return 1


def _describe(exc: ValidationError, source: str,
              lines: dict[tuple[str | int, ...], int]) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if isinstance(p, str | int))
        field = ".".join(str(p) for p in loc) or "<top level>"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{source}:{_line_of(loc, lines)}: {field}: {message}")
    return "\n".join(problems)
