"""What a customer was seen with (email, device, payment, shipping), and the first event of each.

Kept for every customer, because anyone may share a code later, so it is one flat tuple of
(kind, value, event id) triples: a few dozen bytes instead of a dict and its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

EMAIL: Final = "email"
DEVICE: Final = "device"
PAYMENT: Final = "payment"
SHIPPING: Final = "shipping"
ENTITY_TYPE: Final = {EMAIL: "email_hash", DEVICE: "device", PAYMENT: "payment_hash",
                      SHIPPING: "shipping_hash"}

Identity = tuple[str, ...]  # (kind, value, event id) * n, in the order they were first seen
Fact = tuple[str, str, str]
_WIDTH = 3


def facts(identity: Identity) -> Iterator[Fact]:
    for start in range(0, len(identity), _WIDTH):
        yield identity[start], identity[start + 1], identity[start + 2]


def first_seen(identity: Identity, kind: str, value: str) -> str | None:
    """The event that first showed `value` of `kind`, or None."""
    # `in` and tuple.index search in C (a miss, the common case, raises nothing); a hit
    # must sit in a value slot, after the right kind.
    if value not in identity:
        return None
    position = -1
    while value in identity[position + 1:]:
        position = identity.index(value, position + 1)
        if position % _WIDTH == 1 and identity[position - 1] == kind:
            return identity[position + 1]
    return None


def remember(identity: Identity, kind: str, value: str | None, event_id: str) -> Identity:
    """The identity with `value` added, unless it is empty or already known."""
    if not value or first_seen(identity, kind, value) is not None:
        return identity
    return (*identity, kind, value, event_id)
