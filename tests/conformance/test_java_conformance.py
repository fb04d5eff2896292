"""Cross-language conformance on the real broker, against the reference implementation:
Apache Avro's Java BinaryMessageEncoder/Decoder with the Apache Kafka Java client.

(a) Java encodes every shop event type (every shipped version of each) and publishes it;
    refstream's ingest puts every one into the canonical log, none into the DLQ.
(b) Java decodes every record refstream writes to its output topics, several record types
    sharing a topic, with every shipped writer schema in its SchemaStore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.shop import ShopEvent
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.conformance import java_program
from tests.conformance.make_golden import avro_json, sample_records
from tests.conformance.samples import shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic
from tests.integration.pipeline_expectations import expected_outputs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = Codec()
RULES = load_rules(default_rules_path())


def publish_request(names: TopicNames, events: list[ShopEvent]) -> list[dict[str, Any]]:
    """Lines for `Conformance publish`: topic, schema file and the record in Avro JSON."""
    lines = []
    for event in events:
        version = CODEC.newest(CODEC.record_name(type(event)))
        lines.append({"topic": names.shop(event.event_type), "file": version.file_name,
                      "record": avro_json(version, CODEC.to_record(event))})
    # Every older shop schema version too: a producer that has not upgraded yet.
    newest_files = {CODEC.newest(v.full_name).file_name for v in CODEC.versions}
    for version, sample in sample_records(CODEC):
        if version.full_name.startswith("refstream.shop.") and \
                version.file_name not in newest_files:
            old = {**sample, "event_id": f"old-{version.file_name}",
                   "shop_id": "shop-old-producer"}
            lines.append({"topic": names.shop(old["event_type"]), "file": version.file_name,
                          "record": avro_json(version, old)})
    return lines


def test_java_producer_and_consumer_interoperate(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, tick_interval_s=0)
    ensure_topics(settings)
    names = TopicNames.from_settings(settings)
    # 30 days from the generator's start end before today: ingest dead-letters events dated
    # ahead of its clock (clock skew), and this test is about encoding, not the clock.
    events = [*iter_shop_events(SyntheticConfig(seed=11, shops=2, customers_per_shop=120,
                                                days=30)),
              *shop_events(shop="shop-samples")]
    request = publish_request(names, events)
    request_file = tmp_path / "publish.jsonl"
    request_file.write_text("".join(json.dumps(line) + "\n" for line in request))

    (published,) = java_program.run("publish", kafka_bootstrap, str(java_program.AVRO_DIR),
                                    str(request_file))
    assert published == {"published": len(request)}
    # The producer example of docs/producers.md, run as written.
    example = java_program.example("PublishShopEvent", kafka_bootstrap,
                                   str(java_program.AVRO_DIR / "shop_order.v1.avsc"),
                                   names.shop("order"))
    assert example.wait(timeout=120) == 0, example.communicate()[1]
    sent_ids = [line["record"]["event_id"] for line in request] + ["e-81"]

    worker = WorkerProcess(settings).start()
    try:
        log_records = read_topic(kafka_bootstrap, names.log, expect=len(sent_ids), settle=2.0)
        want = expected_outputs(log_records, RULES, names)
        outputs = {topic: read_topic(kafka_bootstrap, topic, expect=len(messages), settle=1.0)
                   for topic, messages in want.items()}
        dlq = read_topic(kafka_bootstrap, names.dlq, timeout=3.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()

    # (a) every record Java encoded is in the canonical log, none dead-lettered.
    assert dlq == [], [CODEC.decode(r.value).error for r in dlq]
    logged = sorted(CODEC.decode(r.value).event_id for r in log_records)
    assert logged == sorted(sent_ids)

    # (b) Java decodes every output record; each equals refstream's own reading of it.
    assert set(want) == {names.attributions, names.fraud_flags, names.reward_due,
                         names.rewards}
    decoded = java_program.run("decode", kafka_bootstrap, str(java_program.AVRO_DIR), "120",
                               *(f"{topic}={len(records)}" for topic, records in outputs.items()))
    by_position = {(d["topic"], d["partition"], d["offset"]): d for d in decoded}
    assert len(by_position) == sum(len(records) for records in outputs.values())
    kinds: dict[str, set[str]] = {}
    for topic, records in outputs.items():
        for record in records:
            java = by_position[(topic, record.partition, record.offset)]
            name, ours = CODEC.decode_record(record.value)
            assert java["record_name"] == name
            assert java["record"] == json.loads(json.dumps(ours))
            kinds.setdefault(topic, set()).add(name)
    assert kinds[names.reward_due] == {"refstream.derived.RewardDue",
                                       "refstream.derived.RewardReversal"}

    # The finance example of docs/producers.md, run as written, prints every reward-due record.
    want_lines = []
    for record in outputs[names.reward_due]:
        event = CODEC.decode(record.value)
        want_lines.append(f"{type(event).__name__} {event.reward_id} {event.amount_minor} "
                          f"{event.currency}")
    reader = java_program.example("ReadRewardDue", kafka_bootstrap, str(java_program.AVRO_DIR),
                                  names.reward_due)
    try:
        assert reader.stdout is not None
        printed = [reader.stdout.readline().strip() for _ in want_lines]
    finally:
        reader.kill()
        reader.wait()
    assert sorted(printed) == sorted(want_lines)
