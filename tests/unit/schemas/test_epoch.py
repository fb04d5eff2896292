"""Epoch milliseconds both ways, against the C library's and the calendar module's clocks, and
an event's time through ingest exactly as the shop's Avro writer sent it."""

from __future__ import annotations

import calendar
import io
import struct
import time
from datetime import UTC, datetime, timedelta

import fastavro
from hypothesis import example, given
from hypothesis import strategies as st

from refstream.schemas.codec import MAGIC, Codec
from refstream.schemas.epoch import epoch_ms, from_epoch_ms
from refstream.schemas.privacy import Pseudonymiser
from refstream.streams.ingest import Accepted, Ingestor, SourceRef

CODEC = Codec()
# 1970 .. 2199: the range where a shop's clock could plausibly be, and well past 2038.
MILLISECONDS = st.integers(min_value=0, max_value=7_258_118_400_000 - 1)
# Values `int(datetime.timestamp() * 1000)` turned into one millisecond less.
FLOAT_TRUNCATED = (541_169_507_341, 1_079_337_347_472, 2_165_497_250_430, 2_183_226_373_411)


def c_library(ms: int) -> datetime:
    """The moment by the C library's gmtime (seconds), plus the milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return datetime(*time.gmtime(seconds)[:6], millis * 1000, tzinfo=UTC)


@given(MILLISECONDS)
@example(FLOAT_TRUNCATED[0])
@example(FLOAT_TRUNCATED[3])
def test_milliseconds_to_a_moment_and_back_are_exact(ms: int) -> None:
    moment = from_epoch_ms(ms)
    assert moment == c_library(ms)
    assert moment.tzinfo is UTC
    assert calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000 == ms
    assert epoch_ms(moment) == ms


@given(MILLISECONDS, st.integers(min_value=0, max_value=999))
def test_a_moment_between_milliseconds_is_floored_and_zones_do_not_matter(
        ms: int, micros: int) -> None:
    moment = from_epoch_ms(ms) + timedelta(microseconds=micros)
    assert epoch_ms(moment) == ms
    assert epoch_ms(moment.astimezone(UTC).replace(tzinfo=None)) == ms  # naive: read as UTC
    assert epoch_ms(moment.astimezone(datetime.now().astimezone().tzinfo)) == ms


def shop_order_bytes(occurred_at_ms: int) -> bytes:
    """A shop order as an Avro writer other than refstream's (fastavro) encodes it."""
    schema = CODEC.newest("refstream.shop.Order")
    record = {"event_type": "order", "event_id": f"o-{occurred_at_ms}", "shop_id": "shop-1",
              "occurred_at": occurred_at_ms, "order_id": "order-1", "customer_id": "c-1",
              "amount_minor": 4599, "currency": "EUR", "ip": "198.51.100.7",
              "visitor_id": None, "discount_code": None, "device_id": None,
              "payment_fingerprint": None, "shipping_address": None}
    buffer = io.BytesIO()
    buffer.write(MAGIC + struct.pack("<Q", schema.fingerprint))
    fastavro.schemaless_writer(buffer, schema.parsed, record)
    return buffer.getvalue()


@given(MILLISECONDS)
@example(FLOAT_TRUNCATED[1])
@example(FLOAT_TRUNCATED[2])
def test_ingest_logs_the_time_the_shop_sent_to_the_millisecond(ms: int) -> None:
    ingestor = Ingestor(CODEC, Pseudonymiser(b"k" * 32))  # no event-time bounds: any year
    outcome = ingestor.accept(shop_order_bytes(ms), SourceRef("shop.order", 0, 0), "order")
    assert isinstance(outcome, Accepted), outcome
    assert outcome.event.occurred_at == ms
    # and a shop event encoded by refstream carries the same milliseconds on the wire
    decoded = CODEC.decode(shop_order_bytes(ms))
    assert CODEC.to_record(decoded)["occurred_at"] == ms
