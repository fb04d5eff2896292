"""One value of every record refstream ships, with non-ASCII text, large numbers and both
arms of the optional fields, for the golden vectors and the cross-language tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from refstream.schemas import events as ev
from refstream.schemas.shop import (
    ShopClick,
    ShopCodeIssued,
    ShopEvent,
    ShopOrder,
    ShopReturn,
    ShopReview,
    ShopShare,
    ShopSignup,
)

WHEN = datetime(2026, 10, 3, 12, 30, 15, 123000, tzinfo=UTC)
MS = int(WHEN.timestamp() * 1000)


def shop_events(shop: str = "shop-ü1", tag: str = "1") -> list[ShopEvent]:
    """One event of each shop type (valid: they pass refstream's validation)."""
    base: dict[str, Any] = {"shop_id": shop, "occurred_at": WHEN}
    return [
        ShopShare(event_id=f"share-{tag}", referrer_id="cust-1", referral_code="R-CUST-1",
                  channel="whatsapp", campaign_id="spring-€", **base),
        ShopClick(event_id=f"click-{tag}", visitor_id="v-1",
                  landing_url="https://shop.example/p?ref=R-CUST-1&utm_source=wa",
                  ip="198.51.100.7", user_agent="Mozilla/5.0 (X11; Linux x86_64)",
                  referral_code="R-CUST-1", utm_source="wa", device_id="dev-9", **base),
        ShopSignup(event_id=f"signup-{tag}", customer_id="cust-2", email="Zoë.Doe+x@example.org",
                   ip="198.51.100.7", visitor_id="v-1", referral_code=None, device_id="dev-9",
                   **base),
        ShopOrder(event_id=f"order-{tag}", order_id="o-17", customer_id="cust-2",
                  amount_minor=9_999_999_999_999, currency="JPY", ip="2001:db8::7",
                  discount_code="WELCOME10", payment_fingerprint="pm_Ω", **base),
        ShopReturn(event_id=f"return-{tag}", return_id="r-1", order_id="o-17",
                   customer_id="cust-2", amount_minor=0, currency="EUR", **base),
        ShopReview(event_id=f"review-{tag}", referral_id="ref-1", decision="reject",
                   reviewer_id="alice", note="same device as the referrer", **base),
        ShopCodeIssued(event_id=f"issued-{tag}", referrer_id="cust-1", referral_code="R-CUST-1",
                       campaign_id="spring-€", **base),
    ]


def log_and_derived() -> list[Any]:
    """One value of each canonical-log and derived record."""
    return [
        ev.Share("e1", "s", MS, "c-1", "R-c-1", "email", None),
        ev.Click("e2", "s", MS, "v-1", "https://shop/x", "ip:1", "ua", "R-c-1", None, "email",
                 "referral", "friends", "d-1"),
        ev.Signup("e3", "s", MS, "c-2", "email:1", "ip:1", "v-1", None, "d-1"),
        ev.OrderPlaced("e4", "s", MS, "o-1", "c-2", 2**62, "EUR", "ip:1"),
        ev.OrderReturned("e5", "s", MS, "r-1", "o-1", "c-2", 1500, "EUR"),
        ev.ReviewDecided("e6", "s", MS, "ref-1", "approve", "alice", "ok ✓"),
        ev.Tick("e7", "s", MS),
        ev.CodeIssued("e8", "s", MS, "c-1", "R-c-1", "friends"),
        ev.Attribution("ref-1", "s", MS, "v1", "attributed", "c-2", "c-1", "R-c-1", "friends",
                       "link", None, "e2", "e3"),
        ev.FraudFlag("f-1", "s", MS, "v1", "ip_velocity", "ip_hash", "ip:1", 5, 6, 3_600_000,
                     "hold", ("e1", "e2")),
        ev.RewardStatus("rw-1", "s", MS, "v1", "pending", "ref-1", "c-1", "referrer", "credit",
                        1000, "EUR", MS + 1, "first_order", "o-1", 0),
        ev.RewardDue("rw-1", "s", MS, "v1", "ref-1", "c-1", "referrer", "credit", 1000, "EUR",
                     MS, "first_order", "o-1"),
        ev.RewardReversal("rv-1", "rw-1", "s", MS, "v1", "c-1", 1000, "EUR", "returned", "r-1"),
        ev.LateArrival("e2", "s", MS, "v1", "click", MS - 3_600_000, 2_700_000),
        ev.DeadLetter("shop.order", 2, 41, "bad", bytes(range(256)), "s", MS),
    ]
