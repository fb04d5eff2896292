"""A shop publishes one order to refstream with confluent-kafka, without a registry:
Avro single-object encoding (C3 01, the CRC-64-AVRO fingerprint little-endian, the body)."""

import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import fastavro
from confluent_kafka import Producer
from fastavro.schema import fingerprint, to_parsing_canonical_form


def single_object(schema: dict, record: dict) -> bytes:
    parsed = fastavro.parse_schema(schema)
    # fastavro gives the fingerprint's 8 bytes in the order the Avro specification writes them.
    header = b"\xc3\x01" + bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed),
                                                     "CRC-64-AVRO"))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, parsed, record)
    return header + body.getvalue()


def main(bootstrap: str, avro_dir: str, topic: str = "shop.order") -> None:
    schema = json.loads(Path(avro_dir, "shop_order.v1.avsc").read_text())
    order = {
        "event_id": "e-83",
        "event_type": "order",
        "shop_id": "shop-001",
        "occurred_at": datetime(2026, 10, 3, 12, 32, tzinfo=UTC),
        "order_id": "o-19",
        "customer_id": "cust-000042",
        "amount_minor": 800,  # integer minor units: 8.00
        "currency": "EUR",
        "ip": "203.0.113.9",
    }  # optional fields left out are null
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    producer.produce(topic, key=order["shop_id"].encode(), value=single_object(schema, order))
    if producer.flush(30) != 0:
        raise SystemExit("the order was not delivered within 30 s")


if __name__ == "__main__":
    main(*sys.argv[1:])
