"""Health means health: an agent that crashes (here: the pipeline finds its log truncated
below the state it needs, LogGapError) makes readiness and liveness fail and the worker
exit 1 after logging why, instead of staying up as a zombie that answers 200."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from refstream.deploy.kafka_launcher import free_port
from refstream.schemas.codec import Codec
from refstream.schemas.events import Tick
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import isolated_settings, settings_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.failure]
CODEC = Codec()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return int(reply.status)
    except OSError as exc:
        return int(getattr(exc, "code", 0) or 0)


def test_a_crashed_agent_fails_readiness_and_ends_the_worker_non_zero(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state", partitions=1,
                                 tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    # Ten log records, then the first five deleted: what `erase --truncate-topic` does to
    # a log whose archive a worker without a checkpoint never saw.
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for second in range(10):
        tick = Tick(f"tick:shop-1:{second}", "shop-1", 1_760_000_000_000 + second * 1000)
        producer.send(names.log, key=b"shop-1", value=CODEC.encode(tick), partition=0)
    producer.flush(timeout=30)
    producer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(names.log, 0): 5})
    finally:
        admin.close()

    port = free_port()
    log_path = tmp_path / "worker.log"
    env = {**os.environ, **settings_env(settings), "REFSTREAM_METRICS_PORT": str(port)}
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "refstream.cli", "worker", "--no-ingest",
             "--loglevel", "info"], env=env, stdout=log_file, stderr=subprocess.STDOUT)
    statuses: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 120
        while worker.poll() is None and time.monotonic() < deadline:
            statuses.append((_status(port, "/healthz"), _status(port, "/readyz")))
            time.sleep(0.05)
        code = worker.wait(timeout=5)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    log_text = log_path.read_text(errors="replace")
    assert code == 1, f"exit code {code}, expected 1:\n{log_text[-3000:]}"
    assert "agent refstream.pipeline crashed: LogGapError" in log_text, log_text[-3000:]
    assert "starts at offset 5" in log_text  # the reason, with what to do, is in the log
    # It never claimed to be ready with a crashed pipeline.
    assert (200, 200) not in statuses[-5:], statuses[-20:]


def test_readiness_follows_the_broker_probe(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Readiness also needs the broker: pointed at a port where no broker listens, a
    worker's /readyz says so (and the worker still answers /healthz)."""
    from refstream.streams.metrics import Health, WorkerMetrics, serve_http, watch_broker
    from refstream.streams.supervision import BrokerProbe

    settings = isolated_settings(f"127.0.0.1:{free_port()}", tmp_path, client_timeout_s=4)
    metrics, health = WorkerMetrics(), Health()
    health.ready.set()  # partitions assigned; only the broker probe can say no
    server = serve_http(metrics, health, "127.0.0.1", 0)
    try:
        watch_broker(BrokerProbe(settings, 1.0), health, metrics, 0.5)
        wait_for(lambda: _status(server.server_port, "/readyz") == 503, 30,
                 "readiness to fail without a broker")
        assert _status(server.server_port, "/healthz") == 200
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{server.server_port}/metrics", timeout=2).read().decode()
        assert "refstream_broker_reachable 0.0" in body
        # The same probe against the real broker: ready.
        good = BrokerProbe(settings.model_copy(update={"kafka_bootstrap": kafka_bootstrap}),
                           5.0)
        good()
        good.close()
    finally:
        health.stopping.set()
        server.shutdown()


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


def _has_series(port: int, name: str, **labels: str) -> bool:
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return any(line.startswith(name + "{") and all(w in line for w in wanted)
               for line in _metrics(port).splitlines())


def test_every_long_running_process_exports_metrics_and_lag_per_topic_partition(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    from refstream.streams.producer import publish_shop_events
    from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
    from tests.integration.kafka_helpers import WorkerProcess

    settings = isolated_settings(kafka_bootstrap, tmp_path / "state", partitions=2,
                                 tick_interval_s=0, checkpoint_interval_s=1.0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    worker = WorkerProcess(settings).start()
    ports = {"projector": free_port(), "finance-tail": free_port()}
    commands = {
        "projector": ["projector", "--db", str(tmp_path / "live.duckdb")],
        "finance-tail": ["finance-tail", "--ledger", str(tmp_path / "ledger.sqlite"),
                         "--group", f"{settings.app_id}-finance", "--quiet"],
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "refstream.cli", *command],
            env={**os.environ, **settings_env(settings),
                 "REFSTREAM_METRICS_PORT": str(ports[name])},
            stdout=subprocess.DEVNULL, stderr=(tmp_path / f"{name}.log").open("wb"))
        for name, command in commands.items()}
    try:
        events = list(iter_shop_events(SyntheticConfig(seed=5, shops=2, customers_per_shop=60,
                                                       days=10)))
        publish_shop_events(settings, events)
        click = names.shop("click")
        for partition in ("0", "1"):
            wait_for(lambda p=partition: _has_series(worker.metrics_port,
                                                     "refstream_consumer_lag",
                                                     topic=click, partition=p),
                     60, f"ingest lag of {click}[{partition}]")
            wait_for(lambda p=partition: _has_series(worker.metrics_port,
                                                     "refstream_consumer_lag",
                                                     topic=names.log, partition=p),
                     60, f"pipeline lag of {names.log}[{partition}]")
        wait_for(lambda: _has_series(ports["projector"], "refstream_events_in_total",
                                     topic=names.log), 90, "the projector's records in")
        wait_for(lambda: _has_series(ports["projector"], "refstream_consumer_lag",
                                     topic=names.reward_due), 90, "the projector's lag")
        wait_for(lambda: _has_series(ports["finance-tail"], "refstream_consumer_lag",
                                     topic=names.reward_due), 90, "finance-tail's lag")
        for name, port in ports.items():
            assert _status(port, "/readyz") == 200, name
            assert "refstream_broker_reachable" in _metrics(port) or name == "finance-tail"
    finally:
        for name, process in processes.items():
            process.terminate()
            assert process.wait(timeout=60) in (0, -signal.SIGTERM), (
                name, (tmp_path / f"{name}.log").read_text(errors="replace")[-2000:])
        assert worker.stop() == 0, worker.log_tail()
