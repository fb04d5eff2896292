"""What the worker's stages share: a mode `Service` with an aiokafka consumer of its own.

Each stage (ingest, pipeline, archiver) runs beneath faust's per-message machinery, a fetch
batch at a time, in a consumer group of its own (`stage_group`), with its own rebalance
listener; faust starts and stops it with the app (`app.add_dependency`). A failure of the
consuming loop goes to the crash policy (health 503, the process stops and exits 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from mode import Service

from refstream.streams.batch_produce import PartitionedSender, stage_producer
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.reachable import start_when_reachable
from refstream.streams.settings import Settings
from refstream.streams.supervision import CrashPolicy
from refstream.streams.topics import stage_group


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, stage: ConsumerStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.stage.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.stage.on_assigned(assigned)


class ConsumerStage(Service):
    """A stage's consumer lifecycle; subclasses implement the three hooks below."""

    stage = ""
    consumer: AIOKafkaConsumer | None = None
    producer: AIOKafkaProducer | None = None
    sender: PartitionedSender | None = None
    crash_policy: CrashPolicy | None = None
    # Set once the consumer is started and subscribed: a stage stopped before that (its
    # start failed) has read nothing, so its stop has nothing to drain or commit.
    subscribed = False

    def new_consumer(self, settings: Settings, max_records: int,
                     **options: Any) -> AIOKafkaConsumer:
        """The stage's consumer (not started): its own group, offsets committed by the
        stage only, a fetch wait of `REFSTREAM_FETCH_MAX_WAIT_MS`."""
        # What `fetch` asks for (a wait of at least 1 ms: none would spin the loop).
        self.fetch_options = {"timeout_ms": max(settings.fetch_max_wait_ms, 1),
                              "max_records": max_records}
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap.split(","),
            group_id=stage_group(settings.app_id, self.stage),
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            fetch_min_bytes=settings.fetch_min_bytes, max_poll_records=max_records,
            max_partition_fetch_bytes=settings.fetch_max_partition_bytes,
            session_timeout_ms=int(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(settings.session_timeout_s * 1000 / 5),
            **options, **settings.aiokafka_security())
        return self.consumer

    async def fetch(self) -> dict[TopicPartition, list[Any]]:
        """The next fetch batch of the stage's consumer: what it holds, up to its max records,
        after waiting at most the fetch wait for more."""
        assert self.consumer is not None
        batch: dict[TopicPartition, list[Any]] = await self.consumer.getmany(
            **self.fetch_options)
        return batch

    async def start_producer(self, settings: Settings) -> PartitionedSender:
        """The stage's own idempotent producer, started, and its batch sender."""
        self.producer = stage_producer(settings)
        self.sender = PartitionedSender(self.producer)
        await start_when_reachable(self.producer.start, f"{self.stage} producer",
                                   settings.kafka_bootstrap, settings.client_timeout_s)
        return self.sender

    async def subscribe(self, settings: Settings, topics: list[str]) -> None:
        assert self.consumer is not None
        await start_when_reachable(self.consumer.start, f"{self.stage} consumer",
                                   settings.kafka_bootstrap, settings.client_timeout_s)
        self.consumer.subscribe(topics, listener=_Assignments(self))
        self.subscribed = True

    async def on_shutdown(self) -> None:
        # The consuming task is cancelled by now (the stage's on_stop drained what it could);
        # what was sent after the last commit is delivered by the producer's stop, and redone
        # identically by the next owner.
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        raise NotImplementedError

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        raise NotImplementedError

    async def consume_batches(self) -> None:
        raise NotImplementedError

    @Service.task
    async def _consume(self) -> None:
        try:
            await self.consume_batches()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # mode's own crash handling knows nothing of refstream's health or exit codes.
            if self.crash_policy is None:
                raise
            await self.crash_policy.on_agent_error(self, exc)

    @staticmethod
    def forget_lag(metrics: WorkerMetrics, tps: Iterable[TopicPartition]) -> None:
        """Partitions moved away: their next owner reports their lag."""
        for tp in tps:
            with contextlib.suppress(KeyError):
                metrics.lag.remove(tp.topic, str(tp.partition))

    def report_lag(self, metrics: WorkerMetrics, tp: TopicPartition, position: int) -> None:
        """Records of `tp` behind the end of the partition, seen from `position`."""
        assert self.consumer is not None
        try:
            highwater = self.consumer.highwater(tp)
        except AssertionError:  # revoked a moment ago
            return
        if highwater is not None:
            metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
