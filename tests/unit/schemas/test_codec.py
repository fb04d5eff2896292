"""The wire codec: round trips for every record, and a named error for every kind of bad bytes."""

from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime

import fastavro
import pytest

from refstream.schemas import events as ev
from refstream.schemas.codec import MAGIC, Codec, load_schema_versions
from refstream.schemas.errors import DecodeError
from refstream.schemas.shop import SHOP_MODELS, ShopClick, ShopOrder

CODEC = Codec()
WHEN = datetime(2026, 10, 3, 12, 30, tzinfo=UTC)
MS = int(WHEN.timestamp() * 1000)


def order(**changes: object) -> ShopOrder:
    fields: dict[str, object] = dict(
        event_id="e-1", shop_id="shop-1", occurred_at=WHEN, order_id="o-1",
        customer_id="c-1", amount_minor=4599, currency="EUR", ip="10.0.0.1",
        payment_fingerprint="pm_1", shipping_address="1 Main St")
    fields.update(changes)
    return ShopOrder.model_validate(fields)


LOG_AND_DERIVED = [
    ev.Share("e1", "s", MS, "c-1", "R-c-1", "email", "friends"),
    ev.Click("e2", "s", MS, "v-1", "https://shop/x", "ip:1", "ua", "R-c-1", None, "email",
             "referral", "friends", "d-1"),
    ev.Signup("e3", "s", MS, "c-2", "email:1", "ip:1", "v-1", None, "d-1"),
    ev.OrderPlaced("e4", "s", MS, "o-1", "c-2", 1500, "EUR", "ip:1"),
    ev.OrderReturned("e5", "s", MS, "r-1", "o-1", "c-2", 1500, "EUR"),
    ev.ReviewDecided("e6", "s", MS, "ref-1", "approve", "alice", None),
    ev.Tick("e7", "s", MS),
    ev.Attribution("ref-1", "s", MS, "v1", "attributed", "c-2", "c-1", "R-c-1", "friends",
                   "link", None, "e2", "e3"),
    ev.FraudFlag("f-1", "s", MS, "v1", "ip_velocity", "ip_hash", "ip:1", 5, 6, 3_600_000,
                 "hold", ("e1", "e2")),
    ev.RewardStatus("rw-1", "s", MS, "v1", "pending", "ref-1", "c-1", "referrer", "credit",
                    1000, "EUR", MS + 1, "first_order", "o-1", 0),
    ev.RewardDue("rw-1", "s", MS, "v1", "ref-1", "c-1", "referrer", "credit", 1000, "EUR",
                 MS, "first_order", "o-1"),
    ev.RewardReversal("rv-1", "rw-1", "s", MS, "v1", "c-1", 1000, "EUR", "returned", "r-1"),
    ev.DeadLetter("shop.order", 2, 41, "bad", b"\xc3\x01junk", "s", MS),
]


@pytest.mark.parametrize("value", LOG_AND_DERIVED, ids=lambda v: type(v).__name__)
def test_log_and_derived_events_round_trip(value: object) -> None:
    data = CODEC.encode(value)
    assert data[:2] == MAGIC
    assert CODEC.decode(data) == value


def test_shop_event_round_trips_with_aware_utc_time() -> None:
    decoded = CODEC.decode(CODEC.encode(order()))
    assert decoded == order()
    assert decoded.occurred_at.tzinfo is not None


def test_every_shop_model_has_a_schema() -> None:
    for model in SHOP_MODELS.values():
        assert CODEC.record_name(model).startswith("refstream.shop.")


def test_truncated_bytes_name_the_problem() -> None:
    data = CODEC.encode(order())
    with pytest.raises(DecodeError, match="truncated message"):
        CODEC.decode(data[:5])
    with pytest.raises(DecodeError, match=r"corrupt refstream\.shop\.Order body"):
        CODEC.decode(data[:-7])


def test_wrong_magic_and_unknown_fingerprint() -> None:
    data = CODEC.encode(order())
    with pytest.raises(DecodeError, match="not Avro single-object encoding"):
        CODEC.decode(b"{}" + data[2:])
    forged = MAGIC + struct.pack("<Q", 0x1234) + data[10:]
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint 0000000000001234"):
        CODEC.decode(forged)


def test_trailing_garbage_is_rejected() -> None:
    with pytest.raises(DecodeError, match="trailing bytes"):
        CODEC.decode(CODEC.encode(order()) + b"\x00\x00")


def test_valid_avro_failing_validation_names_the_field() -> None:
    record = CODEC.to_record(order())
    record["amount_minor"] = -5
    record["currency"] = "euro"
    buffer = io.BytesIO()
    buffer.write(MAGIC + struct.pack("<Q", CODEC.newest("refstream.shop.Order").fingerprint))
    fastavro.schemaless_writer(buffer, CODEC.newest("refstream.shop.Order").parsed, record)
    with pytest.raises(DecodeError) as caught:
        CODEC.decode(buffer.getvalue())
    assert "amount_minor: Input should be greater than or equal to 0" in str(caught.value)
    assert "currency: String should match pattern" in str(caught.value)


def test_old_writer_version_is_read_through_the_newest_reader() -> None:
    old = next(v for v in load_schema_versions()
               if v.full_name == "refstream.shop.Click" and v.version == 1)
    record = {k: v for k, v in CODEC.to_record(ShopClick(
        event_id="e", shop_id="s", occurred_at=WHEN, visitor_id="v", landing_url="u",
        ip="1.1.1.1", user_agent="ua")).items() if k != "device_id"}
    buffer = io.BytesIO()
    buffer.write(MAGIC + struct.pack("<Q", old.fingerprint))
    fastavro.schemaless_writer(buffer, old.parsed, record)
    decoded = CODEC.decode(buffer.getvalue())
    assert isinstance(decoded, ShopClick)
    assert decoded.device_id is None


def test_avro_schemas_mirror_the_python_models() -> None:
    """A field added to a model but not to its .avsc (or the reverse) fails here."""
    import dataclasses

    for name in {v.full_name for v in load_schema_versions()}:
        declared = CODEC.newest(name).declared
        avro_fields = {f["name"]: "null" in f["type"] if isinstance(f["type"], list) else False
                       for f in declared["fields"]}
        python_type = next(t for t, n in CODEC._name_of_type.items() if n == name)
        if dataclasses.is_dataclass(python_type):
            py_fields = {f.name: "None" in str(f.type) for f in dataclasses.fields(python_type)}
        else:
            py_fields = {n: not f.is_required() and f.default is None
                         for n, f in python_type.model_fields.items()}
            py_fields["event_type"] = False
        assert py_fields == avro_fields, name


def test_schema_files_are_valid_json_with_docs_for_shop_fields() -> None:
    for version in load_schema_versions():
        assert json.dumps(version.declared)
        if version.full_name.startswith("refstream.shop."):
            assert version.declared.get("doc")
