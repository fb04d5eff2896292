"""The live projector: the log and derived topics into DuckDB, and a published snapshot.

DuckDB allows one writer per file, so the projector owns its database and analysts read a
copy it publishes every few seconds (written beside the target and renamed over it, so a
reader opens either the old or the new snapshot, never a half-written one). It is a faust
app of its own (its own consumer group), because one process must see every partition.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import faust

from refstream.persistence.store import ProjectionStore
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.streams.faust_app import RefstreamApp, broker_credentials, raw_topic, register_lag
from refstream.streams.schema_registry import reader_codec
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames

log = logging.getLogger("refstream.projector")
META_TABLE = "refstream_meta"


class Projector:
    """Decodes records into the store, flushes micro-batches and publishes snapshots."""

    def __init__(self, store: ProjectionStore, codec: Codec, names: TopicNames,
                 snapshot_path: Path | None, publish_every_s: float) -> None:
        self.store, self.codec, self.names = store, codec, names
        self.snapshot_path = snapshot_path
        self.publish_every_s = publish_every_s
        self.last_publish = 0.0
        self.records = 0
        store.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value DOUBLE)")

    def add(self, topic: str, value: bytes | None) -> None:
        self.records += 1
        if topic == self.names.log:
            event = self.codec.decode_log_event(value)
            if event is not None:
                self.store.add(event)
        elif value:
            self.store.add(self.codec.decode(value))

    def flush(self) -> None:
        self.store.flush()
        if self.snapshot_path is not None and (
                time.monotonic() - self.last_publish >= self.publish_every_s):
            self.publish()

    def publish(self) -> None:
        assert self.snapshot_path is not None
        self.store.connection.execute(
            f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('published_at', ?), ('records', ?)",
            [time.time(), float(self.records)])
        self.store.publish(self.snapshot_path)
        self.last_publish = time.monotonic()


def run_projector(settings: Settings, rules: Rules, db_path: Path, snapshot_path: Path | None,
                  publish_every_s: float, *, loglevel: str) -> int:
    """`refstream projector` until SIGTERM: metrics, /healthz and /readyz on the metrics
    port (as the worker), a crashed agent ends it with exit 1, a stuck shutdown is cut off."""
    from refstream.streams.metrics import ProcessMetrics
    from refstream.streams.supervision import configure_logging, run_supervised

    configure_logging(loglevel)
    metrics = ProcessMetrics()
    return run_supervised(settings, metrics, loglevel, lambda health, crash: build_projector_app(
        settings, rules, db_path, snapshot_path, publish_every_s,
        metrics=metrics, health=health, crash=crash))


def build_projector_app(settings: Settings, rules: Rules, db_path: Path,
                        snapshot_path: Path | None, publish_every_s: float, *,
                        metrics: Any = None, health: Any = None,
                        crash: Any = None) -> faust.App:
    app = RefstreamApp(
        f"{settings.app_id}-projector",
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        topic_disable_leader=True, topic_allow_declare=False, web_enabled=False,
        store="memory://", datadir=str(settings.data_dir / "faust-projector"),
        consumer_auto_offset_reset="earliest", stream_wait_empty=False, producer_linger=0.01,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.session_timeout_s / 5,
    )
    app.crash_policy = crash
    app.client_timeout_s = settings.client_timeout_s
    names = TopicNames.from_settings(settings)
    store = ProjectionStore(db_path)
    store.write_campaigns(rules)
    projector = Projector(store, reader_codec(settings), names, snapshot_path, publish_every_s)
    source = raw_topic(app, names.log, names.attributions, names.fraud_flags, names.rewards,
                       names.reward_due)

    # Upserts are idempotent (facts: first write wins; derived state: latest message per id),
    # so at-least-once delivery after a restart converges to the same tables.
    @app.agent(source, name="refstream.projector", concurrency=1)
    async def project(stream: Any) -> None:
        async for batch in stream.take_events(5000, within=0.5):
            for event in batch:
                projector.add(event.message.topic, event.message.value)
                if metrics is not None:
                    metrics.events_in.labels(event.message.topic).inc()
            projector.flush()

    if metrics is not None:
        register_lag(app, metrics.lag, 2.0)
    if health is not None:
        async def _assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
            health.assigned("projector")

        assigned: Any = app.on_partitions_assigned
        assigned.connect(_assigned)

    @app.timer(interval=max(publish_every_s, 0.5))
    async def publish_when_idle() -> None:
        projector.flush()

    async def _close(sender: Any, *args: Any, **kwargs: Any) -> None:
        projector.flush()
        if snapshot_path is not None:
            projector.publish()
        store.close()
        log.info("projector closed %s after %d records", db_path, projector.records)

    before_shutdown: Any = app.on_before_shutdown
    before_shutdown.connect(_close)
    return app
