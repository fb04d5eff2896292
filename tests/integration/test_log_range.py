"""`read_log_range` on the real broker: exactly the asked stretch, in order, a clear error
when the records a worker needs were truncated away, and a broker that answers only some
seconds later (restarting) waited for instead of failing the worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer

from refstream.deploy.kafka_launcher import free_port
from refstream.streams.log_range import LogGapError, read_log_range
from refstream.streams.settings import Settings
from refstream.streams.topics import ensure_topics
from refstream.tools.erasure import truncate_log_topic
from tests.integration.kafka_helpers import isolated_settings, late_broker, topic_names

pytestmark = pytest.mark.integration


def read(settings: Settings, start: int, stop: int, max_records: int = 5000) -> list[int]:
    return asyncio.run(collect(settings, start, stop, max_records))


async def collect(settings: Settings, start: int, stop: int, max_records: int = 5000
                  ) -> list[int]:
    offsets: list[int] = []
    async for batch in read_log_range(settings, topic_names(settings).log, 0, start, stop,
                                      max_records=max_records):
        assert batch, "an empty batch"
        offsets.extend(record.offset for record in batch)
    return offsets


def publish(settings: Settings, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for n in range(count):
        producer.send(topic_names(settings).log, f"record {n}".encode(), partition=0)
    producer.flush()
    producer.close()


def test_reads_exactly_the_stretch_and_names_a_truncated_gap(kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)
    publish(settings, 40)

    assert read(settings, 0, 40) == list(range(40))
    assert read(settings, 7, 31, max_records=4) == list(range(7, 31))  # many small batches
    assert read(settings, 39, 40) == [39]

    truncate_log_topic(settings, {0: 10})
    assert read(settings, 10, 40) == list(range(10, 40))
    with pytest.raises(LogGapError, match=r"starts at offset 10.*needs offsets from 3"):
        read(settings, 3, 40)


def test_a_broker_that_answers_seconds_later_is_waited_for(kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    direct = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(direct)
    publish(direct, 12)
    port = free_port()
    settings = direct.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}",
                                         "client_timeout_s": 60.0})
    answer_after_s = 3.0

    async def scenario() -> tuple[float, list[int]]:
        opening = asyncio.create_task(late_broker(port, kafka_bootstrap, answer_after_s))
        began = time.monotonic()
        try:
            offsets = await collect(settings, 2, 12)
        finally:
            (await opening).close()
        return time.monotonic() - began, offsets

    took, offsets = asyncio.run(scenario())
    assert offsets == list(range(2, 12)) and took >= answer_after_s * 0.9, (took, offsets)
