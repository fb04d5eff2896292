"""Pydantic models of the events shops publish (with raw personal data), validated at the edge.

They mirror `avro/shop_*.avsc`; `occurred_at` is an aware UTC datetime here and epoch
milliseconds on the wire. Ingest turns them into the pseudonymised log events of `events.py`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator

from refstream.schemas.epoch import epoch_ms
from refstream.schemas.status import ReviewDecision

NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
# Money is a JSON integer of minor units, nothing that merely converts to one: lax pydantic
# would take `true` as 1 cent and "4599" or 45.0 as amounts, hiding a producer's bug.
MinorUnits = Annotated[StrictInt, Field(ge=0, le=10**13)]


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("occurred_at must carry a timezone (UTC), e.g. 2026-01-31T12:00:00Z")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


def looks_like_email(value: str) -> bool:
    """Something before an @ and a dot after it: the address's shape, not its existence."""
    local, at, domain = value.rpartition("@")
    return bool(at and local and "." in domain)


class ShopEvent(BaseModel):
    """Fields every shop event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    event_type: str
    event_id: NonEmpty
    shop_id: NonEmpty
    occurred_at: UtcDatetime

    @property
    def occurred_at_ms(self) -> int:
        return epoch_ms(self.occurred_at)


class ShopShare(ShopEvent):
    event_type: Literal["share"] = "share"
    referrer_id: NonEmpty
    referral_code: NonEmpty
    channel: NonEmpty
    campaign_id: str | None = None


class ShopClick(ShopEvent):
    event_type: Literal["click"] = "click"
    visitor_id: NonEmpty
    landing_url: NonEmpty = Field(max_length=4096)
    ip: NonEmpty
    user_agent: str = Field(max_length=4096)
    referral_code: str | None = None
    campaign_id: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    device_id: str | None = None


class ShopSignup(ShopEvent):
    event_type: Literal["signup"] = "signup"
    customer_id: NonEmpty
    email: NonEmpty
    ip: NonEmpty
    visitor_id: str | None = None
    referral_code: str | None = None
    device_id: str | None = None

    @field_validator("email")
    @classmethod
    def _looks_like_email(cls, value: str) -> str:
        if not looks_like_email(value):
            raise ValueError(f"not an email address: {value!r}")
        return value


class ShopOrder(ShopEvent):
    event_type: Literal["order"] = "order"
    order_id: NonEmpty
    customer_id: NonEmpty
    amount_minor: MinorUnits
    currency: Currency
    ip: NonEmpty
    visitor_id: str | None = None
    discount_code: str | None = None
    device_id: str | None = None
    payment_fingerprint: str | None = None
    shipping_address: str | None = None


class ShopReturn(ShopEvent):
    event_type: Literal["return"] = "return"
    return_id: NonEmpty
    order_id: NonEmpty
    customer_id: NonEmpty
    amount_minor: MinorUnits
    currency: Currency


class ShopReview(ShopEvent):
    event_type: Literal["review"] = "review"
    referral_id: NonEmpty
    decision: ReviewDecision
    reviewer_id: NonEmpty
    note: str | None = None


class ShopCodeIssued(ShopEvent):
    """A referral code issued to a referrer (by `refstream serve` or the shop itself)."""

    event_type: Literal["code_issued"] = "code_issued"
    referrer_id: NonEmpty
    referral_code: NonEmpty
    campaign_id: str | None = None


AnyShopEvent = (ShopShare | ShopClick | ShopSignup | ShopOrder | ShopReturn | ShopReview
                | ShopCodeIssued)

SHOP_MODELS: dict[str, type[ShopEvent]] = {
    "share": ShopShare,
    "click": ShopClick,
    "signup": ShopSignup,
    "order": ShopOrder,
    "return": ShopReturn,
    "review": ShopReview,
    "code_issued": ShopCodeIssued,
}
