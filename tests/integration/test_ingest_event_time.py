"""Event time at the edge, on the real broker: a stall on one shop topic delays the log
instead of reordering it, and events dated far off ingest's clock go to the DLQ."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer

from refstream.schemas.codec import Codec
from refstream.schemas.events import DeadLetter
from refstream.schemas.shop import ShopClick, ShopEvent, ShopOrder, ShopSignup
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic

pytestmark = pytest.mark.integration
CODEC = Codec()
T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
MERGE_IDLE_S = 4.0
STALL_S = 1.5  # longer than main's 0.25 s batches, shorter than the merge's bound


def funnel(shop: str, n: int) -> tuple[ShopClick, ShopSignup, ShopOrder]:
    at = T0 + timedelta(hours=n)
    return (
        ShopClick(event_id=f"{shop}-click-{n}", shop_id=shop, occurred_at=at,
                  visitor_id=f"v{n}", landing_url=f"https://{shop}.example/?ref=R{n}",
                  ip=f"198.51.100.{n}", user_agent="Mozilla/5.0", referral_code=f"R-{n}"),
        ShopSignup(event_id=f"{shop}-signup-{n}", shop_id=shop,
                   occurred_at=at + timedelta(minutes=10), customer_id=f"c{n}",
                   email=f"person.{n}@example.com", ip=f"198.51.100.{n}", visitor_id=f"v{n}"),
        ShopOrder(event_id=f"{shop}-order-{n}", shop_id=shop,
                  occurred_at=at + timedelta(minutes=20), order_id=f"o{n}",
                  customer_id=f"c{n}", amount_minor=2500, currency="EUR", ip="203.0.113.7"),
    )


def test_a_stalled_topic_delays_the_log_and_skewed_events_are_dead_lettered(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2, tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    monkeypatch.setenv("REFSTREAM_MERGE_IDLE_S", str(MERGE_IDLE_S))
    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")

    def publish(events: list[ShopEvent]) -> None:
        for event in events:
            producer.send(names.shop(event.event_type), key=event.shop_id.encode(),
                          value=CODEC.encode(event))
        producer.flush()

    try:
        shops = ["shop-a", "shop-b", "shop-c"]
        funnels = [funnel(shop, n) for shop in shops for n in range(3)]
        # The shops' orders reach the broker first; their clicks and signups, which happened
        # before them, only after a stall on those two topics.
        publish([order for _, _, order in funnels])
        time.sleep(STALL_S)
        publish([event for click, signup, _ in funnels for event in (click, signup)])
        skewed = [
            ShopClick(event_id="from-2031", shop_id="shop-a",
                      occurred_at=datetime(2031, 1, 1, tzinfo=UTC), visitor_id="vx",
                      landing_url="https://shop-a.example/", ip="198.51.100.200",
                      user_agent="Mozilla/5.0"),
            ShopClick(event_id="from-1970", shop_id="shop-a",
                      occurred_at=datetime(1970, 1, 1, tzinfo=UTC), visitor_id="vy",
                      landing_url="https://shop-a.example/", ip="198.51.100.201",
                      user_agent="Mozilla/5.0"),
        ]
        publish(skewed)
        log_records = read_topic(kafka_bootstrap, names.log, expect=len(funnels) * 3,
                                 timeout=90, settle=MERGE_IDLE_S + 2)
        dead = read_topic(kafka_bootstrap, names.dlq, expect=2, timeout=60)
        metrics = worker.metrics()
    finally:
        producer.close()
        assert worker.stop() == 0, worker.log_tail()

    per_shop: dict[str, list[tuple[int, str]]] = {}
    for record in sorted(log_records, key=lambda r: (r.partition, r.offset)):
        event = CODEC.decode_log_event(record.value)
        assert event is not None
        per_shop.setdefault(event.shop_id, []).append((event.occurred_at, event.event_id))
    assert sorted(per_shop) == shops
    for shop, appended in per_shop.items():
        assert appended == sorted(appended), f"{shop} appended out of event-time order: {appended}"
        assert [e for _, e in appended if e.startswith(("from-",))] == []
    letters = [CODEC.decode(r.value) for r in dead]
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    errors = sorted(letter.error for letter in letters)  # type: ignore[union-attr]
    assert "1970-01-01T00:00:00+00:00 is older than the" in errors[0], errors
    assert "2031-01-01T00:00:00+00:00 is" in errors[1] and "ahead of ingest's clock" in errors[1]
    # Everything above was merged in time: nothing counts as a late append.
    assert "refstream_ingest_late_appends_total 0.0" in metrics, metrics
