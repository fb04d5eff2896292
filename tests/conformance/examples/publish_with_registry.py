"""A shop publishes one order to refstream with confluent-kafka and a schema registry."""

import sys
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main(bootstrap: str, registry_url: str, avro_dir: str, topic: str = "shop.order") -> None:
    registry = SchemaRegistryClient({"url": registry_url})
    serializer = AvroSerializer(
        registry,
        Path(avro_dir, "shop_order.v1.avsc").read_text(),
        # Subject "shop.order-refstream.shop.Order", as refstream names its own subjects.
        conf={"subject.name.strategy": topic_record_subject_name_strategy},
    )
    order = {
        "event_id": "e-82",
        "event_type": "order",
        "shop_id": "shop-001",
        "occurred_at": datetime(2026, 10, 3, 12, 31, tzinfo=UTC),
        "order_id": "o-18",
        "customer_id": "cust-000042",
        "amount_minor": 1250,  # integer minor units: 12.50
        "currency": "EUR",
        "ip": "203.0.113.9",
    }  # optional fields left out are null
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    value = serializer(order, SerializationContext(topic, MessageField.VALUE))
    producer.produce(topic, key=order["shop_id"].encode(), value=value)
    if producer.flush(30) != 0:
        raise SystemExit("the order was not delivered within 30 s")


if __name__ == "__main__":
    main(*sys.argv[1:])
