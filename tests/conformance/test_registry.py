"""Against a real Confluent-compatible schema registry (the session's, or the one
REFSTREAM_TEST_SCHEMA_REGISTRY_URL names):
a shop produces with confluent-kafka's AvroSerializer, refstream ingests every record,
registers its output schemas (TopicRecordNameStrategy) and writes its outputs in registry
framing, which confluent-kafka's AvroDeserializer reads; the registry refuses an incompatible
output schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.registry import subject_name
from refstream.streams.schema_registry import (
    HttpSchemaRegistry,
    RegistryConfig,
    RegistryRejected,
    output_records,
)
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.conformance.samples import shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic
from tests.integration.pipeline_expectations import expected_outputs

pytestmark = [
    pytest.mark.integration, pytest.mark.slow,
]
CODEC = Codec()
RULES = load_rules(default_rules_path())
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def as_epoch_ms(record: dict[str, Any]) -> dict[str, Any]:
    """confluent-kafka applies timestamp-millis; refstream keeps epoch milliseconds."""
    return {k: (v - EPOCH) // timedelta(milliseconds=1) if isinstance(v, datetime) else v
            for k, v in record.items()}


def test_registry_framing_both_ways_with_confluent_kafka(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        schema_registry_url: str) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import (
        SchemaRegistryClient,
        topic_record_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    settings = isolated_settings(kafka_bootstrap, tmp_path, tick_interval_s=0)
    ensure_topics(settings)
    names = TopicNames.from_settings(settings)
    client = SchemaRegistryClient({"url": schema_registry_url})
    # 30 days from the generator's start end before today: ingest dead-letters events dated
    # ahead of its clock.
    events = [*iter_shop_events(SyntheticConfig(seed=3, shops=2, customers_per_shop=120,
                                                days=30)),
              *shop_events(shop="shop-samples")]
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    serializers: dict[str, AvroSerializer] = {}
    for event in events:
        name = CODEC.record_name(type(event))
        if name not in serializers:
            serializers[name] = AvroSerializer(
                client, json.dumps(CODEC.newest(name).declared),
                conf={"subject.name.strategy": topic_record_subject_name_strategy})
        topic = names.shop(event.event_type)
        record = {**CODEC.to_record(event)}
        producer.produce(topic, key=event.shop_id.encode(), value=serializers[name](
            record, SerializationContext(topic, MessageField.VALUE)))
    assert producer.flush(60) == 0

    monkeypatch.setenv("REFSTREAM_SCHEMA_REGISTRY_URL", schema_registry_url)
    monkeypatch.setenv("REFSTREAM_REGISTRY_FRAMED_OUTPUTS", "true")
    worker = WorkerProcess(settings).start()
    try:
        log_records = read_topic(kafka_bootstrap, names.log, expect=len(events), settle=2.0)
        want = expected_outputs(log_records, RULES, names)
        outputs = {topic: read_topic(kafka_bootstrap, topic, expect=len(messages), settle=1.0)
                   for topic, messages in want.items()}
        dlq = read_topic(kafka_bootstrap, names.dlq, timeout=3.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    assert dlq == [], [CODEC.decode(r.value).error for r in dlq]
    assert sorted(CODEC.decode(r.value).event_id for r in log_records) == \
        sorted(e.event_id for e in events)

    # The outputs: registry framing, subjects by TopicRecordNameStrategy, read by
    # confluent-kafka's AvroDeserializer equal to refstream's reading.
    subjects = set(client.get_subjects())
    for topic, records in output_records(names).items():
        assert {subject_name(topic, r) for r in records} <= subjects
    deserialize = AvroDeserializer(client)
    reader = Codec(resolver=HttpSchemaRegistry(RegistryConfig(schema_registry_url)))
    for topic, records in outputs.items():
        for record in records:
            assert record.value[0] == 0  # registry framing
            theirs = deserialize(record.value, SerializationContext(topic, MessageField.VALUE))
            _, ours = reader.decode_record(record.value)
            assert as_epoch_ms(theirs) == ours

    # Compatibility is the registry's: an output schema that breaks readers is refused.
    registry = HttpSchemaRegistry(RegistryConfig(schema_registry_url))
    subject = subject_name(names.reward_due, "refstream.derived.RewardDue")
    client.set_compatibility(subject, "BACKWARD")
    breaking = json.loads(json.dumps(CODEC.newest("refstream.derived.RewardDue").declared))
    breaking["fields"].append({"name": "payout_batch", "type": "string"})  # no default
    with pytest.raises(RegistryRejected, match=subject):
        registry.register(subject, breaking)
