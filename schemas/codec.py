"""The wire codec: Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body).

Every message names its writer schema by fingerprint, so any version ever shipped in
`avro/` decodes without a registry server, read through the newest version of its record.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from pydantic import ValidationError

from refstream.schemas import events as ev
from refstream.schemas import shop
from refstream.schemas.errors import DecodeError
from refstream.schemas.events import LOG_EVENT_TYPES, LogEvent

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
_FINGERPRINT = struct.Struct("<Q")

# Which Python type each Avro record full name stands for.
_SHOP_RECORDS: dict[str, type[shop.ShopEvent]] = {
    "refstream.shop.Share": shop.ShopShare,
    "refstream.shop.Click": shop.ShopClick,
    "refstream.shop.Signup": shop.ShopSignup,
    "refstream.shop.Order": shop.ShopOrder,
    "refstream.shop.Return": shop.ShopReturn,
    "refstream.shop.Review": shop.ShopReview,
    "refstream.shop.CodeIssued": shop.ShopCodeIssued,
}
_DATACLASS_RECORDS: dict[str, type[Any]] = {
    "refstream.log.Share": ev.Share,
    "refstream.log.Click": ev.Click,
    "refstream.log.Signup": ev.Signup,
    "refstream.log.OrderPlaced": ev.OrderPlaced,
    "refstream.log.OrderReturned": ev.OrderReturned,
    "refstream.log.ReviewDecided": ev.ReviewDecided,
    "refstream.log.Tick": ev.Tick,
    "refstream.log.CodeIssued": ev.CodeIssued,
    "refstream.derived.Attribution": ev.Attribution,
    "refstream.derived.FraudFlag": ev.FraudFlag,
    "refstream.derived.RewardStatus": ev.RewardStatus,
    "refstream.derived.RewardDue": ev.RewardDue,
    "refstream.derived.RewardReversal": ev.RewardReversal,
    "refstream.derived.DeadLetter": ev.DeadLetter,
    "refstream.derived.LateArrival": ev.LateArrival,
}


_LOG_EVENT_CLASSES = tuple(LOG_EVENT_TYPES.values())


def _without_logical_types(node: Any) -> Any:
    # Timestamps stay integer epoch milliseconds in Python; dropping the annotation keeps
    # the binary layout and the fingerprint (the canonical form ignores logicalType).
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class SchemaVersion:
    """One `.avsc` file: a version of one record."""

    full_name: str
    version: int
    file_name: str
    declared: dict[str, Any]
    parsed: Any
    fingerprint: int


def load_schema_versions() -> list[SchemaVersion]:
    """Every schema version shipped with refstream, oldest first per record."""
    found: list[SchemaVersion] = []
    folder = resources.files("refstream.schemas") / "avro"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".avsc"):
            continue
        declared = json.loads(entry.read_text())
        version = int(entry.name.rsplit(".v", 1)[1].removesuffix(".avsc"))
        parsed = parse_schema(_without_logical_types(declared))
        canonical = to_parsing_canonical_form(parsed)
        fp = int(fingerprint(canonical, "CRC-64-AVRO"), 16)
        full_name = f"{declared['namespace']}.{declared['name']}"
        found.append(SchemaVersion(full_name, version, entry.name, declared, parsed, fp))
    found.sort(key=lambda s: (s.full_name, s.version))
    return found


def _ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Codec:
    """Encodes refstream values to single-object Avro and back; build one and share it."""

    def __init__(self) -> None:
        versions = load_schema_versions()
        self._by_fingerprint: dict[int, SchemaVersion] = {v.fingerprint: v for v in versions}
        self._newest: dict[str, SchemaVersion] = {}
        for v in versions:
            self._newest[v.full_name] = v  # sorted: the last one is the newest
        self._name_of_type: dict[type[Any], str] = {}
        self._field_names: dict[type[Any], tuple[str, ...]] = {}
        for name, dc in _DATACLASS_RECORDS.items():
            self._name_of_type[dc] = name
            self._field_names[dc] = tuple(f.name for f in fields(dc))
        for name, model in _SHOP_RECORDS.items():
            self._name_of_type[model] = name
        self._headers = {
            name: MAGIC + _FINGERPRINT.pack(v.fingerprint) for name, v in self._newest.items()
        }

    @property
    def versions(self) -> list[SchemaVersion]:
        return sorted(self._by_fingerprint.values(), key=lambda s: (s.full_name, s.version))

    def newest(self, full_name: str) -> SchemaVersion:
        return self._newest[full_name]

    def record_name(self, value_type: type[Any]) -> str:
        return self._name_of_type[value_type]

    # -- encoding ---------------------------------------------------------------------

    def to_record(self, value: Any) -> dict[str, Any]:
        """The Avro record (a dict) for a dataclass event or a shop model."""
        kind = type(value)
        if isinstance(value, shop.ShopEvent):
            record = value.model_dump()
            record["occurred_at"] = value.occurred_at_ms
            return record
        names = self._field_names.get(kind)
        if names is None:
            raise TypeError(f"the codec has no schema for {kind.__name__}")
        return {n: getattr(value, n) for n in names}

    def encode(self, value: Any) -> bytes:
        name = self._name_of_type.get(type(value))
        if name is None:
            raise TypeError(f"the codec has no schema for {type(value).__name__}")
        buffer = io.BytesIO()
        buffer.write(self._headers[name])
        fastavro.schemaless_writer(buffer, self._newest[name].parsed, self.to_record(value))
        return buffer.getvalue()

    # -- decoding ---------------------------------------------------------------------

    def writer_of(self, data: bytes) -> SchemaVersion:
        """The schema version a message names, or a DecodeError saying why not."""
        if len(data) < HEADER_LEN:
            raise DecodeError(f"truncated message: {len(data)} bytes, shorter than the header")
        if data[:2] != MAGIC:
            raise DecodeError(
                f"not Avro single-object encoding: starts with {data[:2].hex()}, expected c301"
            )
        (fp,) = _FINGERPRINT.unpack_from(data, 2)
        version = self._by_fingerprint.get(fp)
        if version is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp:016x}; "
                "the producer uses a schema this refstream does not ship"
            )
        return version

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record full name, record dict) read through the newest version of the record."""
        writer = self.writer_of(data)
        reader = self._newest[writer.full_name]
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            if reader is writer:
                record = fastavro.schemaless_reader(body, writer.parsed, None)
            else:
                record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
        except (EOFError, ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
            raise DecodeError(f"corrupt {writer.full_name} body: {exc!r}") from exc
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after a {writer.full_name} record"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.full_name} did not decode to a record")
        return writer.full_name, record

    def decode(self, data: bytes) -> Any:
        """A dataclass event or a validated shop model; DecodeError for anything invalid."""
        name, record = self.decode_record(data)
        return self.from_record(name, record)

    def decode_log_event(self, value: bytes | None) -> LogEvent | None:
        """The event in a canonical-log record, or None for a record the core passes over.

        Ingest appends only valid log events, so None means a foreign writer; the live
        pipeline and replay both call this, so they pass over exactly the same records.
        """
        if not value:
            return None
        try:
            decoded = self.decode(value)
        except DecodeError:
            return None
        return decoded if isinstance(decoded, _LOG_EVENT_CLASSES) else None

    def from_record(self, name: str, record: dict[str, Any]) -> Any:
        model = _SHOP_RECORDS.get(name)
        if model is not None:
            record["occurred_at"] = _ms_to_datetime(record["occurred_at"])
            try:
                return model.model_validate(record)
            except ValidationError as exc:
                raise DecodeError(f"{name} failed validation: {_validation_summary(exc)}") from exc
        dc = _DATACLASS_RECORDS[name]
        if "evidence_event_ids" in record:
            record["evidence_event_ids"] = tuple(record["evidence_event_ids"])
        return dc(**record)


def _validation_summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<record>'}: {err['msg']}"
        for err in exc.errors()
    )

