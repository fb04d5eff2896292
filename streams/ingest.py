"""Ingest: turn one raw shop record into a canonical log event or a dead letter.

The faust agent and the embedded runner both call `Ingestor.accept`; it never raises for
bad input, so a poison record can't block a partition, and it never drops one silently.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from refstream.schemas.codec import Codec
from refstream.schemas.errors import DecodeError, InvalidEvent
from refstream.schemas.events import DeadLetter, LogEvent
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import ShopEvent

# A dead letter keeps at most this much of an oversized original, plus its length and hash,
# so the DLQ itself never fails on the record it is reporting.
DLQ_ORIGINAL_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: what a person needs to find it again."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Accepted:
    event: LogEvent


@dataclass(frozen=True, slots=True)
class Duplicate:
    event_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    dead_letter: DeadLetter


Outcome = Accepted | Duplicate | Rejected


def content_digest(event: ShopEvent) -> bytes:
    """What makes two copies of an event id the same event: their validated content."""
    return hashlib.blake2b(event.model_dump_json().encode(), digest_size=12).digest()


class RecentIds:
    """Event ids seen lately (bounded). The core dedupes exactly; this keeps retries off the log."""

    __slots__ = ("_capacity", "_ids")

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        # id -> digest of the first copy's content (b"" where the caller gave none)
        self._ids: OrderedDict[str, bytes] = OrderedDict()

    def seen_before(self, key: str, digest: bytes = b"") -> bool:
        if key in self._ids:
            return True
        self._ids[key] = digest
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return False

    def conflicts(self, key: str, digest: bytes) -> bool:
        """Whether an earlier copy of this id had other content (a conflicting duplicate)."""
        first = self._ids.get(key)
        return bool(first) and first != digest


class Ingestor:
    """Validates, pseudonymises and dedupes shop records; one per ingest worker."""

    def __init__(
        self,
        codec: Codec,
        pseudonymiser: Pseudonymiser,
        known_shops: frozenset[str] = frozenset(),
        max_event_bytes: int = 1_048_576,
        recent_ids: RecentIds | None = None,
    ) -> None:
        self._codec = codec
        self._pseudonymiser = pseudonymiser
        self._known_shops = known_shops
        self._max_event_bytes = max_event_bytes
        self._recent = recent_ids if recent_ids is not None else RecentIds()

    def accept(self, value: bytes | None, source: SourceRef, expected_type: str | None,
               now_ms: int = 0) -> Outcome:
        """The outcome for one record's value bytes; `expected_type` comes from the topic."""
        raw = value or b""
        try:
            event = self._validated(raw, expected_type)
        except (DecodeError, InvalidEvent) as exc:
            return Rejected(self.dead_letter(raw, source, str(exc), now_ms))
        key, digest = f"{event.shop_id}\x00{event.event_id}", content_digest(event)
        if self._recent.conflicts(key, digest):
            return Rejected(self.dead_letter(
                raw, source, f"conflicting duplicate: event id {event.event_id!r} of shop "
                f"{event.shop_id!r} came before with other content; the first copy stands. "
                "Send a correction under a new event id", now_ms, event.shop_id))
        if self._recent.seen_before(key, digest):
            return Duplicate(event.event_id)
        return Accepted(self._pseudonymiser.to_log_event(event))

    def accept_event(self, event: ShopEvent) -> Accepted | Duplicate:
        """The outcome for an already validated shop event (the JSON Lines path)."""
        if self._recent.seen_before(f"{event.shop_id}\x00{event.event_id}"):
            return Duplicate(event.event_id)
        return Accepted(self._pseudonymiser.to_log_event(event))

    def check_business_rules(self, event: ShopEvent, expected_type: str | None) -> None:
        if expected_type is not None and event.event_type != expected_type:
            raise InvalidEvent(
                f"a {event.event_type} event was published to the "
                f"{expected_type} topic; publish each event type to its own shop topic"
            )
        if self._known_shops and event.shop_id not in self._known_shops:
            raise InvalidEvent(
                f"unknown shop {event.shop_id!r}; add it to REFSTREAM_KNOWN_SHOPS to accept it"
            )

    def _validated(self, raw: bytes, expected_type: str | None) -> ShopEvent:
        if not raw:
            raise DecodeError("empty record value")
        if len(raw) > self._max_event_bytes:
            raise DecodeError(
                f"record of {len(raw)} bytes exceeds the {self._max_event_bytes}-byte event limit"
            )
        decoded = self._codec.decode(raw)
        if not isinstance(decoded, ShopEvent):
            raise DecodeError(
                f"{type(decoded).__name__} is not a shop event; shops publish share, click, "
                "signup, order, return and review events"
            )
        self.check_business_rules(decoded, expected_type)
        return decoded

    @staticmethod
    def dead_letter(raw: bytes, source: SourceRef, error: str, now_ms: int,
                    shop_id: str | None = None) -> DeadLetter:
        original = raw
        if len(raw) > DLQ_ORIGINAL_LIMIT:
            digest = hashlib.sha256(raw).hexdigest()
            error = (f"{error} [original of {len(raw)} bytes, sha256 {digest}, "
                     f"truncated to its first {DLQ_ORIGINAL_LIMIT} bytes here]")
            original = raw[:DLQ_ORIGINAL_LIMIT]
        return DeadLetter(source.topic, source.partition, source.offset, error, original,
                          shop_id, now_ms)
