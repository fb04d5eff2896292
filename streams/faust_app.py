"""The faust application: its settings and the stages it starts (ingest, pipeline, archiver).

faust is the application (worker, signals, startup and shutdown, producer, crash handling);
each stage is a service with a consumer of its own, added with `app.add_dependency`. The app
is built by a factory from `Settings`; nothing here is a module-level global.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from faust.transport.drivers.aiokafka import Producer as AIOKafkaDriverProducer
from faust.types import TP
from faust.types.auth import AuthProtocol

from refstream.persistence.archive import ArchiveWriter
from refstream.persistence.checkpoint import CheckpointStore
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.streams.archive_stage import ArchiveStage
from refstream.streams.handoff import AppendedEvents
from refstream.streams.ingest import (
    EventTimeBounds,
    Ingestor,
    ShopTopics,
    pseudonymiser_from_settings,
)
from refstream.streams.ingest_stage import IngestStage
from refstream.streams.log_range import read_log_range
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.pipeline_runtime import (
    CatchUp,
    PipelineRuntime,
)
from refstream.streams.pipeline_stage import PipelineStage
from refstream.streams.reachable import PatientProducer
from refstream.streams.schema_registry import worker_codec
from refstream.streams.settings import DEVELOPMENT_PII_SECRET, Settings
from refstream.streams.supervision import CrashPolicy
from refstream.streams.topics import TopicNames

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

    @property
    def _producer_type(self) -> Any:
        # faust's hook for the aiokafka class it builds: one that waits for a broker that
        # restarts while the worker starts, as the stages' own clients do.
        app: RefstreamApp = self.app  # type: ignore[assignment]
        return functools.partial(PatientProducer, start_bound_s=app.client_timeout_s)


class RefstreamApp(faust.App):
    """A faust app whose producer is idempotent and whose crashed agents are not ignored:
    faust logs a crash and keeps the process up (a zombie that still answers health checks);
    `crash_policy` records it and ends the process instead."""

    crash_policy: CrashPolicy | None = None
    # How long its producer's start waits for a broker (REFSTREAM_CLIENT_TIMEOUT_S; the
    # builders set it from their settings).
    client_timeout_s: float = Settings.model_fields["client_timeout_s"].default

    def _new_producer(self) -> Any:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await super()._on_agent_error(agent, exc)
        if self.crash_policy is not None:
            await self.crash_policy.on_agent_error(agent, exc)


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
    # Ingest and the pipeline in this one process: the events ingest appended, by their
    # bytes, which the pipeline takes instead of decoding them (streams/handoff.py).
    handoff: AppendedEvents | None = None


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
              with_pipeline: bool = True, archive_dir: Path | None = None,
              metrics: WorkerMetrics | None = None,
              health: Health | None = None, crash: CrashPolicy | None = None) -> faust.App:
    """The faust app with the stages this worker runs (the pipeline needs `rules`; ingest
    takes their allowed lateness, or none without them)."""
    if with_ingest and settings.pii_secret.get_secret_value() == DEVELOPMENT_PII_SECRET:
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
                            metrics, health, crash or CrashPolicy(health, metrics),
                            AppendedEvents() if with_ingest and with_pipeline and rules
                            is not None else None)
    app.crash_policy = context.crash
    app.client_timeout_s = settings.client_timeout_s

    if with_ingest:
        _register_ingest(app, context,
                         rules.event_time.allowed_lateness_ms if rules is not None else 0)
    if rules is not None and with_pipeline:
        _register_pipeline(app, context, rules)
    if archive_dir is not None:
        _register_archiver(app, context, archive_dir)
    # Every stage reads with a consumer of its own: faust's consumer would subscribe to
    # nothing, which its conductor refuses. faust's documented startup strategy leaves it
    # (and its conductor and tables) out. The stages measure their own lag and readiness.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    return app


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


def _register_ingest(app: faust.App, context: WorkerContext, allowed_lateness_ms: int) -> None:
    """The ingest stage is a service of the app with a consumer of its own, like the
    pipeline stage (streams/ingest_stage.py says why). faust starts and stops it."""
    settings, names = context.settings, context.names
    own_topics = ShopTopics(names.shop_prefix, frozenset(settings.shop_principals.values()))
    ingestor = Ingestor(
        context.codec,
        pseudonymiser_from_settings(settings),
        frozenset(settings.known_shops),
        settings.max_event_bytes,
        event_time_bounds=EventTimeBounds.from_settings(settings),
        shop_topics=own_topics,
    )
    topics = [*names.shop_topics, *names.own_shop_topics(own_topics.own_topic_shops)]
    app.add_dependency(IngestStage(
        settings, names, context.codec, ingestor, topics=topics,
        topic_shop=own_topics.topic_shop, allowed_lateness_ms=allowed_lateness_ms,
        metrics=context.metrics, health=context.health,
        crash=context.crash, handoff=context.handoff))


def _register_pipeline(app: faust.App, context: WorkerContext, rules: Rules) -> None:
    """The pipeline stage is a service of the app with a consumer of its own, not an agent:
    it takes the log a fetch batch at a time beneath faust's per-message machinery
    (streams/pipeline_stage.py says why). faust starts and stops it with the app."""
    settings, names = context.settings, context.names
    store = CheckpointStore(settings.data_dir / "checkpoints.sqlite")
    runtime = PipelineRuntime(rules, context.codec, store, names, handoff=context.handoff)

    def gaps(partition: int, gap: CatchUp, still_owned: Callable[[], bool]
             ) -> AsyncIterator[list[Any]]:
        return gap_records(context, "pipeline", names.log, partition, gap,
                           still_owned=still_owned)

    stage = PipelineStage(settings, runtime, context.metrics, context.health, gaps,
                          crash=context.crash)
    app.add_dependency(stage)
    app.refstream_runtime = runtime  # type: ignore[attr-defined]


def _register_archiver(app: faust.App, context: WorkerContext, root: Path) -> None:
    """The archive stage is a service of the app with a consumer of its own
    (streams/archive_stage.py)."""
    names = context.names

    def gaps(partition: int, gap: CatchUp, still_owned: Callable[[], bool]
             ) -> AsyncIterator[list[Any]]:
        return gap_records(context, "archiver", names.log, partition, gap,
                           still_owned=still_owned)

    app.add_dependency(ArchiveStage(context.settings, names.log, context.codec,
                                    ArchiveWriter(root), metrics=context.metrics,
                                    gap_reader=gaps, crash=context.crash))
