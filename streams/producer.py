"""Publishing shop events to the shop topics (`refstream produce`), Avro-encoded, keyed by shop.

This is also the reference for shop producers in Python: one topic per event type, the
shop id as key, single-object Avro as value, acks from all replicas, idempotent retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from refstream.schemas.codec import Codec
from refstream.schemas.shop import ShopEvent
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames


def kafka_producer(settings: Settings, **overrides: Any) -> Any:
    from kafka import KafkaProducer

    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 16 * 1024 * 1024,
        "retries": 5,
        **settings.kafka_security(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


def publish_shop_events(settings: Settings, events: Iterable[ShopEvent],
                        progress: Callable[[int], None] | None = None) -> int:
    """Send every event to its shop topic; returns the count once all are acknowledged."""
    codec = Codec()
    names = TopicNames.from_settings(settings)
    producer = kafka_producer(settings)
    own_topic_shops = frozenset(settings.shop_principals.values())
    sent = 0
    try:
        for event in events:
            topic = names.topic_for(event.shop_id, event.event_type, own_topic_shops)
            producer.send(topic, key=event.shop_id.encode(),
                          value=codec.encode(event))
            sent += 1
            if progress is not None and sent % 5_000 == 0:
                progress(5_000)
        producer.flush()
    finally:
        producer.close()
    return sent
