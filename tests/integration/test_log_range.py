"""`read_log_range` on the real broker: exactly the asked stretch, in order, and a clear error
when the records a worker needs were truncated away."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kafka import KafkaProducer

from refstream.streams.log_range import LogGapError, read_log_range
from refstream.streams.settings import Settings
from refstream.streams.topics import ensure_topics
from refstream.tools.erasure import truncate_log_topic
from tests.integration.kafka_helpers import isolated_settings, topic_names

pytestmark = pytest.mark.integration


def read(settings: Settings, start: int, stop: int, max_records: int = 5000) -> list[int]:
    async def collect() -> list[int]:
        offsets: list[int] = []
        async for batch in read_log_range(settings, topic_names(settings).log, 0, start, stop,
                                          max_records=max_records):
            assert batch, "an empty batch"
            offsets.extend(record.offset for record in batch)
        return offsets

    return asyncio.run(collect())


def test_reads_exactly_the_stretch_and_names_a_truncated_gap(kafka_bootstrap: str,
                                                              tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for n in range(40):
        producer.send(topic_names(settings).log, f"record {n}".encode(), partition=0)
    producer.flush()
    producer.close()

    assert read(settings, 0, 40) == list(range(40))
    assert read(settings, 7, 31, max_records=4) == list(range(7, 31))  # many small batches
    assert read(settings, 39, 40) == [39]

    truncate_log_topic(settings, {0: 10})
    assert read(settings, 10, 40) == list(range(10, 40))
    with pytest.raises(LogGapError, match=r"starts at offset 10.*needs offsets from 3"):
        read(settings, 3, 40)
