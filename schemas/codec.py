"""The wire codec: Avro single-object encoding (C3 01 + CRC-64-AVRO fingerprint + body).

Every message names its writer schema by fingerprint, so any version ever shipped in
`avro/` decodes without a registry server, read through the newest version of its record.
Records in Confluent Schema Registry framing decode too when a `SchemaResolver` is given
(`schemas/registry.py` parses every framing).
"""

from __future__ import annotations

import importlib
import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from types import ModuleType
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import (
    SchemaParseException,
    fingerprint,
    parse_schema,
    to_parsing_canonical_form,
)
from pydantic import ValidationError

from refstream.schemas import events as ev
from refstream.schemas import shop
from refstream.schemas.avro_compiled import (
    Generated,
    NotCompiled,
    decoder_source,
    encoder_source,
    module_source,
)
from refstream.schemas.epoch import from_epoch_ms
from refstream.schemas.errors import DecodeError
from refstream.schemas.events import LOG_EVENT_TYPES, LogEvent
from refstream.schemas.registry import (
    SINGLE_OBJECT_HEADER_LEN,
    SINGLE_OBJECT_MAGIC,
    Frame,
    Framing,
    SchemaResolver,
    confluent_id_header,
    first_bytes,
    legacy_single_object_header,
    parse_frame,
    single_object_header,
)

MAGIC = SINGLE_OBJECT_MAGIC
HEADER_LEN = SINGLE_OBJECT_HEADER_LEN

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
# What fastavro raises on body bytes that do not fit the writer schema.
_BODY_ERRORS = (EOFError, ValueError, IndexError, UnicodeDecodeError, struct.error,
                OverflowError, MemoryError)
# What the compiled fast path raises for a value or bytes it does not take as they are; the
# reference path (fastavro) then writes or reads it, or raises the error it always raised.
_NOT_COMPILED = (NotCompiled, AttributeError, TypeError, ValueError, KeyError, IndexError,
                 OverflowError)


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
    # CRC-64-AVRO of the parsing canonical form as the number Java's
    # SchemaNormalization.parsingFingerprint64 returns (unsigned); the header carries it
    # little-endian.
    fingerprint: int


def crc64_avro(declared: dict[str, Any]) -> tuple[Any, int]:
    """(fastavro's parsed schema, CRC-64-AVRO fingerprint) of a declared Avro schema."""
    parsed = parse_schema(_without_logical_types(declared))
    # fastavro gives the fingerprint's bytes in the order the specification writes them
    # (little-endian), as hex; reading that hex as a big-endian number reversed every header.
    digest = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    return parsed, int.from_bytes(digest, "little")


def record_full_name(declared: dict[str, Any]) -> str:
    name = str(declared["name"])
    namespace = declared.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_schema_versions() -> list[SchemaVersion]:
    """Every schema version shipped with refstream, oldest first per record."""
    found: list[SchemaVersion] = []
    folder = resources.files("refstream.schemas") / "avro"
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".avsc"):
            continue
        declared = json.loads(entry.read_text())
        version = int(entry.name.rsplit(".v", 1)[1].removesuffix(".avsc"))
        parsed, fp = crc64_avro(declared)
        found.append(SchemaVersion(record_full_name(declared), version, entry.name, declared,
                                   parsed, fp))
    found.sort(key=lambda s: (s.full_name, s.version))
    return found


# The fast path compiled with mypyc: generated from the shipped schemas by
# `schema_compiled_source` and built by tools/native.py into a directory that
# `refstream.schemas` puts on its path only while that build is current.
SCHEMA_COMPILED_MODULE = "refstream.schemas.avro_native"


def _function_name(role: str, full_name: str) -> str:
    return f"{role}_{full_name.replace('.', '_')}"


def _schema_compiled_module() -> ModuleType | None:
    try:
        return importlib.import_module(SCHEMA_COMPILED_MODULE)
    except ImportError:  # not built, stale, or REFSTREAM_PURE_PYTHON: the exec'd functions
        return None


def schema_compiled_source() -> str:
    """The module tools/native.py compiles with mypyc: every fast-path function of a
    default codec (single-object headers) for the newest version of each shipped record."""
    codec = Codec(schema_compiled=False)
    return module_source(codec._sources,
                         "The codec's fast path, generated from schemas/avro/*.avsc by "
                         "refstream.schemas.codec.schema_compiled_source; do not edit.")


class Codec:
    """Encodes refstream values to single-object Avro and back; build one and share it.

    `resolver` lets it read records in Confluent Schema Registry framing (the registry's
    schema text is fetched once per id and cached here). `registry_ids` maps record full
    names to the ids a registry gave refstream's own schemas: those records are written in
    registry framing (magic 00 + id) instead of single-object encoding. `schema_compiled`
    False runs the fast path `exec`'d even when its mypyc build is current (the same bytes).
    """

    def __init__(self, resolver: SchemaResolver | None = None,
                 registry_ids: Mapping[str, int] | None = None,
                 schema_compiled: bool = True) -> None:
        versions = load_schema_versions()
        self._by_fingerprint: dict[int, SchemaVersion] = {v.fingerprint: v for v in versions}
        self._check_legacy_headers_are_unambiguous(versions)
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
        self._resolver = resolver
        self._by_schema_id: dict[int, SchemaVersion] = {}
        self._by_schema_guid: dict[str, SchemaVersion] = {}
        self._registry_texts: dict[int | str, str] = {}
        self._headers = {
            name: single_object_header(v.fingerprint) for name, v in self._newest.items()
        }
        for name, schema_id in (registry_ids or {}).items():
            if name not in self._newest:
                raise ValueError(f"registry_ids names {name!r}, a record refstream lacks")
            self._headers[name] = confluent_id_header(schema_id)
            self._by_schema_id[schema_id] = self._newest[name]
        self._compile(_schema_compiled_module() if schema_compiled else None)

    def _compile(self, schema_compiled: ModuleType | None) -> None:
        """The fast path (schemas/avro_compiled.py): an encoder per value type, and per
        newest schema version a decoder to the record dict and one to the value itself.
        Each is generated here; a function of `schema_compiled` (the same functions built
        with mypyc) stands in for it when it was built from exactly the same source."""
        self._sources: list[Generated] = []
        self._compiled_names: set[str] = set()

        def bind(source: Generated) -> Callable[..., Any]:
            self._sources.append(source)
            if schema_compiled is not None:
                digests: dict[str, str] = getattr(schema_compiled, "DIGESTS", {})
                if digests.get(source.name) == source.digest:
                    self._compiled_names.add(source.name)
                    function: Callable[..., Any] = getattr(schema_compiled, source.name)
                    return function
            return source.compile()

        self._encoders: dict[type[Any], Callable[[Any], bytes]] = {}
        for value_type, name in self._name_of_type.items():
            getters = ({"occurred_at": "occurred_at_ms"}
                       if issubclass(value_type, shop.ShopEvent) else None)
            encoder = encoder_source(self._newest[name].declared, self._headers[name],
                                     getters, _function_name("encode", name))
            if encoder is not None:
                self._encoders[value_type] = bind(encoder)
        self._record_decoders: dict[int, Callable[[bytes, int], dict[str, Any]]] = {}
        # Per fingerprint of a newest version: (record full name, its record decoder).
        self._newest_decoders: dict[int, tuple[str, Callable[[bytes, int], dict[str, Any]]]] = {}
        # Per fingerprint: (the newest version, a decoder to the value or None).
        self._value_decoders: dict[int, tuple[SchemaVersion, Callable[[bytes, int], Any]]] = {}
        for name, version in self._newest.items():
            record_source = decoder_source(version.declared,
                                           name=_function_name("decode_record", name))
            if record_source is None:
                continue
            record_decoder = bind(record_source)
            self._record_decoders[version.fingerprint] = record_decoder
            self._newest_decoders[version.fingerprint] = (name, record_decoder)
            dc = _DATACLASS_RECORDS.get(name)
            value_source = (decoder_source(version.declared, dc,
                                           frozenset({"evidence_event_ids"}),
                                           _function_name("decode_value", name))
                            if dc is not None else None)
            if value_source is not None:
                self._value_decoders[version.fingerprint] = (version, bind(value_source))

    @property
    def schema_compiled(self) -> frozenset[str]:
        """The fast-path functions this codec runs compiled with mypyc (the others run
        `exec`'d): every one when the build is current, none without it."""
        return frozenset(self._compiled_names)

    def _check_legacy_headers_are_unambiguous(self, versions: list[SchemaVersion]) -> None:
        # A legacy header is recognised as the 8 bytes read big-endian; that is only safe
        # while no shipped fingerprint is the byte-reversal of another one.
        for v in versions:
            reversed_fp = int.from_bytes(v.fingerprint.to_bytes(8, "little"), "big")
            other = self._by_fingerprint.get(reversed_fp)
            if other is not None and other is not v:
                raise ValueError(
                    f"{v.file_name} and {other.file_name} have byte-reversed fingerprints; "
                    "legacy headers could not be told apart from spec headers")

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
        encoder = self._encoders.get(type(value))
        if encoder is not None:
            try:
                return encoder(value)
            except _NOT_COMPILED:
                pass  # fastavro below writes it, or raises the error it always raised
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
        return self._writer(parse_frame(data), data)

    def _writer(self, frame: Frame, data: bytes) -> SchemaVersion:
        if frame.framing is Framing.SINGLE_OBJECT:
            version = self._by_fingerprint.get(frame.spec_fingerprint)
            if version is None:  # refstream's own byte-reversed header, from before the fix
                version = self._by_fingerprint.get(frame.legacy_fingerprint)
            if version is None:
                raise DecodeError(
                    f"unknown writer schema fingerprint {frame.spec_fingerprint:016x}: "
                    f"{frame.describe()} is not one of the "
                    f"{len(self._by_fingerprint)} schemas refstream ships; "
                    f"{self._nearest(data[frame.body_offset:])}; the producer must encode "
                    "with a schema from refstream's schemas/avro/ (first bytes "
                    f"{first_bytes(data)})")
            return version
        if frame.framing is Framing.CONFLUENT_ID:
            cached = self._by_schema_id.get(frame.schema_id)
            if cached is None:
                cached = self._registry_writer(frame, data)
                self._by_schema_id[frame.schema_id] = cached
            return cached
        cached = self._by_schema_guid.get(frame.schema_guid)
        if cached is None:
            cached = self._registry_writer(frame, data)
            self._by_schema_guid[frame.schema_guid] = cached
        return cached

    def _registry_writer(self, frame: Frame, data: bytes) -> SchemaVersion:
        if self._resolver is None:
            raise DecodeError(
                f"{frame.describe()}, but no schema registry is configured: set "
                "REFSTREAM_SCHEMA_REGISTRY_URL, or publish Avro single-object encoding "
                f"(first bytes {first_bytes(data)})")
        # Ids and GUIDs never change their schema: one registry call each, even for a
        # schema refstream then rejects (a stream of such records must not hammer it).
        key = frame.schema_id if frame.framing is Framing.CONFLUENT_ID else frame.schema_guid
        text = self._registry_texts.get(key)
        if text is None:
            if frame.framing is Framing.CONFLUENT_ID:
                text = self._resolver.schema_by_id(frame.schema_id)
            else:
                text = self._resolver.schema_by_guid(frame.schema_guid)
            self._registry_texts[key] = text
        try:
            declared = json.loads(text)
            if not isinstance(declared, dict) or declared.get("type") != "record":
                raise ValueError("not an Avro record schema")
            parsed, fp = crc64_avro(declared)
        except (ValueError, KeyError, TypeError, SchemaParseException) as exc:
            raise DecodeError(
                f"{frame.describe()}: the registry's schema is not an Avro record schema "
                f"refstream can read ({exc})") from exc
        shipped = self._by_fingerprint.get(fp)
        if shipped is not None:
            return shipped
        full_name = record_full_name(declared)
        if full_name not in self._newest:
            raise DecodeError(
                f"{frame.describe()} is record {full_name}, which refstream does not know; "
                f"{self._nearest(data[frame.body_offset:])}; register and publish a schema "
                "from refstream's schemas/avro/ (same record name)")
        # A version refstream does not ship but names one of its records: Avro's schema
        # resolution reads it through the newest version (or says why it cannot).
        return SchemaVersion(full_name, 0, f"registry {frame.describe()}", declared, parsed, fp)

    def _nearest(self, body: bytes) -> str:
        """Which shipped schemas read these body bytes exactly: the nearest known schema."""
        fits = []
        for version in sorted(self._by_fingerprint.values(),
                              key=lambda v: (v.full_name, -v.version)):
            buffer = io.BytesIO(body)
            try:
                fastavro.schemaless_reader(buffer, version.parsed, None)
            except _BODY_ERRORS:
                continue  # probing: this schema does not fit
            if buffer.tell() == len(body):
                fits.append(f"{version.full_name} v{version.version} ({version.file_name}, "
                            f"fingerprint {version.fingerprint:016x})")
        if not fits:
            return "no schema refstream ships reads its body"
        return "nearest known schema (reads the body exactly): " + ", ".join(fits[:3])

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """(record full name, record dict) read through the newest version of the record."""
        if data[:2] == MAGIC and type(data) is bytes:
            # The common case: single-object encoding, written in the newest version.
            fast = self._newest_decoders.get(int.from_bytes(data[2:HEADER_LEN], "little"))
            if fast is not None:
                try:
                    return fast[0], fast[1](data, HEADER_LEN)
                except (*_NOT_COMPILED, UnicodeDecodeError):
                    pass  # the reference path reads it, or says what is wrong with it
        frame = parse_frame(data)
        writer = self._writer(frame, data)
        reader = self._newest[writer.full_name]
        if reader is writer and type(data) is bytes:
            compiled = self._record_decoders.get(writer.fingerprint)
            if compiled is not None:
                try:
                    return writer.full_name, compiled(data, frame.body_offset)
                except (*_NOT_COMPILED, UnicodeDecodeError):
                    pass  # fastavro below reads it, or says what is wrong with it
        body = io.BytesIO(data)
        body.seek(frame.body_offset)
        try:
            if reader is writer:
                record = fastavro.schemaless_reader(body, writer.parsed, None)
            else:
                record = fastavro.schemaless_reader(body, writer.parsed, reader.parsed)
        except SchemaResolutionError as exc:
            raise DecodeError(
                f"{frame.describe()}: writer schema {writer.file_name} cannot be read as "
                f"{reader.file_name}: {exc}") from exc
        except _BODY_ERRORS as exc:
            raise DecodeError(
                f"corrupt {writer.full_name} body ({frame.describe()}): {exc!r}") from exc
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} trailing bytes after a {writer.full_name} record"
            )
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.full_name} did not decode to a record")
        return writer.full_name, record

    def canonical_forms(self, data: bytes) -> tuple[bytes, ...]:
        """The record as spec single-object bytes, then as refstream's legacy header: the
        same message in any framing has the same first form (finance compares payloads)."""
        frame = parse_frame(data)
        writer = self._writer(frame, data)
        if self._by_fingerprint.get(writer.fingerprint) is not writer:
            return (bytes(data),)
        body = bytes(data[frame.body_offset:])
        return (single_object_header(writer.fingerprint) + body,
                legacy_single_object_header(writer.fingerprint) + body)

    def decode(self, data: bytes) -> Any:
        """A dataclass event or a validated shop model; DecodeError for anything invalid."""
        if data[:2] == MAGIC and type(data) is bytes:
            # The common case, a dataclass record in the newest version: straight to the value.
            compiled = self._value_decoders.get(int.from_bytes(data[2:HEADER_LEN], "little"))
            if compiled is not None:
                try:
                    return compiled[1](data, HEADER_LEN)
                except (*_NOT_COMPILED, UnicodeDecodeError):
                    pass  # the reference path reads it, or says what is wrong with it
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
            try:
                record["occurred_at"] = from_epoch_ms(record["occurred_at"])
            except (ValueError, OverflowError, OSError) as exc:
                # Before this, such a record crashed the ingest stage: a poison message.
                raise DecodeError(
                    f"{name} failed validation: occurred_at: {record['occurred_at']} ms since "
                    f"1970 is not a representable date ({exc}); send epoch milliseconds "
                    "in UTC") from exc
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

