"""Pseudonymisation at the edge: normalise personal data and replace it with keyed hashes.

The canonical log is immutable and kept forever, so it must never hold a raw email, IP,
payment fingerprint or shipping address; equal inputs still hash equal, so fraud matching works.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Protocol

from refstream.schemas.events import (
    LOG_EVENT_CONSTRUCTORS,
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

# Ingest builds one log event per record it accepts: through each class's fast constructor
# (schemas/events.py, `fast_constructor`: the very same frozen event, in about a third of
# the time its `__init__` takes).
_CLICK, _ORDER, _SIGNUP, _SHARE, _RETURN, _ISSUED, _REVIEW = (
    LOG_EVENT_CONSTRUCTORS[cls.event_type]
    for cls in (Click, OrderPlaced, Signup, Share, OrderReturned, CodeIssued, ReviewDecided))


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

    __slots__ = ("_inner", "_kinds", "_outer", "_person_tokens")

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
        # Per kind: the inner state with "<kind>\0" already taken in, and the "<kind>:"
        # prefix of its hashes (kinds are a handful of names in the code; bounded anyway).
        self._kinds: dict[str, tuple[Any, str]] = {}

    def person(self, shop_id: str, customer_id: str) -> str:
        """The customer id as the log stores it: the raw id, or the person's token."""
        if self._person_tokens is None:
            return customer_id
        return self._person_tokens.token(shop_id, customer_id)

    def hash(self, kind: str, value: str) -> str:
        """A hash that differs per kind, so an IP and an email never collide by accident:
        HMAC-SHA256 of "<kind>\0<value>", as "<kind>:" and its first 32 hex digits."""
        keyed = self._kinds.get(kind)
        if keyed is None:
            keyed = self._keyed(kind)
        inner = keyed[0].copy()
        inner.update(value.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return keyed[1] + outer.hexdigest()[:32]

    def _keyed(self, kind: str) -> tuple[Any, str]:
        inner = self._inner.copy()
        inner.update(f"{kind}\x00".encode())
        keyed = (inner, f"{kind}:")
        if len(self._kinds) < 64:
            self._kinds[kind] = keyed
        return keyed

    def _optional(self, kind: str, value: str | None, normalise: bool = False) -> str | None:
        if value is None or value == "":
            return None
        return self.hash(kind, normalise_address(value) if normalise else value)

    def to_log_event(self, event: ShopEvent, occurred_at_ms: int | None = None) -> LogEvent:
        """The validated shop event as the canonical log stores it (`occurred_at_ms`: its
        time as epoch milliseconds, when the caller has it already)."""
        ms = event.occurred_at_ms if occurred_at_ms is None else occurred_at_ms
        return self.log_event(type(event), event.__dict__, ms)

    def log_event(self, model: type[ShopEvent], f: Mapping[str, Any], ms: int) -> LogEvent:
        """The log form of a validated shop event given as its fields (a model's, or a
        decoded record that `shop_check` passed: values as the model would hold them),
        at `ms` epoch milliseconds."""
        if model is ShopClick:
            return _CLICK(f["event_id"], f["shop_id"], ms, f["visitor_id"], f["landing_url"],
                          self.hash("ip", f["ip"]), f["user_agent"], f["referral_code"],
                          f["campaign_id"], f["utm_source"], f["utm_medium"],
                          f["utm_campaign"], f["device_id"])
        if model is ShopOrder:
            return _ORDER(f["event_id"], f["shop_id"], ms, f["order_id"],
                          self.person(f["shop_id"], f["customer_id"]),
                          f["amount_minor"], f["currency"], self.hash("ip", f["ip"]),
                          f["visitor_id"], f["discount_code"], f["device_id"],
                          self._optional("payment", f["payment_fingerprint"]),
                          self._optional("address", f["shipping_address"], True))
        if model is ShopSignup:
            return _SIGNUP(f["event_id"], f["shop_id"], ms,
                           self.person(f["shop_id"], f["customer_id"]),
                           self.hash("email", normalise_email(f["email"])),
                           self.hash("ip", f["ip"]), f["visitor_id"], f["referral_code"],
                           f["device_id"])
        if model is ShopShare:
            return _SHARE(f["event_id"], f["shop_id"], ms,
                          self.person(f["shop_id"], f["referrer_id"]), f["referral_code"],
                          f["channel"], f["campaign_id"])
        if model is ShopReturn:
            return _RETURN(f["event_id"], f["shop_id"], ms, f["return_id"],
                           f["order_id"], self.person(f["shop_id"], f["customer_id"]),
                           f["amount_minor"], f["currency"])
        if model is ShopCodeIssued:
            return _ISSUED(f["event_id"], f["shop_id"], ms,
                           self.person(f["shop_id"], f["referrer_id"]), f["referral_code"],
                           f["campaign_id"])
        if model is ShopReview:
            return _REVIEW(f["event_id"], f["shop_id"], ms, f["referral_id"],
                           f["decision"], f["reviewer_id"], f["note"])
        raise TypeError(f"no log form for shop event type {model.__name__}")
