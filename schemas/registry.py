"""The wire framings refstream reads, and how a message names its writer schema.

Pure: it parses headers and names subjects; fetching a schema from a registry server is the
job of an injected `SchemaResolver` (the HTTP one lives in `streams/schema_registry.py`).
"""

from __future__ import annotations

import enum
import struct
import uuid
from dataclasses import dataclass
from typing import Protocol

from refstream.schemas.errors import DecodeError

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LEN = 10
# Confluent Schema Registry wire format: one magic byte, then the schema's id.
CONFLUENT_ID_MAGIC = 0x00
CONFLUENT_ID_HEADER_LEN = 5  # magic + 4-byte big-endian schema id
CONFLUENT_GUID_MAGIC = 0x01
CONFLUENT_GUID_HEADER_LEN = 17  # magic + 16-byte schema GUID

_SPEC_FINGERPRINT = struct.Struct("<Q")  # the Avro specification: little-endian
_LEGACY_FINGERPRINT = struct.Struct(">Q")  # what refstream wrote before 2026-12: reversed
_SCHEMA_ID = struct.Struct(">I")


class Framing(enum.Enum):
    """How a record's first bytes name its writer schema."""

    SINGLE_OBJECT = "Avro single-object encoding"
    CONFLUENT_ID = "Confluent Schema Registry framing (schema id)"
    CONFLUENT_GUID = "Confluent Schema Registry framing (schema GUID)"


@dataclass(frozen=True, slots=True)
class Frame:
    """What a header says: the framing, the schema reference in it, where the body starts."""

    framing: Framing
    body_offset: int
    # SINGLE_OBJECT: the 8 fingerprint bytes as they arrived; read as the spec says by
    # `spec_fingerprint`, as refstream's old writer did by `legacy_fingerprint`.
    fingerprint_bytes: bytes = b""
    schema_id: int = -1
    schema_guid: str = ""

    @property
    def spec_fingerprint(self) -> int:
        (fp,) = _SPEC_FINGERPRINT.unpack(self.fingerprint_bytes)
        return int(fp)

    @property
    def legacy_fingerprint(self) -> int:
        (fp,) = _LEGACY_FINGERPRINT.unpack(self.fingerprint_bytes)
        return int(fp)

    def describe(self) -> str:
        """The framing and the schema reference, as an error message names them."""
        if self.framing is Framing.SINGLE_OBJECT:
            return (f"{self.framing.value} (c301), CRC-64-AVRO fingerprint "
                    f"{self.spec_fingerprint:016x} (header bytes {self.fingerprint_bytes.hex()})")
        if self.framing is Framing.CONFLUENT_ID:
            return f"{self.framing.value} (magic 00), schema id {self.schema_id}"
        return f"{self.framing.value} (magic 01), schema GUID {self.schema_guid}"


def first_bytes(data: bytes, count: int = 16) -> str:
    """The first bytes of a record in hex, for an error message."""
    shown = data[:count].hex(" ")
    return f"{shown} …" if len(data) > count else shown or "(empty)"


def parse_frame(data: bytes) -> Frame:
    """The frame a record starts with, or a DecodeError naming what arrived and what fits."""
    if data[:2] == SINGLE_OBJECT_MAGIC:
        if len(data) < SINGLE_OBJECT_HEADER_LEN:
            raise DecodeError(
                f"truncated message: {len(data)} bytes, shorter than the "
                f"{SINGLE_OBJECT_HEADER_LEN}-byte Avro single-object header "
                f"(first bytes {first_bytes(data)})")
        return Frame(Framing.SINGLE_OBJECT, SINGLE_OBJECT_HEADER_LEN,
                     fingerprint_bytes=bytes(data[2:SINGLE_OBJECT_HEADER_LEN]))
    if data[:1] == bytes([CONFLUENT_ID_MAGIC]):
        if len(data) < CONFLUENT_ID_HEADER_LEN:
            raise DecodeError(
                f"truncated message: {len(data)} bytes, shorter than the "
                f"{CONFLUENT_ID_HEADER_LEN}-byte Confluent Schema Registry header "
                f"(first bytes {first_bytes(data)})")
        (schema_id,) = _SCHEMA_ID.unpack_from(data, 1)
        return Frame(Framing.CONFLUENT_ID, CONFLUENT_ID_HEADER_LEN, schema_id=int(schema_id))
    if data[:1] == bytes([CONFLUENT_GUID_MAGIC]):
        if len(data) < CONFLUENT_GUID_HEADER_LEN:
            raise DecodeError(
                f"truncated message: {len(data)} bytes, shorter than the "
                f"{CONFLUENT_GUID_HEADER_LEN}-byte Confluent Schema Registry GUID header "
                f"(first bytes {first_bytes(data)})")
        guid = str(uuid.UUID(bytes=bytes(data[1:CONFLUENT_GUID_HEADER_LEN])))
        return Frame(Framing.CONFLUENT_GUID, CONFLUENT_GUID_HEADER_LEN, schema_guid=guid)
    arrived = (f"starts with {data[:2].hex()} (first bytes {first_bytes(data)})" if data
               else "the record is empty")
    raise DecodeError(
        f"not Avro single-object encoding: {arrived}; expected c3 01 + 8-byte fingerprint "
        "(Avro single-object encoding), or 00 + 4-byte schema id / 01 + 16-byte GUID "
        "(Confluent Schema Registry framing)")


def confluent_id_header(schema_id: int) -> bytes:
    """The 5-byte header of a record written under a registry's schema id."""
    if not 0 <= schema_id <= 0xFFFF_FFFF:
        raise ValueError(f"schema id {schema_id} does not fit the 4-byte registry header")
    return bytes([CONFLUENT_ID_MAGIC]) + _SCHEMA_ID.pack(schema_id)


def single_object_header(fingerprint: int) -> bytes:
    """The spec's 10-byte header: C3 01 + the CRC-64-AVRO fingerprint, little-endian."""
    return SINGLE_OBJECT_MAGIC + _SPEC_FINGERPRINT.pack(fingerprint)


def legacy_single_object_header(fingerprint: int) -> bytes:
    """The byte-reversed header refstream wrote before the fix (read, never written)."""
    return SINGLE_OBJECT_MAGIC + _LEGACY_FINGERPRINT.pack(fingerprint)


def subject_name(topic: str, record_full_name: str) -> str:
    """TopicRecordNameStrategy: one subject per (topic, record), as several records share a
    topic (`refstream.reward-due` carries RewardDue, RewardReversal and RewardStatus)."""
    return f"{topic}-{record_full_name}"


class SchemaResolver(Protocol):
    """Fetches writer schemas (Avro JSON text) from a schema registry; may do I/O."""

    def schema_by_id(self, schema_id: int) -> str: ...

    def schema_by_guid(self, guid: str) -> str: ...


class SchemaNotFound(DecodeError):
    """The registry answered that it has no schema under the id or GUID a record names."""
