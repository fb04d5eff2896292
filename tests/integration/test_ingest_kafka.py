"""Ingest on the real broker: good records reach the canonical log in order, each bad one
reaches the DLQ with its original bytes, its error and where it came from."""

from __future__ import annotations

import io
import struct
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import pytest
from kafka import KafkaProducer

from refstream.schemas.codec import MAGIC, Codec
from refstream.schemas.events import DeadLetter
from refstream.schemas.shop import ShopClick, ShopEvent, ShopOrder, ShopSignup
from refstream.streams.topics import ensure_topics
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic

pytestmark = pytest.mark.integration
CODEC = Codec()
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)


def click(shop: str, n: int) -> ShopClick:
    return ShopClick(event_id=f"{shop}-click-{n}", shop_id=shop,
                     occurred_at=T0 + timedelta(minutes=n), visitor_id=f"v{n}",
                     landing_url=f"https://{shop}.example/?ref=R{n}", ip=f"198.51.100.{n}",
                     user_agent="Mozilla/5.0", referral_code=f"R-{n}")


def signup(shop: str, n: int) -> ShopSignup:
    return ShopSignup(event_id=f"{shop}-signup-{n}", shop_id=shop,
                      occurred_at=T0 + timedelta(minutes=30 + n), customer_id=f"c{n}",
                      email=f"Person.{n}+promo@gmail.com", ip=f"198.51.100.{n}", visitor_id=f"v{n}")


def order(shop: str, n: int, **changes: Any) -> ShopOrder:
    fields: dict[str, Any] = dict(
        event_id=f"{shop}-order-{n}", shop_id=shop, occurred_at=T0 + timedelta(hours=1, minutes=n),
        order_id=f"o{n}", customer_id=f"c{n}", amount_minor=1000 + n, currency="EUR",
        ip="203.0.113.7", payment_fingerprint=f"pm_{n}", shipping_address=f"{n} Main St")
    fields.update(changes)
    return ShopOrder.model_validate(fields)


def raw_order(**record_changes: Any) -> bytes:
    """Valid Avro of the order schema whose content fails validation."""
    record = CODEC.to_record(order("shop-1", 99))
    record.update(record_changes)
    newest = CODEC.newest("refstream.shop.Order")
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<Q", newest.fingerprint))
    fastavro.schemaless_writer(out, newest.parsed, record)
    return out.getvalue()


def test_ingest_appends_good_records_and_dead_letters_bad_ones(kafka_bootstrap: str,
                                                               tmp_path: Path) -> None:
    # A fetch takes at most 1 MiB from a partition (the default, said here so the test keeps
    # holding if it changes), and one bad record below is 10 MB: the broker still hands a
    # record larger than the fetch size out whole when its partition is the first with data
    # in a fetch, and aiokafka shuffles the partitions of every fetch, so it reaches the DLQ.
    settings = isolated_settings(kafka_bootstrap, tmp_path, known_shops=["shop-1", "shop-2"],
                                 fetch_max_partition_bytes=1 << 20)
    ensure_topics(settings)
    names = settings.shop_topic_prefix
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                             max_request_size=16 * 1024 * 1024)
    sent_good: dict[tuple[str, str], list[str]] = defaultdict(list)
    bad: list[tuple[str, bytes, str, Any]] = []

    def send_good(event: ShopEvent) -> None:
        producer.send(f"{names}.{event.event_type}", key=event.shop_id.encode(),
                      value=CODEC.encode(event)).get(timeout=30)
        sent_good[(event.shop_id, event.event_type)].append(event.event_id)

    def send_bad(event_type: str, value: bytes, expected_error: str, key: str = "shop-1") -> None:
        meta = producer.send(f"{names}.{event_type}", key=key.encode(), value=value).get(timeout=30)
        bad.append((f"{names}.{event_type}", value, expected_error, meta))

    good_order = CODEC.encode(order("shop-1", 50))
    for n in range(20):
        send_good(click("shop-1", n))
        if n < 10:
            send_good(click("shop-2", n))
        if n < 5:
            send_good(signup("shop-1", n))
            send_good(order("shop-1", n))
        if n < 3:
            send_good(order("shop-2", n))
        if n == 4:  # the bad records sit between good ones on the same partitions
            send_bad("order", good_order[:-9], "corrupt refstream.shop.Order body")
            send_bad("order", MAGIC + b"\x01" * 8 + good_order[10:],
                     "unknown writer schema fingerprint 0101010101010101")
            send_bad("order", raw_order(currency="euro"),
                     "currency: String should match pattern")
            send_bad("order", raw_order(amount_minor=-250),
                     "amount_minor: Input should be greater than or equal to 0")
            send_bad("order", CODEC.encode(order("shop-404", 7)), "unknown shop 'shop-404'",
                     key="shop-404")
            send_bad("order", raw_order(shop_id=""),
                     "shop_id: String should have at least 1 character", key="")
            send_bad("order", CODEC.encode(order("shop-1", 8, shipping_address="x" * 10_000_000)),
                     "exceeds the 1048576-byte event limit")
    # A producer retry: the same event id again must not reach the log twice.
    producer.send(f"{names}.click", key=b"shop-1", value=CODEC.encode(click("shop-1", 3))).get(30)
    producer.flush()
    producer.close()

    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    try:
        expected_log = sum(len(ids) for ids in sent_good.values())
        log_records = read_topic(kafka_bootstrap, f"{settings.topic_prefix}.log",
                                 expect=expected_log, settle=2.0)
        dlq_records = read_topic(kafka_bootstrap, f"{settings.topic_prefix}.dlq",
                                 expect=len(bad), settle=1.0)
    finally:
        exit_code = worker.stop()
    assert exit_code == 0, worker.log_tail()

    # The canonical log: every good record once, in its shop's order for each source topic.
    assert len(log_records) == expected_log
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    partition_of_shop: dict[str, set[int]] = defaultdict(set)
    for record in sorted(log_records, key=lambda r: (r.partition, r.offset)):
        event = CODEC.decode(record.value)
        assert record.key == event.shop_id.encode()
        partition_of_shop[event.shop_id].add(record.partition)
        seen[(event.shop_id, event.event_type)].append(event.event_id)
    assert dict(seen) == dict(sent_good)
    assert all(len(p) == 1 for p in partition_of_shop.values())
    # No raw personal data in the log.
    raw_log = b"".join(r.value for r in log_records)
    assert b"gmail.com" not in raw_log and b"198.51.100." not in raw_log
    assert b"Main St" not in raw_log and b"pm_" not in raw_log

    # The DLQ: one dead letter per bad record, with source, original bytes and error text.
    assert len(dlq_records) == len(bad)
    letters = sorted((CODEC.decode(r.value) for r in dlq_records),
                     key=lambda d: (d.source_topic, d.source_partition, d.source_offset))
    expected = sorted(bad, key=lambda b: (b[0], b[3].partition, b[3].offset))
    for letter, (topic, value, error, meta) in zip(letters, expected, strict=True):
        assert isinstance(letter, DeadLetter)
        assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
            topic, meta.partition, meta.offset)
        assert error in letter.error
        if len(value) <= 64 * 1024:
            assert letter.original == value
        else:
            assert letter.original == value[:64 * 1024] and "sha256" in letter.error
