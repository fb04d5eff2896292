"""Helpers for tests against the real broker: isolated topic sets, worker processes, reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from refstream.deploy.kafka_launcher import free_port
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames

TEST_SECRET = "integration-test-secret-0123456789"


def isolated_settings(bootstrap: str, data_dir: Path, partitions: int = 3,
                      **extra: Any) -> Settings:
    """Settings whose topics and group no other test shares."""
    tag = uuid.uuid4().hex[:8]
    return Settings(kafka_bootstrap=bootstrap, topic_prefix=f"rs{tag}",
                    shop_topic_prefix=f"shop{tag}", app_id=f"refstream-{tag}",
                    partitions=partitions, data_dir=data_dir,
                    pii_secret=TEST_SECRET, **extra)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "REFSTREAM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "REFSTREAM_TOPIC_PREFIX": settings.topic_prefix,
        "REFSTREAM_SHOP_TOPIC_PREFIX": settings.shop_topic_prefix,
        "REFSTREAM_APP_ID": settings.app_id,
        "REFSTREAM_PARTITIONS": str(settings.partitions),
        "REFSTREAM_DATA_DIR": str(settings.data_dir),
        "REFSTREAM_PII_SECRET": settings.pii_secret.get_secret_value(),
        "REFSTREAM_KNOWN_SHOPS": json.dumps(settings.known_shops),
        "REFSTREAM_TICK_INTERVAL_S": str(settings.tick_interval_s),
        "REFSTREAM_CHECKPOINT_INTERVAL_S": str(settings.checkpoint_interval_s),
        "REFSTREAM_SESSION_TIMEOUT_S": str(settings.session_timeout_s),
        "REFSTREAM_EVENT_LOOP": settings.event_loop,
        "REFSTREAM_FETCH_MAX_PARTITION_BYTES": str(settings.fetch_max_partition_bytes),
        # how long a start waits for a broker (the chaos test's restarts need minutes)
        "REFSTREAM_CLIENT_TIMEOUT_S": str(settings.client_timeout_s),
    }
    return env


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.2) -> None:
    try:
        Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(interval),
                 retry=retry_if_result(lambda done: not done))(condition)
    except RetryError:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}") from None


def partitions_of(consumer: KafkaConsumer, topic: str, timeout: float) -> set[int]:
    """The topic's partitions, once the consumer's metadata knows the topic."""
    try:
        return set(Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(0.2),
                            retry=retry_if_result(lambda found: found is None),
                            )(consumer.partitions_for_topic, topic))
    except RetryError:
        raise AssertionError(f"topic {topic} does not exist") from None


@dataclass
class WorkerProcess:
    """A `refstream worker` in its own process, as an operator would run it."""

    settings: Settings
    args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> WorkerProcess:
        """Start the worker; with `wait`, return once it is ready."""
        env = {**os.environ, **settings_env(self.settings),
               "REFSTREAM_METRICS_PORT": str(self.metrics_port)}
        log_path = self.log_path or self.settings.data_dir / f"worker-{self.metrics_port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        with log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "refstream.cli", "worker", "--loglevel", "info",
                 *self.args],
                env=env, stdout=log_file, stderr=subprocess.STDOUT)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        wait_for(self.ready, timeout, f"worker readiness (log: {self.log_path})")

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}",
                                        timeout=2) as reply:
                return reply.status, reply.read().decode()
        except OSError as exc:
            status = getattr(exc, "code", 0)
            return int(status or 0), ""

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}: "
                                 f"{self.log_tail()}")
        return self._get("/readyz")[0] == 200

    def metrics(self) -> str:
        return self._get("/metrics")[1]

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the test fails if shutdown does not really end."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"worker ignored SIGTERM for {timeout}s: {self.log_tail()}") from exc
        # An exit that left extension objects alive (the frozen heap once kept duckdb's)
        # writes a leak report of a hundred lines or more into every stopped worker's log.
        assert self.log_path is not None
        assert "nanobind: leaked" not in self.log_path.read_text(errors="replace"), (
            f"a leak report in {self.log_path}")
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


def _from_the_start(consumer: KafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
    """Assign every partition of `topic` to `consumer`, positioned at its start."""
    tps = [TopicPartition(topic, p) for p in sorted(partitions_of(consumer, topic, timeout))]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    return tps


def read_topic(bootstrap: str, topic: str, *, expect: int | None = None,
               timeout: float = 60.0, settle: float = 0.0) -> list[Any]:
    """Every record of `topic` (all partitions, from offset 0), waiting for `expect` of them."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=500, max_partition_fetch_bytes=32 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    try:
        deadline = time.monotonic() + timeout
        _from_the_start(consumer, topic, timeout)
        records: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=300)
            for tp_records in batch.values():
                records.extend(tp_records)
            if batch:
                quiet_since = time.monotonic()
            done = expect is None or len(records) >= expect
            if done and time.monotonic() - quiet_since >= settle:
                break
        if expect is not None:
            assert len(records) >= expect, (
                f"{topic}: {len(records)} records after {timeout}s, expected {expect}")
        return records
    finally:
        consumer.close()


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames.from_settings(settings)


def read_to_end(bootstrap: str, topic: str, *, timeout: float = 60.0) -> list[Any]:
    """Every record of `topic` from its start to the end offsets it had when the read
    began (all partitions): no quiet period to guess, so a slow first fetch (a broker that
    just restarted) cannot end the read early."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_partition_fetch_bytes=32 * 1024 * 1024,
                             fetch_max_bytes=64 * 1024 * 1024)
    try:
        deadline = time.monotonic() + timeout
        tps = _from_the_start(consumer, topic, timeout)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        while pending:
            assert time.monotonic() < deadline, (
                f"{topic}: not read to its end within {timeout:.0f}s "
                f"({len(records)} records so far)")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(r for r in batch if r.offset < ends[tp])
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
        return records
    finally:
        consumer.close()


async def _forward(host: str, port: int, reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
    """Copy bytes both ways between a client and the broker until either side closes."""
    upstream_reader, upstream_writer = await asyncio.open_connection(host, port)

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def late_broker(listen_port: int, bootstrap: str, after_s: float) -> asyncio.Server:
    """After `after_s` (nothing listens on `listen_port` before), forward it to the broker: a
    broker restarting, for clients that bootstrap through `listen_port`."""
    await asyncio.sleep(after_s)
    host, port = bootstrap.split(",", maxsplit=1)[0].rsplit(":", 1)
    return await asyncio.start_server(
        lambda r, w: _forward(host, int(port), r, w), "127.0.0.1", listen_port)
