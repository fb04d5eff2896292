"""Pseudonymisation at the edge: normalise personal data and replace it with keyed hashes.

The canonical log is immutable and kept forever, so it must never hold a raw email, IP,
payment fingerprint or shipping address; equal inputs still hash equal, so fraud matching works.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from refstream.schemas.events import (
    Click,
    CodeIssued,
    LogEvent,
    OrderPlaced,
    OrderReturned,
    ReviewDecided,
    Share,
    Signup,
)
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

# Providers that ignore dots in the local part and deliver "+tag" addresses to the base box.
_DOT_INSENSITIVE_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
_DOMAIN_ALIASES = {"googlemail.com": "gmail.com"}
_SHA256_BLOCK = 64


def normalise_email(email: str) -> str:
    """One spelling per mailbox: lower case, +tags dropped, gmail-style dots removed."""
    local, _, domain = email.strip().lower().rpartition("@")
    domain = _DOMAIN_ALIASES.get(domain, domain)
    local = local.split("+", 1)[0]
    if domain in _DOT_INSENSITIVE_DOMAINS:
        local = local.replace(".", "")
    return f"{local}@{domain}"


def normalise_address(address: str) -> str:
    """Case and spacing do not make a different shipping address."""
    return " ".join(address.lower().replace(",", " ").split())


class PersonTokens(Protocol):
    """Stands a per-person token in for a shop's customer id (the person vault does)."""

    def token(self, shop_id: str, customer_id: str) -> str: ...


class Pseudonymiser:
    """Keyed hashing (HMAC-SHA256) with the deployment secret; one instance per runtime.

    With `person_tokens`, customer ids (a share's referrer, a signup's, order's or return's
    customer) reach the log as per-person tokens, so erasing the person's vault entry
    leaves nothing in the log that links back to the shop's customer id.
    """

    __slots__ = ("_inner", "_outer", "_person_tokens")

    def __init__(self, secret: bytes, person_tokens: PersonTokens | None = None) -> None:
        if len(secret) < 16:
            raise ValueError(
                "the pseudonymisation secret must be at least 16 bytes; "
                "set REFSTREAM_PII_SECRET to a long random value"
            )
        self._person_tokens = person_tokens
        # HMAC's two keyed SHA-256 states (RFC 2104), computed once: each hash then costs a
        # copy and an update of each instead of hmac.new's key setup (a third of the time).
        key = secret if len(secret) <= _SHA256_BLOCK else hashlib.sha256(secret).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def person(self, shop_id: str, customer_id: str) -> str:
        """The customer id as the log stores it: the raw id, or the person's token."""
        if self._person_tokens is None:
            return customer_id
        return self._person_tokens.token(shop_id, customer_id)

    def hash(self, kind: str, value: str) -> str:
        """A hash that differs per kind, so an IP and an email never collide by accident."""
        inner = self._inner.copy()
        inner.update(f"{kind}\x00{value}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return f"{kind}:{outer.hexdigest()[:32]}"

    def _optional(self, kind: str, value: str | None, normalise: bool = False) -> str | None:
        if value is None or value == "":
            return None
        return self.hash(kind, normalise_address(value) if normalise else value)

    def to_log_event(self, event: ShopEvent, occurred_at_ms: int | None = None) -> LogEvent:
        """The validated shop event as the canonical log stores it (`occurred_at_ms`: its
        time as epoch milliseconds, when the caller has it already)."""
        ms = event.occurred_at_ms if occurred_at_ms is None else occurred_at_ms
        match event:
            case ShopShare():
                return Share(event.event_id, event.shop_id, ms,
                             self.person(event.shop_id, event.referrer_id),
                             event.referral_code, event.channel, event.campaign_id)
            case ShopClick():
                return Click(event.event_id, event.shop_id, ms, event.visitor_id,
                             event.landing_url, self.hash("ip", event.ip), event.user_agent,
                             event.referral_code, event.campaign_id, event.utm_source,
                             event.utm_medium, event.utm_campaign, event.device_id)
            case ShopSignup():
                return Signup(event.event_id, event.shop_id, ms,
                              self.person(event.shop_id, event.customer_id),
                              self.hash("email", normalise_email(event.email)),
                              self.hash("ip", event.ip), event.visitor_id,
                              event.referral_code, event.device_id)
            case ShopOrder():
                return OrderPlaced(event.event_id, event.shop_id, ms, event.order_id,
                                   self.person(event.shop_id, event.customer_id),
                                   event.amount_minor, event.currency,
                                   self.hash("ip", event.ip), event.visitor_id,
                                   event.discount_code, event.device_id,
                                   self._optional("payment", event.payment_fingerprint),
                                   self._optional("address", event.shipping_address, True))
            case ShopReturn():
                return OrderReturned(event.event_id, event.shop_id, ms, event.return_id,
                                     event.order_id,
                                     self.person(event.shop_id, event.customer_id),
                                     event.amount_minor,
                                     event.currency)
            case ShopCodeIssued():
                return CodeIssued(event.event_id, event.shop_id, ms,
                                  self.person(event.shop_id, event.referrer_id),
                                  event.referral_code, event.campaign_id)
            case ShopReview():
                return ReviewDecided(event.event_id, event.shop_id, ms, event.referral_id,
                                     event.decision, event.reviewer_id, event.note)
        raise TypeError(f"no log form for shop event type {type(event).__name__}")
