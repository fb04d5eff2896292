"""The faust application: its settings, topics and agents (ingest, ticks, pipeline).

Agents stay thin: decode, call the shared logic (`Ingestor`, the pure core), encode, send.
The app is built by a factory from `Settings`; nothing here is a module-level global.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer
from faust.types import TP
from faust.types.auth import AuthProtocol

from refstream.replay.archive import ArchiveWriter, archive_log_records
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import Tick
from refstream.streams.checkpoint import CheckpointStore
from refstream.streams.ingest import (
    Accepted,
    Duplicate,
    EventTimeBounds,
    Ingestor,
    MergeMetrics,
    Rejected,
    ShopTopics,
    SourceRef,
)
from refstream.streams.log_range import read_log_range
from refstream.streams.merge import EventTimeMerge
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.pipeline_runtime import (
    CatchUp,
    OffsetGate,
    PipelineRuntime,
)
from refstream.streams.pipeline_stage import PipelineStage
from refstream.streams.schema_registry import worker_codec
from refstream.streams.settings import DEVELOPMENT_PII_SECRET, Settings
from refstream.streams.supervision import CrashPolicy
from refstream.streams.topics import TopicNames
from refstream.streams.vault import pseudonymiser_from_settings

log = logging.getLogger("refstream.streams")


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """faust credentials for the configured security protocol (None for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = settings.ssl_context()
    if settings.security_protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
        credentials.protocol = (
            AuthProtocol.SASL_SSL if context is not None else AuthProtocol.SASL_PLAINTEXT
        )
        return credentials
    return faust.SSLCredentials(context)


class IdempotentProducer(AIOKafkaDriverProducer):
    """faust's aiokafka producer with idempotence on: a batch re-sent after a lost
    acknowledgement (broker restart, leader change) is written once, in order. faust turns
    it on only inside its exactly-once transactions, which refstream does not use."""

    def _settings_extra(self) -> Any:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class RefstreamApp(faust.App):
    """A faust app whose producer is idempotent and whose crashed agents are not ignored:
    faust logs a crash and keeps the process up (a zombie that still answers health checks);
    `crash_policy` records it and ends the process instead."""

    crash_policy: CrashPolicy | None = None

    def _new_producer(self) -> Any:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await super()._on_agent_error(agent, exc)
        if self.crash_policy is not None:
            await self.crash_policy.on_agent_error(agent, exc)


@dataclass
class QuietShops:
    """When each shop's last event was appended, in event time and in wall time."""

    last_event_ms: dict[str, int] = field(default_factory=dict)
    last_wall_s: dict[str, float] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)

    def saw(self, shop_id: str, occurred_at: int, wall_s: float, partition: int) -> None:
        if occurred_at >= self.last_event_ms.get(shop_id, occurred_at):
            self.last_event_ms[shop_id] = occurred_at
        self.last_wall_s[shop_id] = wall_s
        self.partition_of[shop_id] = partition

    def forget_partitions(self, partitions: set[int]) -> None:
        """Shops whose partition moved to another worker are that worker's to tick."""
        for shop_id in [s for s, p in self.partition_of.items() if p in partitions]:
            del self.last_event_ms[shop_id], self.last_wall_s[shop_id], self.partition_of[shop_id]

    def due_ticks(self, wall_s: float, interval_s: float) -> list[tuple[str, int]]:
        """(shop, stream time to announce) for shops quiet for at least one interval.

        Time keeps passing for a quiet live shop: the tick carries the wall-clock time, and
        never less than the shop's latest event time, so stream time never goes backwards.
        """
        wall_ms = int(wall_s * 1000)
        return [(shop_id, max(self.last_event_ms[shop_id], wall_ms))
                for shop_id in sorted(self.last_wall_s)
                if wall_s - self.last_wall_s[shop_id] >= interval_s]


def on_partitions(signal: Any, handler: Callable[[set[TP]], Awaitable[None]]) -> None:
    """Connect `handler(partitions)` to faust's on_partitions_assigned/revoked signal."""

    async def receiver(sender: Any, *args: Any, **kwargs: Any) -> None:
        await handler(set(args[0]) if args else set())

    signal.connect(receiver)


async def send(app: faust.App, topic: str, key: bytes | None, value: bytes) -> None:
    """Hand a record to the producer (it batches; `app.producer.flush()` awaits delivery).

    faust's Topic.send wraps every record in channel and future bookkeeping that costs more
    than the pipeline's own work; the bytes are already encoded, so go to the producer.
    """
    await app.producer.send(topic, key, value, None, None, None)


def raw_topic(app: faust.App, *names: str) -> Any:
    # Bytes in, bytes out: serialization belongs to refstream.schemas, not to faust.
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", internal=False)


@dataclass
class WorkerContext:
    """What the agents of one worker share: settings, codec, metrics, health."""

    settings: Settings
    names: TopicNames
    codec: Codec
    metrics: WorkerMetrics
    health: Health
    crash: CrashPolicy


async def gap_records(context: WorkerContext, agent: str, topic: str, partition: int,
                      gap: CatchUp, *, still_owned: Callable[[], bool]
                      ) -> AsyncIterator[list[Any]]:
    """Batches of the log records an agent's state lacks (`gap`), read with a consumer of
    its own, for as long as the agent still owns the partition: once it was revoked
    meanwhile, its next owner (maybe this worker again) starts from its own checkpoint."""
    log.info("%s, log partition %d: state at offset %d, consumer at %d; reading the %d "
             "records between from the log", agent, partition, gap.start, gap.stop,
             gap.stop - gap.start)
    async for records in read_log_range(context.settings, topic, partition, gap.start,
                                        gap.stop):
        if not still_owned():
            return
        yield records
        context.metrics.caught_up.inc(len(records))


def build_app(settings: Settings, rules: Rules | None = None, *, with_ingest: bool = True,
              archive_dir: Path | None = None, metrics: WorkerMetrics | None = None,
              health: Health | None = None, crash: CrashPolicy | None = None) -> faust.App:
    """The faust app with the agents this worker runs (the pipeline needs `rules`)."""
    if settings.pii_secret.get_secret_value() == DEVELOPMENT_PII_SECRET:
        log.warning("running with the development PII secret; set REFSTREAM_PII_SECRET")
    app = RefstreamApp(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=False,
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # faust's default linger of 0 sends one tiny request per message and waits for each
        # acknowledgement: ~1k messages/s. A few milliseconds let requests carry batches.
        producer_linger=0.01,
        producer_max_batch_size=512 * 1024,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        stream_wait_empty=False,
        broker_commit_every=1000,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
        broker_commit_interval=1.0,
    )
    metrics = metrics or WorkerMetrics()
    health = health or Health()
    context = WorkerContext(settings, TopicNames.from_settings(settings), worker_codec(settings),
                            metrics, health, crash or CrashPolicy(health, metrics))
    app.crash_policy = context.crash

    # Not ready while a rebalance moves partitions; ready again once they are assigned.
    async def _revoked_all(revoked: set[TP]) -> None:
        context.health.ready.clear()

    async def _assigned(assigned: set[TP]) -> None:
        context.health.ready.set()

    on_partitions(app.on_partitions_revoked, _revoked_all)
    on_partitions(app.on_partitions_assigned, _assigned)

    if with_ingest:
        _register_ingest(app, context)
    if rules is not None:
        _register_pipeline(app, context, rules)
    if archive_dir is not None:
        _register_archiver(app, context, archive_dir)
    if rules is not None and not with_ingest and archive_dir is None:
        # Only the pipeline stage, which reads with a consumer of its own: faust's consumer
        # would subscribe to nothing, which its conductor refuses. faust's documented startup
        # strategy leaves it (and its conductor and tables) out. The stage measures its own
        # lag; faust's consumer has none to measure.
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    else:
        _register_lag(app, context)
    return app


def _register_lag(app: faust.App, context: WorkerContext) -> None:
    # The pipeline sets its log lag from its own state at each checkpoint (more exact than
    # the group's position, which may run ahead of the state).
    pipeline = getattr(app, "refstream_runtime", None) is not None
    register_lag(app, context.metrics.lag, max(1.0, context.settings.checkpoint_interval_s),
                 skip_topic=context.names.log if pipeline else None)


def register_lag(app: faust.App, lag: Any, interval_s: float, *,
                 skip_topic: str | None = None) -> None:
    """Every `interval_s`, records behind the end of every topic partition the app's
    consumer is assigned (`lag` is a gauge labelled topic, partition)."""

    async def _revoked(revoked: set[TP]) -> None:
        for tp in revoked:
            with contextlib.suppress(KeyError):
                lag.remove(tp.topic, str(tp.partition))

    on_partitions(app.on_partitions_revoked, _revoked)

    @app.timer(interval=interval_s)
    async def measure_lag() -> None:
        consumer = app.consumer
        for tp in sorted(consumer.assignment()):
            if tp.topic == skip_topic:
                continue
            highwater = assigned_highwater(consumer, tp)
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except TimeoutError:
                continue  # the broker does not answer; keep the last figure
            if highwater is not None and position is not None:
                lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


def assigned_highwater(consumer: Any, tp: TP) -> int | None:
    """The partition's high watermark, or None when it is not (or no longer) assigned here.

    A rebalance can revoke a partition between listing it and asking: aiokafka answers that
    with an AssertionError, which inside a checkpoint or a timer would crash the agent.
    """
    if tp not in consumer.assignment():
        return None
    try:
        highwater = consumer.highwater(tp)
    except AssertionError:  # revoked in between
        return None
    return int(highwater) if highwater is not None else None


def _register_ingest(app: faust.App, context: WorkerContext) -> None:
    settings, names, codec, metrics = (context.settings, context.names, context.codec,
                                       context.metrics)
    own_topics = ShopTopics(names.shop_prefix, frozenset(settings.shop_principals.values()))
    ingestor = Ingestor(
        codec,
        pseudonymiser_from_settings(settings),
        frozenset(settings.known_shops),
        settings.max_event_bytes,
        event_time_bounds=EventTimeBounds.from_settings(settings),
        shop_topics=own_topics,
    )
    source = raw_topic(app, *names.shop_topics,
                       *names.own_shop_topics(own_topics.own_topic_shops))
    quiet = QuietShops()
    # A shop's topics are co-partitioned (same key, same partition count; faust assigns them
    # together), so partition p of each is merged by event time. A record is acknowledged
    # (so its offset committed) only once it, and every record before it in its
    # topic-partition, left the merge: whatever is still buffered is read again after a crash.
    merge: EventTimeMerge[Any] = EventTimeMerge(
        settings.merge_idle_s, lambda topic, partition: (own_topics.topic_shop(topic), partition))
    merge_metrics = MergeMetrics.register(metrics.registry)
    merge_lock = asyncio.Lock()
    streams: list[Any] = []

    @app.agent(source, name="refstream.ingest", concurrency=1)
    async def ingest(stream: Any) -> None:
        streams[:] = [stream]
        async for batch in stream.noack_take(2000, within=settings.ingest_batch_s):
            async with merge_lock:
                now = time.monotonic()
                for event in batch:
                    await _ingest_one(event, now)
                await _release(stream, time.monotonic())

    async def _ingest_one(event: Any, now: float) -> None:
        message = event.message
        tp = (message.topic, message.partition)
        if not merge.owns(tp):
            return  # fetched before its partition moved away: the next owner reads it again
        ref = SourceRef(message.topic, message.partition, message.offset)
        outcome = ingestor.accept(message.value, ref, names.event_type_of(message.topic),
                                  now_ms=int(time.time() * 1000))
        metrics.events_in.labels(message.topic).inc()
        match outcome:
            case Accepted(log_event):
                merge.push(tp, message.offset, (event, log_event), now,
                           shop=log_event.shop_id, occurred_at=log_event.occurred_at)
                return
            case Duplicate():
                metrics.duplicates.inc()
            case Rejected(dead_letter):
                metrics.dead_letters.inc()
                log.warning("dead letter from %s[%d]@%d: %s", ref.topic, ref.partition,
                            ref.offset, dead_letter.error[:300])
                await send(app, names.dlq, message.key, codec.encode(dead_letter))
        merge.push(tp, message.offset, (event, None), now)

    async def _release(stream: Any, now: float) -> None:
        wall = time.time()
        batch = merge.release(now)
        for released in batch.appends:
            _, log_event = released.item
            merge_metrics.appended(released.tp[1], released.shop, released.occurred_at,
                                   released.waited_out, settings.allowed_lateness_s)
            quiet.saw(released.shop, released.occurred_at, wall, released.tp[1])
            await send(app, names.log, released.shop.encode(), codec.encode(log_event))
            metrics.events_out.labels(names.log).inc()
        for event, _ in batch.acks:
            await stream.ack(event)
        merge_metrics.buffered.set(merge.buffered)

    @app.timer(interval=max(0.05, min(0.25, settings.merge_idle_s / 4)))
    async def release_waited_out() -> None:
        # noack_take yields only when records come in; a co-partition that waited out its
        # bound while nothing arrived is released here.
        if streams and merge.buffered:
            async with merge_lock:
                await _release(streams[0], time.monotonic())

    async def _merge_assigned(assigned: set[TP]) -> None:
        merge.assign((tp.topic, tp.partition) for tp in assigned if tp.topic in source.topics)

    async def _merge_revoked(revoked: set[TP]) -> None:
        async with merge_lock:
            for _, log_event in merge.revoke((tp.topic, tp.partition) for tp in revoked):
                if log_event is not None:
                    ingestor.forget(log_event)
            merge_metrics.forget({tp.partition for tp in revoked if tp.topic in source.topics})

    on_partitions(app.on_partitions_assigned, _merge_assigned)
    on_partitions(app.on_partitions_revoked, _merge_revoked)

    if settings.tick_interval_s <= 0:
        return  # backfills switch ticks off, so history is not stamped with today's time

    @app.timer(interval=settings.tick_interval_s)
    async def tick_quiet_shops() -> None:
        now = time.time()
        for shop_id, stream_time in quiet.due_ticks(now, settings.tick_interval_s):
            tick = Tick(f"tick:{shop_id}:{stream_time}", shop_id, stream_time)
            await send(app, names.log, shop_id.encode(), codec.encode(tick))
            quiet.saw(shop_id, stream_time, now, quiet.partition_of[shop_id])
            metrics.ticks.inc()

    async def _revoked(revoked: set[TP]) -> None:
        quiet.forget_partitions({tp.partition for tp in revoked if tp.topic in names.shop_topics})

    on_partitions(app.on_partitions_revoked, _revoked)


def _register_pipeline(app: faust.App, context: WorkerContext, rules: Rules) -> None:
    """The pipeline stage is a service of the app with a consumer of its own, not an agent:
    it takes the log a fetch batch at a time beneath faust's per-message machinery
    (streams/pipeline_stage.py says why). faust starts and stops it with the app."""
    settings, names = context.settings, context.names
    store = CheckpointStore(settings.data_dir / "checkpoints.sqlite")
    runtime = PipelineRuntime(rules, context.codec, store, names)

    def gaps(partition: int, gap: CatchUp, still_owned: Callable[[], bool]
             ) -> AsyncIterator[list[Any]]:
        return gap_records(context, "pipeline", names.log, partition, gap,
                           still_owned=still_owned)

    stage = PipelineStage(settings, runtime, context.metrics, context.health, gaps,
                          crash=context.crash)
    app.add_dependency(stage)
    app.refstream_runtime = runtime  # type: ignore[attr-defined]


def _register_archiver(app: faust.App, context: WorkerContext, root: Path) -> None:
    names, codec = context.names, context.codec
    writer = ArchiveWriter(root)
    gates: dict[int, OffsetGate] = {}
    log_topic = raw_topic(app, names.log)
    flush_every_s = context.settings.checkpoint_interval_s

    async def _revoked(revoked: set[TP]) -> None:
        # The next owner archives from the last commit; our unflushed tail would overlap it.
        lost = {tp.partition for tp in revoked if tp.topic == names.log}
        writer.forget(lost)
        for partition in lost:
            gates.pop(partition, None)

    on_partitions(app.on_partitions_revoked, _revoked)

    @app.agent(log_topic, name="refstream.archiver", concurrency=1)
    async def archiver(stream: Any) -> None:
        last_flush = time.monotonic()
        async for batch in stream.take_events(5000, within=1.0):
            for event in batch:
                message = event.message
                partition = message.partition
                gate = gates.get(partition)
                if gate is None:
                    gate = gates[partition] = OffsetGate(writer.next_offset(partition))
                verdict = gate.admit(message.offset)
                if isinstance(verdict, CatchUp):
                    await _catch_up(message.topic, partition, gate, verdict)
                    verdict = gate.admit(message.offset)
                if verdict is None:
                    archive_log_records(writer, codec, iter([(
                        partition, message.offset, int(message.timestamp * 1000),
                        message.value)]))
            if writer.buffered and time.monotonic() - last_flush >= flush_every_s:
                writer.flush()
                last_flush = time.monotonic()

    async def _catch_up(topic: str, partition: int, gate: OffsetGate, gap: CatchUp) -> None:
        async for records in gap_records(context, "archiver", topic, partition, gap,
                                         still_owned=lambda: gates.get(partition) is gate):
            archive_log_records(writer, codec, (
                (partition, record.offset, record.timestamp, record.value)
                for record in records if gate.admit(record.offset) is None))

    @app.timer(interval=flush_every_s)
    async def flush_archive_when_idle() -> None:
        if writer.buffered:
            writer.flush()

