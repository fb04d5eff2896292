"""Ingest: turn one raw shop record into a canonical log event or a dead letter.

The ingest stage (streams/ingest_stage.py) and the embedded runner both call
`Ingestor.accept`; it never raises for bad input, so a poison record can't block a
partition, and it never drops one silently.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from refstream.persistence.vault import PersonVault
from refstream.schemas.codec import Codec
from refstream.schemas.epoch import from_epoch_ms
from refstream.schemas.errors import DecodeError, InvalidEvent
from refstream.schemas.events import DeadLetter, LogEvent
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import SHOP_MODELS, ShopEvent
from refstream.schemas.shop_check import RecordCheck, record_check

if TYPE_CHECKING:
    from collections.abc import Sequence

    from refstream.streams.merge import Released
    from refstream.streams.settings import Settings

DAY_MS = 86_400_000


def pseudonymiser_from_settings(settings: Settings) -> Pseudonymiser:
    """The ingest pseudonymiser: with the person vault when REFSTREAM_PERSON_VAULT is set."""
    vault = PersonVault(settings.person_vault) if settings.person_vault is not None else None
    return Pseudonymiser(settings.pii_secret_bytes(), vault)


@dataclass(frozen=True, slots=True)
class EventTimeBounds:
    """How far from ingest's wall clock an event's own `occurred_at` may be.

    Stream time is the largest event time of a shop, so one event dated years ahead would
    pass every hold at once; one dated 1970 is a broken producer. Both are dead-lettered.
    """

    future_tolerance_ms: int
    horizon_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EventTimeBounds:
        return cls(int(settings.future_tolerance_s * 1000),
                   int(settings.event_horizon_days * DAY_MS))

    def violation(self, occurred_at: int, now_ms: int) -> str | None:
        """Why an event dated `occurred_at` may not enter the log at wall time `now_ms`."""
        ahead = occurred_at - now_ms
        if ahead > self.future_tolerance_ms:
            return (f"occurred_at {_iso(occurred_at)} is {_span(ahead)} ahead of ingest's clock "
                    f"({_iso(now_ms)}), more than the {_span(self.future_tolerance_ms)} "
                    "REFSTREAM_FUTURE_TOLERANCE_S allows: the producer's clock is wrong; fix "
                    "it and publish the event again with its real time")
        if now_ms - occurred_at > self.horizon_ms:
            return (f"occurred_at {_iso(occurred_at)} is older than the "
                    f"{_span(self.horizon_ms)} horizon before ingest's clock ({_iso(now_ms)}) "
                    "that REFSTREAM_EVENT_HORIZON_DAYS sets: a producer without a real "
                    "timestamp, or a backfill older than the horizon (raise it, then redrive)")
        return None


def _iso(ms: int) -> str:
    try:
        return from_epoch_ms(ms).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms since 1970"


def _span(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("days", 86_400), ("hours", 3_600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.1f} seconds"


# A dead letter keeps at most this much of an oversized original, plus its length and hash,
# so the DLQ itself never fails on the record it is reporting.
DLQ_ORIGINAL_LIMIT = 64 * 1024


class SourceRef(NamedTuple):
    """Where a record came from: what a person needs to find it again. (A named tuple: one
    is made per record read, and a frozen dataclass costs five times as much to build.)"""

    topic: str
    partition: int
    offset: int


class Source(Protocol):
    """Anything that says where a record came from: a `SourceRef`, or the consumer's record
    itself (aiokafka's has these three attributes), so the live path builds no `SourceRef`
    per record read; only a dead letter keeps where its record came from."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


# One outcome is built per record read: not frozen, since a frozen dataclass's __init__
# (object.__setattr__ per field) costs four times a plain one's. Nothing changes them.
@dataclass(slots=True)
class Accepted:
    event: LogEvent


@dataclass(slots=True)
class Duplicate:
    event_id: str


@dataclass(slots=True)
class Rejected:
    dead_letter: DeadLetter


Outcome = Accepted | Duplicate | Rejected


def content_digest(event: ShopEvent) -> bytes:
    """What makes two copies of an event id the same event: their validated content.

    Stable across processes and versions (`run --append` stores it); live ingest, which
    keeps its digests in memory only, uses the cheaper `content_hash`."""
    return hashlib.blake2b(event.model_dump_json().encode(), digest_size=12).digest()


def content_hash(model: type[ShopEvent], fields: Mapping[str, Any], occurred_at_ms: int
                 ) -> bytes:
    """`content_digest` for one process's memory, at a tenth of its cost: Python's hash of
    the event's type, its time in epoch milliseconds and its other validated field values in
    the model's order (SipHash, keyed per process, for text), whether the fields are a
    model's or a decoded record's that `shop_check` passed. Two copies with equal content
    hash equal; two with other content collide with a chance of about 2**-64 (the digest
    kept 2**-96); copies that differ in exactly one field collide only if that field's two
    values hash alike (the tuple hash maps each field's hash through a bijection)."""
    return hash((model, occurred_at_ms, _other_fields(model)(fields))).to_bytes(
        8, "little", signed=True)


@cache
def _other_fields(model: type[ShopEvent]) -> Callable[[Mapping[str, Any]], Any]:
    """The fields but `occurred_at`, in the model's order, as one C call."""
    return itemgetter(*(name for name in model.model_fields if name != "occurred_at"))


@dataclass(frozen=True, slots=True)
class ShopTopics:
    """Which shops publish on topics of their own, and how those topics are named.

    Kafka tells a consumer nothing about who produced a record; what it does enforce is who
    may write a topic. So a shop's credential speaks for that shop alone through topics only
    its principal may write (`<shop prefix>.<shop id>.<type>`, deploy/acls.py), and ingest
    binds every event read there to that shop.
    """

    shop_prefix: str
    own_topic_shops: frozenset[str]

    def topic_shop(self, topic: str) -> str | None:
        """The shop whose own topic `topic` is (None for the shared shop topics)."""
        head, _, rest = topic.partition(".")
        shop_id, _, _ = rest.rpartition(".")
        return shop_id if head == self.shop_prefix and shop_id in self.own_topic_shops else None

    def violation(self, shop_id: str, topic: str) -> str | None:
        if not self.own_topic_shops:
            return None  # every shop publishes on the shared topics
        owner = self.topic_shop(topic)
        if owner is not None and shop_id != owner:
            return (f"an event for shop {shop_id!r} on {topic}, a topic only shop {owner!r}'s "
                    "credential may write: a shop's credential speaks only for its own shop; "
                    f"{shop_id!r} must publish it on its own topics")
        if owner is None and shop_id in self.own_topic_shops:
            return (f"an event for shop {shop_id!r} on the shared topic {topic}: that shop "
                    f"publishes on its own topics ({self.shop_prefix}.{shop_id}.<type>), "
                    "writable only with its credential (REFSTREAM_SHOP_PRINCIPALS)")
        return None


class RecentIds:
    """Event ids seen lately (bounded). The core dedupes exactly; this keeps retries off the log."""

    __slots__ = ("_capacity", "_ids", "_order")

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # id -> digest of the first copy's content (b"" where the caller gave none), and the
        # ids in the order they came: a dict and a queue hold an id in half the memory an
        # OrderedDict takes beyond the id and its digest (39 against 80 bytes, measured).
        self._ids: dict[str, bytes] = {}
        self._order: deque[str] = deque()

    def forget(self, key: str) -> None:
        """Not seen after all. Its place in the queue stays: if the id comes again, it is
        forgotten when that first place comes round, a little early (the core still
        dedupes it)."""
        self._ids.pop(key, None)

    def seen_before(self, key: str, digest: bytes = b"") -> bool:
        return self.first_copy(key, digest) is not None

    def first_copy(self, key: str, digest: bytes) -> bytes | None:
        """The digest of the first copy of this id (b"" where it had none), or None when this
        is the first copy, which is then remembered: whether it is a duplicate, and of what
        content, in one look-up. The newest `capacity` ids are kept (the oldest goes first)."""
        ids = self._ids
        first = ids.get(key)
        if first is not None:
            return first
        ids[key] = digest
        order = self._order
        order.append(key)
        if len(order) > self._capacity:
            ids.pop(order.popleft(), None)
        return None


class Ingestor:
    """Validates, pseudonymises and dedupes shop records; one per ingest worker."""

    def __init__(
        self,
        codec: Codec,
        pseudonymiser: Pseudonymiser,
        known_shops: frozenset[str] = frozenset(),
        max_event_bytes: int = 1_048_576,
        recent_ids: RecentIds | None = None,
        *,
        event_time_bounds: EventTimeBounds | None = None,
        shop_topics: ShopTopics | None = None,
        pydantic_only: bool = False,
    ) -> None:
        self._codec = codec
        self._pseudonymiser = pseudonymiser
        self._known_shops = known_shops
        self._max_event_bytes = max_event_bytes
        self._recent = recent_ids if recent_ids is not None else RecentIds()
        self._bounds = event_time_bounds
        # Only shops with topics of their own have a topic to check an event's shop against.
        self._shop_topics = shop_topics if shop_topics and shop_topics.own_topic_shops else None
        # Record full name -> (model, check) for the models `shop_check` has a check for;
        # empty with `pydantic_only` (every record through pydantic: the reference the checks
        # are tested against).
        self._checks: dict[str, tuple[type[ShopEvent], RecordCheck]] = {}
        if not pydantic_only:
            for model in SHOP_MODELS.values():
                check = record_check(model)
                if check is not None:
                    self._checks[codec.record_name(model)] = (model, check)

    def accept(self, value: bytes | None, source: Source, expected_type: str | None,
               now_ms: int = 0) -> Outcome:
        """The outcome for one record's value bytes; `expected_type` comes from the topic."""
        raw = value or b""
        try:
            model, fields, occurred_at = self._validated(raw, expected_type)
            shop_id, event_id = fields["shop_id"], fields["event_id"]
            self.check_shop_and_time(shop_id, source.topic, now_ms, occurred_at)
        except (DecodeError, InvalidEvent) as exc:
            return Rejected(self.dead_letter(raw, source, str(exc), now_ms))
        digest = content_hash(model, fields, occurred_at)
        first = self._recent.first_copy(f"{shop_id}\x00{event_id}", digest)
        if first is None:
            return Accepted(self._pseudonymiser.log_event(model, fields, occurred_at))
        if first and first != digest:
            return Rejected(self.dead_letter(
                raw, source, f"conflicting duplicate: event id {event_id!r} of shop "
                f"{shop_id!r} came before with other content; the first copy stands. "
                "Send a correction under a new event id", now_ms, shop_id))
        return Duplicate(event_id)

    def accept_event(self, event: ShopEvent) -> Accepted | Duplicate:
        """The outcome for an already validated shop event (the JSON Lines path)."""
        if self._recent.seen_before(f"{event.shop_id}\x00{event.event_id}"):
            return Duplicate(event.event_id)
        return Accepted(self._pseudonymiser.to_log_event(event))

    def forget(self, event: LogEvent) -> None:
        """An accepted event that was not appended after all (its partition moved away
        first): when it is read again, it is no duplicate."""
        self._recent.forget(f"{event.shop_id}\x00{event.event_id}")

    def check_business_rules(self, event: ShopEvent, expected_type: str | None) -> None:
        self._check_type_and_shop(event.event_type, event.shop_id, expected_type)

    def _check_type_and_shop(self, event_type: str, shop_id: str,
                             expected_type: str | None) -> None:
        if expected_type is not None and event_type != expected_type:
            raise InvalidEvent(
                f"a {event_type} event was published to the "
                f"{expected_type} topic; publish each event type to its own shop topic"
            )
        if self._known_shops and shop_id not in self._known_shops:
            raise InvalidEvent(
                f"unknown shop {shop_id!r}; add it to REFSTREAM_KNOWN_SHOPS to accept it"
            )

    def check_edge(self, event: ShopEvent, topic: str | None, now_ms: int) -> None:
        """What ingest must not take on the event's own say-so: its time against the wall
        clock, and (from a topic, with per-shop topics) its shop against the topic's."""
        self.check_shop_and_time(event.shop_id, topic, now_ms, event.occurred_at_ms)

    def check_shop_and_time(self, shop_id: str, topic: str | None, now_ms: int,
                            occurred_at_ms: int) -> None:
        """`check_edge` of an event given as its shop and its time."""
        if self._bounds is not None:
            reason = self._bounds.violation(occurred_at_ms, now_ms)
            if reason is not None:
                raise InvalidEvent(reason)
        if self._shop_topics is not None and topic is not None:
            reason = self._shop_topics.violation(shop_id, topic)
            if reason is not None:
                raise InvalidEvent(reason)

    def _validated(self, raw: bytes, expected_type: str | None
                   ) -> tuple[type[ShopEvent], Mapping[str, Any], int]:
        """The event's model, its validated fields (the decoded record itself when its
        model's check passes it, else the pydantic model's) and its epoch milliseconds."""
        if not raw:
            raise DecodeError("empty record value")
        if len(raw) > self._max_event_bytes:
            raise DecodeError(
                f"record of {len(raw)} bytes exceeds the {self._max_event_bytes}-byte event limit"
            )
        name, record = self._codec.decode_record(raw)
        checked = self._checks.get(name)
        if checked is not None and checked[1](record):
            self._check_type_and_shop(record["event_type"], record["shop_id"], expected_type)
            return checked[0], record, record["occurred_at"]
        # Not passed as it is (or no checks): pydantic normalises it or says what is wrong.
        decoded = self._codec.from_record(name, record)
        if not isinstance(decoded, ShopEvent):
            raise DecodeError(
                f"{type(decoded).__name__} is not a shop event; shops publish share, click, "
                "signup, order, return and review events"
            )
        self.check_business_rules(decoded, expected_type)
        return type(decoded), decoded.__dict__, decoded.occurred_at_ms

    @staticmethod
    def dead_letter(raw: bytes, source: Source, error: str, now_ms: int,
                    shop_id: str | None = None) -> DeadLetter:
        original = raw
        if len(raw) > DLQ_ORIGINAL_LIMIT:
            digest = hashlib.sha256(raw).hexdigest()
            error = (f"{error} [original of {len(raw)} bytes, sha256 {digest}, "
                     f"truncated to its first {DLQ_ORIGINAL_LIMIT} bytes here]")
            original = raw[:DLQ_ORIGINAL_LIMIT]
        return DeadLetter(source.topic, source.partition, source.offset, error, original,
                          shop_id, now_ms)


@dataclass(slots=True)
class MergeMetrics:
    """What the event-time merge costs and what it could not prevent (README, "Event time
    at ingest"), per worker."""

    late_appends: Counter
    waited_out: Counter
    buffered: Gauge
    # The latest event time this worker appended per (partition, shop), while it owns it.
    latest: dict[tuple[int, str], int] = field(default_factory=dict)

    @classmethod
    def register(cls, registry: CollectorRegistry) -> MergeMetrics:
        return cls(
            Counter("refstream_ingest_late_appends",
                    "events appended further behind their shop's latest appended event than "
                    "the rules' allowed lateness", registry=registry),
            Counter("refstream_ingest_waited_out",
                    "events appended after the merge stopped waiting (REFSTREAM_MERGE_IDLE_S) "
                    "for an empty topic-partition of their co-partition", registry=registry),
            Gauge("refstream_ingest_merge_buffered",
                  "shop records read but not yet appended nor committed", registry=registry),
        )

    def appended(self, partition: int, shop_id: str, occurred_at: int, waited_out: bool,
                 allowed_lateness_ms: int) -> None:
        key = (partition, shop_id)
        latest = self.latest.get(key)
        if latest is not None and latest - occurred_at > allowed_lateness_ms:
            self.late_appends.inc()
        if latest is None or occurred_at > latest:
            self.latest[key] = occurred_at
        if waited_out:
            self.waited_out.inc()

    def appended_batch(self, released: Sequence[Released[Any]],
                       allowed_lateness_ms: int) -> None:
        """`appended` for a release's records, in append order, with one update of each
        counter."""
        latest_of, late, waited = self.latest, 0, 0
        for record in released:
            occurred_at = record.occurred_at
            key = (record.tp[1], record.shop)
            latest = latest_of.get(key)
            if latest is None or occurred_at > latest:
                latest_of[key] = occurred_at
            elif latest - occurred_at > allowed_lateness_ms:
                late += 1
            waited += record.waited_out
        if late:
            self.late_appends.inc(late)
        if waited:
            self.waited_out.inc(waited)

    def forget(self, partitions: set[int]) -> None:
        """Partitions moved away: what their next owner appends is measured there (records
        appended here but not yet committed are appended again, and are no late events)."""
        for key in [key for key in self.latest if key[0] in partitions]:
            del self.latest[key]
