"""Where replay reads the canonical log from: the Parquet archive, or the topic from offset 0.

Both yield (partition, offset, log timestamp ms, event-or-None) partition by partition in
offset order, and both honour an as-of cut (a time, or an offset per partition) so replay
can answer "what did we believe on date X".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstream.persistence.archive import ArchiveReader
from refstream.schemas.codec import Codec
from refstream.schemas.events import LogEvent

LogRecord = tuple[int, int, int, LogEvent | None]


@dataclass(frozen=True)
class AsOf:
    """A log prefix: records appended at or before `time_ms`, and/or below given offsets."""

    time_ms: int | None = None
    offsets: Mapping[int, int] = field(default_factory=dict)  # partition -> first excluded

    def includes(self, partition: int, offset: int, log_timestamp: int) -> bool:
        if self.time_ms is not None and log_timestamp > self.time_ms:
            return False
        limit = self.offsets.get(partition)
        return limit is None or offset < limit

    @classmethod
    def parse(cls, time_ms: int | None, offsets: str | None) -> AsOf:
        """`offsets` as "P:O,P:O" (partition P up to, not including, offset O)."""
        parsed: dict[int, int] = {}
        for part in (offsets or "").split(","):
            if part.strip():
                p, _, o = part.partition(":")
                parsed[int(p)] = int(o)
        return cls(time_ms, parsed)


def archive_records(root: str | Path, as_of: AsOf | None = None) -> Iterator[LogRecord]:
    reader = ArchiveReader(root)
    cut = as_of or AsOf()
    for partition in reader.partitions():
        for record in reader.iter_records(partition):
            # The log is append-ordered: past the cut in a partition, nothing later counts.
            if not cut.includes(record.partition, record.offset, record.log_timestamp):
                break
            yield record.partition, record.offset, record.log_timestamp, record.event


RawRecord = tuple[int, int, int, bytes | None]


def topic_raw_records(bootstrap: str, topic: str, security: Mapping[str, Any] | None = None,
                      start_at: Callable[[int], int] | None = None,
                      stall_timeout_s: float = 60.0) -> Iterator[RawRecord]:
    """(partition, offset, log timestamp, value) from `start_at(partition)` (default 0) to the
    end each partition had when its read began, partition by partition.

    A read that makes no progress for `stall_timeout_s` (the broker is gone) raises
    kafka-python's KafkaTimeoutError instead of waiting forever (the CLI: exit 4)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaTimeoutError

    bound_ms = int(stall_timeout_s * 1000)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, max_partition_fetch_bytes=32 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024, bootstrap_timeout_ms=bound_ms,
                             request_timeout_ms=max(1000, min(30_000, bound_ms // 2)),
                             **dict(security or {}))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise FileNotFoundError(f"topic {topic} does not exist on {bootstrap}, or this "
                                    "principal may not describe it (refstream acls show)")
        for partition in sorted(partitions):
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, start_at(partition) if start_at is not None else 0)
            end = consumer.end_offsets([tp])[tp]
            progressed = time.monotonic()
            while consumer.position(tp) < end:
                records = consumer.poll(timeout_ms=1000).get(tp, [])
                if records:
                    progressed = time.monotonic()
                elif time.monotonic() - progressed > stall_timeout_s:
                    raise KafkaTimeoutError(
                        f"reading {topic}[{partition}] made no progress for "
                        f"{stall_timeout_s:.0f}s at offset {consumer.position(tp)} of {end}")
                for record in records:
                    if record.offset < end:
                        yield partition, record.offset, record.timestamp, record.value
    finally:
        consumer.close()


def topic_records(bootstrap: str, topic: str, security: Mapping[str, Any] | None = None,
                  as_of: AsOf | None = None, codec: Codec | None = None, *,
                  stall_timeout_s: float = 60.0) -> Iterator[LogRecord]:
    """The topic from offset 0 to its end when the read started, decoded, up to the cut."""
    codec = codec or Codec()
    cut = as_of or AsOf()
    stopped: set[int] = set()
    for partition, offset, stamp, value in topic_raw_records(bootstrap, topic, security,
                                                             stall_timeout_s=stall_timeout_s):
        # The log is append-ordered: past the cut in a partition, nothing later counts.
        if partition in stopped or not cut.includes(partition, offset, stamp):
            stopped.add(partition)
            continue
        yield partition, offset, stamp, codec.decode_log_event(value)


def events_of(records: Iterator[LogRecord]) -> Iterator[LogEvent]:
    for _, _, _, event in records:
        if event is not None:
            yield event
