"""Right to erasure on a real broker: `--truncate-topic` deletes the log records the archive
holds (Kafka cannot edit them), and nothing appended after the archive's end."""

from __future__ import annotations

from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from refstream.persistence.archive import ArchiveReader, ArchiveWriter, archive_log_records
from refstream.persistence.vault import PersonVault
from refstream.replay.sources import topic_raw_records
from refstream.schemas.codec import Codec
from refstream.schemas.events import OrderPlaced, Signup, Tick
from refstream.streams.topics import ensure_topics
from refstream.tools.erasure import erase_person
from tests.integration.kafka_helpers import isolated_settings, read_topic, topic_names

pytestmark = pytest.mark.integration

SHOP = "shop-erase"
T0 = 1_790_000_000_000


def test_truncate_topic_deletes_exactly_the_archived_log_records(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)
    log_topic = topic_names(settings).log
    codec = Codec()
    with PersonVault(tmp_path / "vault.sqlite") as vault:
        token = vault.token(SHOP, "cust-7")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    archived = [Signup("e1", SHOP, T0, token, "email:7", "ip:7", "v-7"),
                OrderPlaced("e2", SHOP, T0 + 1, "o-7", token, 4200, "EUR", "ip:7", "v-7"),
                Tick("e3", SHOP, T0 + 2)]
    for event in archived:
        producer.send(log_topic, codec.encode(event), key=SHOP.encode(), partition=0)
    producer.flush()
    writer = ArchiveWriter(tmp_path / "archive")
    archive_log_records(writer, codec, topic_raw_records(kafka_bootstrap, log_topic,
                                                         start_at=writer.next_offset))
    writer.flush()
    assert ArchiveReader(tmp_path / "archive").next_offsets() == {0: 3}
    later = Tick("e4", SHOP, T0 + 3)  # appended after the archive's end: must survive
    producer.send(log_topic, codec.encode(later), key=SHOP.encode(), partition=0)
    producer.flush()
    producer.close()

    receipt = erase_person(SHOP, "cust-7", tmp_path / "vault.sqlite", tmp_path / "archive",
                           settings=settings, truncate_topic=True)

    assert receipt.topic_truncated_below == {0: 3}
    assert receipt.records_rewritten == 2
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert consumer.beginning_offsets([TopicPartition(log_topic, 0)]) == {
            TopicPartition(log_topic, 0): 3}
    finally:
        consumer.close()
    remaining = read_topic(kafka_bootstrap, log_topic, expect=1, settle=1.0)
    assert [codec.decode(r.value) for r in remaining] == [later]
