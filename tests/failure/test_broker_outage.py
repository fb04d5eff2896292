"""A broker that goes away, on a broker of this module's own (it is killed and restarted):

- `refstream produce` rides out a kill -9 and restart of the broker shorter than its bound,
  and every event is on the shop topics exactly once (idempotent producer: the
  unacknowledged tail is re-sent, and the broker drops what it already had);
- a broker down for longer than the bound ends `produce`, `topics create`, `finance-tail`,
  `dlq list`, `dlq redrive` and `replay` (from the topic) with exit code 4 and a message,
  never a hang;
- meanwhile a running worker turns unready, logs the outage without a flood and without
  terminal escapes, and ends within its shutdown bound on SIGTERM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from refstream.deploy.kafka_launcher import LocalKafka
from refstream.schemas.codec import Codec
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import events_for_target, write_jsonl
from tests.failure.conftest import kill_broker, restart_broker
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_to_end,
    settings_env,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.failure, pytest.mark.slow]
CODEC = Codec()
# Longer than a restart of the broker on a slow machine: produce must wait it out.
RIDE_OUT_BOUND_S = 300.0
# Much shorter than the outage of the second test: the commands must give up.
GIVE_UP_BOUND_S = 6.0
SHUTDOWN_BOUND_S = 12.0


def cli(settings: Settings, *args: str, bound_s: float, **popen: object
        ) -> subprocess.Popen[str]:
    env = {**os.environ, **settings_env(settings), "REFSTREAM_CLIENT_TIMEOUT_S": str(bound_s)}
    return subprocess.Popen([sys.executable, "-m", "refstream.cli", *args], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)  # type: ignore[call-overload]


def shop_records_on_broker(bootstrap: str, names: TopicNames) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        tps = [TopicPartition(topic, p) for topic in names.shop_topics
               for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def readiness_text(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as exc:
        return str(exc.read().decode())


def events_file(path: Path, target: int, seed: int) -> list[str]:
    write_jsonl(events_for_target(target, seed=seed), path)
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line)["event_id"] for line in lines if line.strip()]


def test_produce_rides_out_a_broker_restart_without_losing_or_doubling(
        own_broker: LocalKafka, tmp_path: Path) -> None:
    settings = isolated_settings(own_broker.bootstrap, tmp_path / "state", partitions=3)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    event_ids = events_file(tmp_path / "events.jsonl", 40_000, seed=11)
    produce = cli(settings, "produce", str(tmp_path / "events.jsonl"), bound_s=RIDE_OUT_BOUND_S)
    try:
        wait_for(lambda: shop_records_on_broker(own_broker.bootstrap, names) >= 2_000, 60,
                 "the first events on the shop topics")
        assert produce.poll() is None, "produce finished before the broker was killed; " \
                                       "give it more events"
        kill_broker(own_broker)
        killed_at = time.monotonic()
        restart_broker(own_broker)
        print(f"\nbroker down for {time.monotonic() - killed_at:.0f}s while producing")
        out, err = produce.communicate(timeout=RIDE_OUT_BOUND_S + 60)
    finally:
        if produce.poll() is None:
            produce.kill()
            produce.wait()
    assert produce.returncode == 0, f"exit {produce.returncode}: {err[-2000:]}"
    assert f"published {len(event_ids)} events" in out

    on_topics: Counter[str] = Counter()
    for topic in names.shop_topics:
        for record in read_to_end(own_broker.bootstrap, topic, timeout=120):
            on_topics[CODEC.decode(record.value).event_id] += 1
    doubled = {event_id: n for event_id, n in on_topics.items() if n > 1}
    missing = set(event_ids) - set(on_topics)
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:3]}"
    assert not doubled, f"{len(doubled)} events written twice, e.g. {list(doubled)[:3]}"
    assert sum(on_topics.values()) == len(event_ids)


def test_a_broker_down_longer_than_the_bound_ends_commands_with_exit_4(
        own_broker: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    restart_broker(own_broker)
    settings = isolated_settings(own_broker.bootstrap, tmp_path / "state", partitions=3,
                                 tick_interval_s=0, checkpoint_interval_s=1.0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    # WorkerProcess passes the environment on: a shorter shutdown bound than the default.
    monkeypatch.setenv("REFSTREAM_SHUTDOWN_TIMEOUT_S", str(SHUTDOWN_BOUND_S))
    worker = WorkerProcess(settings).start()
    event_ids = events_file(tmp_path / "events.jsonl", 40_000, seed=12)
    produce = cli(settings, "produce", str(tmp_path / "events.jsonl"), bound_s=GIVE_UP_BOUND_S)
    others: dict[str, subprocess.Popen[str]] = {}
    try:
        wait_for(lambda: shop_records_on_broker(own_broker.bootstrap, names) >= 2_000, 60,
                 "the first events on the shop topics")
        assert produce.poll() is None, "produce finished before the broker was killed"
        kill_broker(own_broker)
        killed_at = time.monotonic()
        _, err = produce.communicate(timeout=GIVE_UP_BOUND_S * 4 + 30)
        produce_took = time.monotonic() - killed_at
        assert produce.returncode == 4, f"produce exit {produce.returncode}: {err[-2000:]}"
        assert "no answer from the broker" in err and "acknowledged" in err, err[-2000:]
        assert f"of {len(event_ids)} sent" in err or " sent acknowledged" in err, err[-2000:]

        # The worker says it is not ready while the broker is away.
        wait_for(lambda: worker._get("/readyz")[0] == 503, 60, "worker readiness to fail")
        assert "broker unreachable" in readiness_text(worker.metrics_port)

        # Every other command that waits on the broker gives up too, with the same code.
        finance_ledger = tmp_path / "ledger.sqlite"
        fixed = tmp_path / "fixed.jsonl"  # one fixed dead letter, as `dlq export` writes it
        first_event = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
        fixed.write_text(json.dumps({"source": {"topic": names.shop("click"), "partition": 0,
                                                "offset": 7}, "event": first_event}) + "\n")
        others = {
            "dlq redrive": cli(settings, "dlq", "redrive", str(fixed), "--ledger",
                               str(tmp_path / "redrive.sqlite"), bound_s=GIVE_UP_BOUND_S),
            "topics create": cli(settings, "topics", "create", bound_s=GIVE_UP_BOUND_S),
            "finance-tail": cli(settings, "finance-tail", "--ledger", str(finance_ledger),
                                bound_s=GIVE_UP_BOUND_S),
            "dlq list": cli(settings, "dlq", "list", "--timeout", str(GIVE_UP_BOUND_S),
                            bound_s=GIVE_UP_BOUND_S),
            "replay": cli(settings, "replay", "--db", str(tmp_path / "replay.duckdb"),
                          bound_s=GIVE_UP_BOUND_S),
        }
        for name, process in others.items():
            _, err = process.communicate(timeout=180)
            assert process.returncode == 4, f"{name}: exit {process.returncode}: {err[-2000:]}"
            assert "broker" in err and "Traceback" not in err, f"{name}: {err[-2000:]}"

        # SIGTERM while the broker is still down: the worker ends within its bound.
        stop_started = time.monotonic()
        code = worker.stop(timeout=SHUTDOWN_BOUND_S + 40)
        stop_took = time.monotonic() - stop_started
        outage_s = time.monotonic() - killed_at
    finally:
        for process in (produce, *others.values()):
            if process.poll() is None:
                process.kill()
                process.wait()
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
    print(f"\nproduce gave up after {produce_took:.1f}s; worker stopped in {stop_took:.1f}s "
          f"(exit {code}) after {outage_s:.0f}s of outage")
    assert code in (0, 4), worker.log_tail()
    assert stop_took < SHUTDOWN_BOUND_S + 15, stop_took
    assert worker.log_path is not None
    log_bytes = worker.log_path.read_bytes()
    assert b"\x1b[" not in log_bytes, "terminal escape codes in a log that is not a terminal"
    log_lines = log_bytes.decode(errors="replace").splitlines()
    connection_errors = [line for line in log_lines if "connect" in line.lower()
                         and (" ERROR " in line or " WARNING " in line)]
    # Without rate limiting the clients log several reconnect failures per second.
    assert len(connection_errors) < 4 * outage_s / 30 + 20, (
        f"{len(connection_errors)} connection error lines in {outage_s:.0f}s:\n"
        + "\n".join(connection_errors[:30]))
