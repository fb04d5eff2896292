"""Deterministic identifiers of derived events (UUIDv5).

An id is a pure function of the facts it names, so a message re-emitted after a crash or in
a replay carries the same id and finance, the projector and the diff dedupe on it.
"""

from __future__ import annotations

import uuid
from hashlib import sha1

# Fixed forever: changing it would give every referral, reward and flag a new identity.
REFSTREAM_NAMESPACE = uuid.UUID("6f1d3c1e-8a57-5b0e-9a64-2f5c0d7e4b19")
_NAMESPACE_BYTES = REFSTREAM_NAMESPACE.bytes

# RFC 4122 name-based SHA-1 UUID: the version nibble of byte 6 and the variant of byte 8.
_UUID_BYTES = 16
_VERSION_BYTE, _VERSION_MASK, _VERSION_5 = 6, 0x0F, 0x50
_VARIANT_BYTE, _VARIANT_MASK, _VARIANT_RFC_4122 = 8, 0x3F, 0x80


def _name(*parts: str) -> str:
    # Length-prefixed parts: ("a:b", "c") and ("a", "b:c") can never name the same thing.
    return "".join(f"{len(part)}:{part};" for part in parts)


def _uuid5(*parts: str) -> str:
    """Equal to str(uuid.uuid5(REFSTREAM_NAMESPACE, name)), without the slow UUID object."""
    raw = bytearray(sha1(_NAMESPACE_BYTES + _name(*parts).encode()).digest()[:_UUID_BYTES])
    raw[_VERSION_BYTE] = (raw[_VERSION_BYTE] & _VERSION_MASK) | _VERSION_5
    raw[_VARIANT_BYTE] = (raw[_VARIANT_BYTE] & _VARIANT_MASK) | _VARIANT_RFC_4122
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def referral_id(shop_id: str, referee_id: str) -> str:
    """A customer of a shop is referred at most once: the referral is named by the referee."""
    return _uuid5("referral", shop_id, referee_id)


def reward_id(shop_id: str, referral_id: str, side: str, reward_kind: str) -> str:
    """One economic reward; deliberately not the rules version, so a rule rollout never
    turns an already paid reward into a second payable one."""
    return _uuid5("reward", shop_id, referral_id, side, reward_kind)


def flag_id(shop_id: str, signal: str, entity_key: str, first_evidence_event_id: str) -> str:
    """One fraud episode: a signal on an entity, named by the event that opened it."""
    return _uuid5("flag", shop_id, signal, entity_key, first_evidence_event_id)


def reversal_id(reward_id: str, return_id: str) -> str:
    """The clawback of one reward caused by one return."""
    return _uuid5("reversal", reward_id, return_id)


def correction_id(reward_id: str, action: str, rules_version: str, amount_minor: int) -> str:
    """A correction published after a rule change (reverse or repay one reward): the same
    correction under the same rules is the same message, so publishing twice pays once."""
    return _uuid5("correction", reward_id, action, rules_version, str(amount_minor))
