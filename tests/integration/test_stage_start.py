"""A stage's Kafka clients start even when the broker answers only some seconds later (a
broker restarting while the worker starts), and give up with the client error once
REFSTREAM_CLIENT_TIMEOUT_S has passed. The broker is the session's real one; a port that
refuses connections at first, then forwards them to it, stands for the restarting broker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from refstream.deploy.kafka_launcher import free_port
from refstream.streams.reachable import PatientProducer, start_when_reachable
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import isolated_settings, late_broker

pytestmark = [pytest.mark.integration]
ANSWER_AFTER_S = 3.0


@pytest.mark.parametrize("client", ["a stage's producer", "faust's producer"])
def test_a_producer_starts_once_the_broker_answers_and_its_record_is_acknowledged(
        kafka_bootstrap: str, tmp_path: Path, client: str) -> None:
    direct = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(direct)
    topic = TopicNames.from_settings(direct).log
    port = free_port()
    settings = direct.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}",
                                         "client_timeout_s": 60.0})

    async def scenario() -> tuple[float, int]:
        opening = asyncio.create_task(late_broker(port, kafka_bootstrap, ANSWER_AFTER_S))
        began = time.monotonic()
        producer: AIOKafkaProducer
        if client == "faust's producer":  # the class faust builds for refstream's app
            producer = PatientProducer(bootstrap_servers=[settings.kafka_bootstrap],
                                       start_bound_s=settings.client_timeout_s)
            start = producer.start()
        else:
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            start = start_when_reachable(producer.start, "test producer",
                                         settings.kafka_bootstrap, settings.client_timeout_s)
        try:
            await start
            started_after = time.monotonic() - began
            # Started for real: the broker creates the topic and acknowledges a record.
            sent = await producer.send_and_wait(topic, b"after the wait")
        finally:
            await producer.stop()
            (await opening).close()
        return started_after, sent.offset

    started_after, offset = asyncio.run(scenario())
    assert started_after >= ANSWER_AFTER_S * 0.9 and offset == 0, (started_after, offset)


def test_without_a_broker_the_start_gives_up_after_the_client_bound(tmp_path: Path) -> None:
    bound_s = 2.0
    settings = isolated_settings(f"127.0.0.1:{free_port()}", tmp_path).model_copy(
        update={"client_timeout_s": bound_s})

    async def scenario() -> float:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        began = time.monotonic()
        try:
            with pytest.raises(KafkaConnectionError):
                await start_when_reachable(producer.start, "test producer",
                                       settings.kafka_bootstrap, settings.client_timeout_s)
        finally:
            await producer.stop()
        return time.monotonic() - began

    took = asyncio.run(scenario())
    # It tried for the whole bound, not once, and did not wait much longer than that.
    assert bound_s <= took < bound_s + 10, took
