"""Read one stretch of one log partition with a consumer of its own (no group, no commits).

The workers use it when the group's consumer hands them a record ahead of their state (a
partition moved to a worker with an older checkpoint, or faust committed past the last
checkpoint before a crash): the records in between are read here, in offset order, and the
group's consumer is never seeked (see streams/pipeline_runtime.py for why).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from refstream.schemas.errors import EXIT_PROBLEM, RefstreamError
from refstream.streams.reachable import start_when_reachable
from refstream.streams.settings import Settings

log = logging.getLogger("refstream.streams")

# A stretch that makes no progress for this long means the broker is gone or the records are:
# the worker stops with the reason instead of waiting or skipping silently.
STALL_TIMEOUT_S = 120.0


class LogGapError(RefstreamError):
    """Records the state needs are no longer in the topic (truncated or deleted by retention)."""

    exit_code: ClassVar[int] = EXIT_PROBLEM


async def read_log_range(settings: Settings, topic: str, partition: int, start: int,
                         stop: int, *, max_records: int = 5000,
                         stall_timeout_s: float = STALL_TIMEOUT_S) -> AsyncIterator[list[Any]]:
    """Batches of the records at offsets [start, stop) of `topic`[`partition`], in order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=None,
        enable_auto_commit=False, auto_offset_reset="none",
        max_partition_fetch_bytes=16 * 1024 * 1024, **settings.aiokafka_security())
    # A broker restarting just then delays the catch-up instead of stopping the worker.
    await start_when_reachable(consumer.start, f"reading {topic}[{partition}]",
                               settings.kafka_bootstrap, settings.client_timeout_s)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        if first > start:
            raise LogGapError(
                f"{topic}[{partition}] starts at offset {first}, but this worker's state needs "
                f"offsets from {start}: the log was truncated below a lost checkpoint. Restore "
                "the checkpoint store, or rebuild from the archive (refstream replay --archive)")
        consumer.seek(tp, start)
        position, progressed = start, time.monotonic()
        while position < stop:
            fetched = await consumer.getmany(tp, timeout_ms=500, max_records=max_records)
            batch = [record for record in fetched.get(tp, []) if record.offset < stop]
            if batch:
                yield batch
            # The next fetch offset: also steps over offsets that hold no record.
            reached = await consumer.position(tp)
            if reached > position:
                position, progressed = reached, time.monotonic()
            elif time.monotonic() - progressed > stall_timeout_s:
                raise TimeoutError(f"{topic}[{partition}]: no record at offset {position} "
                                   f"within {stall_timeout_s:.0f}s (reading up to {stop})")
    finally:
        await consumer.stop()
