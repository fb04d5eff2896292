"""Every producer refstream runs is idempotent, as the broker sees it: the broker hands an
idempotent producer a producer id (InitProducerId) and de-duplicates its re-sent batches by
sequence number; a plain producer has no id (-1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from refstream.streams.faust_app import build_app
from refstream.streams.producer import close_producer, kafka_producer
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import isolated_settings

pytestmark = pytest.mark.integration


def test_the_cli_producer_gets_a_producer_id(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)
    producer = kafka_producer(settings)
    try:
        producer.send(TopicNames.from_settings(settings).shop("click"), b"x").get(timeout=30)
        assert producer.config["enable_idempotence"] is True
        assert producer._transaction_manager.producer_id_and_epoch.producer_id >= 0
    finally:
        close_producer(producer, 5)


def test_the_workers_producer_gets_a_producer_id(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The faust producer that writes the log, the derived topics and reward-due."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)

    async def produce_one() -> int:
        app = build_app(settings, None, with_ingest=False)
        producer = app.producer
        await producer.start()
        try:
            await producer.send_and_wait(TopicNames.from_settings(settings).log, b"k", b"v",
                                         None, None, None)
            inner = producer._producer  # the aiokafka producer faust runs
            assert inner._txn_manager is not None, "no idempotence manager: not idempotent"
            return int(inner._txn_manager._pid_and_epoch.pid)
        finally:
            await producer.stop()

    assert asyncio.run(produce_one()) >= 0


def test_the_pipeline_stages_producer_gets_a_producer_id(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    """The pipeline stage's own aiokafka producer (derived topics, reward-due), which sends
    whole record batches (`send_batch`): the broker hands it a producer id too."""
    from refstream.streams.batch_produce import stage_producer

    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)

    async def produce_one() -> int:
        producer = stage_producer(settings)
        await producer.start()
        try:
            batch = producer.create_batch()
            batch.append(key=b"k", value=b"v", timestamp=None)
            sent = await producer.send_batch(batch, TopicNames.from_settings(settings).log,
                                             partition=0)
            await sent
            assert producer._txn_manager is not None, "no idempotence manager: not idempotent"
            return int(producer._txn_manager._pid_and_epoch.pid)
        finally:
            await producer.stop()

    assert asyncio.run(produce_one()) >= 0
