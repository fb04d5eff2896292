"""Schema Registry framing beside single-object encoding: headers as Confluent's own client
library writes them (confluent_kafka's SchemaId), writer schemas through an injected
resolver, and errors that name what arrived and what was expected."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry.common.serde import SchemaId

from refstream.schemas.codec import HEADER_LEN, Codec
from refstream.schemas.errors import DecodeError
from refstream.schemas.registry import (
    Framing,
    SchemaNotFound,
    confluent_id_header,
    parse_frame,
    subject_name,
)
from refstream.schemas.shop import ShopOrder
from tests.conformance.samples import shop_events

GUID = "6f1c4a52-9c1e-4e2b-8d0e-2b3c4d5e6f70"
ORDER = next(e for e in shop_events() if isinstance(e, ShopOrder))


class SchemasById:
    """The codec's resolver port fed from a dict (the registry server is not under test
    here); counts calls so the cache is visible."""

    def __init__(self, by_id: dict[int, str], by_guid: dict[str, str] | None = None) -> None:
        self.by_id, self.by_guid, self.calls = by_id, by_guid or {}, 0

    def schema_by_id(self, schema_id: int) -> str:
        self.calls += 1
        if schema_id not in self.by_id:
            raise SchemaNotFound(f"schema id {schema_id} is not in the registry")
        return self.by_id[schema_id]

    def schema_by_guid(self, guid: str) -> str:
        self.calls += 1
        return self.by_guid[guid]


def body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def order_schema() -> dict[str, Any]:
    return json.loads(json.dumps(Codec().newest("refstream.shop.Order").declared))


def test_confluent_id_framing_decodes_through_the_registry_once_per_id() -> None:
    schema = order_schema()
    resolver = SchemasById({7: json.dumps(schema)})
    codec = Codec(resolver=resolver)
    data = SchemaId("AVRO", 7).id_to_bytes() + body(schema, codec.to_record(ORDER))
    assert parse_frame(data).framing is Framing.CONFLUENT_ID
    assert codec.decode(data) == ORDER
    assert codec.decode(data) == ORDER
    assert resolver.calls == 1
    # The same record as single-object bytes and as registry bytes: one canonical form.
    assert codec.canonical_forms(data)[0] == codec.encode(ORDER)


def test_confluent_guid_framing_decodes() -> None:
    schema = order_schema()
    codec = Codec(resolver=SchemasById({}, {GUID: json.dumps(schema)}))
    data = SchemaId("AVRO", guid=GUID).guid_to_bytes() + body(schema, codec.to_record(ORDER))
    frame = parse_frame(data)
    assert (frame.framing, frame.schema_guid) == (Framing.CONFLUENT_GUID, GUID)
    assert codec.decode(data) == ORDER


def test_a_registry_version_refstream_does_not_ship_resolves_to_the_newest() -> None:
    """A shop registered Order with one more optional field: Avro resolution drops it."""
    schema = order_schema()
    schema["fields"].append({"name": "gift_wrap", "type": ["null", "string"], "default": None})
    codec = Codec(resolver=SchemasById({8: json.dumps(schema)}))
    record = {**codec.to_record(ORDER), "gift_wrap": "yes"}
    assert codec.decode(confluent_id_header(8) + body(schema, record)) == ORDER


def test_an_incompatible_registry_version_names_both_schemas() -> None:
    schema = order_schema()
    for field in schema["fields"]:
        if field["name"] == "amount_minor":
            field["type"] = "string"
    codec = Codec(resolver=SchemasById({9: json.dumps(schema)}))
    record = {**codec.to_record(ORDER), "amount_minor": "12.50"}
    with pytest.raises(DecodeError, match=r"schema id 9: writer schema registry .* cannot be "
                                          r"read as shop_order\.v1\.avsc"):
        codec.decode(confluent_id_header(9) + body(schema, record))


def test_a_foreign_record_names_the_nearest_known_schema() -> None:
    schema = order_schema()
    schema["namespace"] = "com.acme.shop"
    resolver = SchemasById({10: json.dumps(schema)})
    codec = Codec(resolver=resolver)
    for _ in range(3):
        with pytest.raises(DecodeError) as caught:
            codec.decode(confluent_id_header(10) + body(schema, codec.to_record(ORDER)))
    assert resolver.calls == 1  # a rejected schema is not fetched again per record
    message = str(caught.value)
    assert "schema id 10 is record com.acme.shop.Order, which refstream does not know" in message
    assert "nearest known schema (reads the body exactly): refstream.shop.Order v1" in message


def test_registry_framing_without_a_registry_says_what_to_configure() -> None:
    data = confluent_id_header(42) + b"\x02"
    with pytest.raises(DecodeError, match="schema id 42, but no schema registry is configured: "
                                          "set REFSTREAM_SCHEMA_REGISTRY_URL"):
        Codec().decode(data)


def test_an_id_the_registry_lacks_is_a_decode_error() -> None:
    with pytest.raises(SchemaNotFound, match="schema id 5 is not in the registry"):
        Codec(resolver=SchemasById({})).decode(confluent_id_header(5) + b"\x02")


def test_unknown_fingerprint_names_the_nearest_known_schema_and_the_bytes() -> None:
    codec = Codec()
    data = codec.encode(ORDER)
    forged = data[:2] + bytes.fromhex("0102030405060708") + data[HEADER_LEN:]
    with pytest.raises(DecodeError) as caught:
        codec.decode(forged)
    message = str(caught.value)
    assert "unknown writer schema fingerprint 0807060504030201" in message
    assert "header bytes 0102030405060708" in message
    assert "nearest known schema (reads the body exactly): refstream.shop.Order v1" in message
    assert "first bytes c3 01 01 02 03 04 05 06 07 08" in message


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "not Avro single-object encoding: the record is empty; expected c3 01"),
    (b"hello", "not Avro single-object encoding: starts with 6865 (first bytes 68 65 6c 6c 6f)"),
    (b"\x00\x00\x01", "shorter than the 5-byte Confluent Schema Registry header"),
    (b"\x01" + b"\x00" * 10, "shorter than the 17-byte Confluent Schema Registry GUID header"),
    (b"\xc3\x01\x00", "shorter than the 10-byte Avro single-object header"),
])
def test_unreadable_headers_name_the_bytes_and_the_framings(data: bytes, expected: str) -> None:
    with pytest.raises(DecodeError) as caught:
        Codec().decode(data)
    assert expected in str(caught.value)


def test_outputs_in_registry_framing_carry_their_registered_id() -> None:
    from refstream.schemas.events import RewardDue

    codec = Codec(registry_ids={"refstream.derived.RewardDue": 21})
    due = RewardDue("rw-1", "s", 1, "v1", "ref-1", "c-1", "referrer", "credit", 1000, "EUR", 2,
                    "first_order", "o-1")
    data = codec.encode(due)
    assert data[:5] == SchemaId("AVRO", 21).id_to_bytes()
    assert codec.decode(data) == due  # its own ids need no registry round trip
    assert codec.canonical_forms(data)[0] == Codec().encode(due)


def test_subjects_follow_topic_record_name_strategy() -> None:
    assert subject_name("refstream.reward-due", "refstream.derived.RewardReversal") == \
        "refstream.reward-due-refstream.derived.RewardReversal"
