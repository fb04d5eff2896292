"""The archive stage: refstream.log -> Parquet segments (persistence/archive.py) in fetch batches.

A mode `Service` the faust app starts and stops with itself, with a consumer of its own in
group `<app_id>.archiver`, like the ingest and pipeline stages. The archive itself says
where each partition resumes (`ArchiveWriter.next_offset`, from its commit markers): on
assignment the consumer seeks there, and an offset gate admits exactly the next offset, so
a segment never skips or repeats a record whatever the group's offsets say. Group offsets
are committed after each flush, for lag tools only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from refstream.persistence.archive import ArchiveWriter, archive_log_records
from refstream.schemas.codec import Codec
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.pipeline_runtime import CatchUp, OffsetGate
from refstream.streams.settings import Settings
from refstream.streams.stage import ConsumerStage
from refstream.streams.supervision import CrashPolicy

log = logging.getLogger("refstream.archiver")

# (partition, gap, still owned?) -> batches of the log records the archive lacks.
GapReader = Callable[[int, CatchUp, Callable[[], bool]], AsyncIterator[list[Any]]]


class ArchiveStage(ConsumerStage):
    """Appends the log's records to the archive and flushes (commits segments) every
    `flush_every_s`. A failure of the consuming loop is handed to `crash` (exit 1)."""

    name = "refstream.archiver"
    stage = "archiver"

    def __init__(self, settings: Settings, topic: str, codec: Codec, writer: ArchiveWriter,
                 *, metrics: WorkerMetrics, gap_reader: GapReader,
                 crash: CrashPolicy | None = None, **kwargs: Any) -> None:
        self.settings = settings
        self.topic = topic
        self.codec = codec
        self.writer = writer
        self.metrics = metrics
        self.gap_reader = gap_reader
        self.crash_policy = crash
        self.flush_every_s = settings.checkpoint_interval_s
        self.gates: dict[int, OffsetGate] = {}
        self.lock = asyncio.Lock()
        self.last_flush = time.monotonic()
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.new_consumer(self.settings, self.settings.pipeline_max_records)
        await self.subscribe(self.settings, [self.topic])

    async def on_stop(self) -> None:
        # Flush what is in hand before the consuming task is cancelled (SIGTERM drains).
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=self.settings.drain_timeout_s)
        except TimeoutError:
            return
        try:
            self.writer.flush()
        finally:
            self.lock.release()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            # The next owner archives from the last flush; our unflushed tail would overlap.
            lost = {tp.partition for tp in revoked if tp.topic == self.topic}
            self.writer.forget(lost)
            for partition in lost:
                self.gates.pop(partition, None)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Resume each partition where the archive ends (it may have been extended by
        another worker meanwhile: `forget` re-reads the commit markers)."""
        assert self.consumer is not None
        async with self.lock:
            mine = {tp.partition for tp in assigned if tp.topic == self.topic}
            self.writer.forget(mine)
            for tp in assigned:
                start = self.writer.next_offset(tp.partition)
                self.gates[tp.partition] = OffsetGate(start)
                self.consumer.seek(tp, start)

    async def consume_batches(self) -> None:
        while not self.should_stop:
            fetched = await self.fetch()
            async with self.lock:
                if self.should_stop:
                    break
                for tp, records in fetched.items():
                    gate = self.gates.get(tp.partition)
                    if gate is not None and records:
                        await self._archive(tp, gate, records)
                if time.monotonic() - self.last_flush >= self.flush_every_s:
                    await self._flush()

    async def _archive(self, tp: TopicPartition, gate: OffsetGate, records: list[Any]) -> None:
        partition = tp.partition
        for record in records:
            verdict = gate.admit(record.offset)
            if isinstance(verdict, CatchUp):
                async for missing in self.gap_reader(
                        partition, verdict, lambda: self.gates.get(partition) is gate):
                    archive_log_records(self.writer, self.codec, (
                        (partition, r.offset, r.timestamp, r.value)
                        for r in missing if gate.admit(r.offset) is None))
                verdict = gate.admit(record.offset)
            if verdict is None:
                archive_log_records(self.writer, self.codec, iter([(
                    partition, record.offset, record.timestamp, record.value)]))

    async def _flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.writer.buffered:
            return
        self.writer.flush()
        assert self.consumer is not None
        owned = self.consumer.assignment()
        offsets = {tp: self.gates[tp.partition].next_offset for tp in owned
                   if tp.partition in self.gates}
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:  # informational only: the archive says where to resume
                log.info("archiver group offsets not committed: %s", exc)
