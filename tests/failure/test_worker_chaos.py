"""Two workers, one of them repeatedly killed (SIGKILL), stopped (SIGTERM) and paused
(SIGSTOP/SIGCONT) while events flow. Afterwards (a) every checkpointed state equals the core
run from scratch over its log prefix, and (b) every reward id maps to one payload, and no
derived message is missing or foreign."""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.streams.producer import publish_shop_events
from refstream.streams.synthetic import SyntheticConfig, iter_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic
from tests.integration.pipeline_expectations import expected_outputs

pytestmark = [pytest.mark.integration, pytest.mark.failure, pytest.mark.slow]
RULES = load_rules(default_rules_path())
CODEC = Codec()
CHAOS_SECONDS = 100
SEED = 20261123


def test_effectively_once_under_kill_stop_and_pause(kafka_bootstrap: str, tmp_path: Path) -> None:
    base = isolated_settings(kafka_bootstrap, tmp_path, partitions=4, tick_interval_s=0,
                             checkpoint_interval_s=1.0, session_timeout_s=6.0)
    names = TopicNames.from_settings(base)
    ensure_topics(base)
    # Separate checkpoint stores, as on two machines: a partition that moves is rebuilt from
    # the new owner's (older or absent) checkpoint by re-reading the log.
    steady = WorkerProcess(base.model_copy(update={"data_dir": tmp_path / "steady"})).start()
    victim = WorkerProcess(base.model_copy(update={"data_dir": tmp_path / "victim"})).start()
    events = list(iter_shop_events(SyntheticConfig(seed=3, shops=6, customers_per_shop=120,
                                                   days=25)))
    done_producing = threading.Event()

    def produce() -> None:
        chunk = max(1, len(events) // 40)
        for start in range(0, len(events), chunk):
            publish_shop_events(base, events[start:start + chunk])
            time.sleep(CHAOS_SECONDS * 0.8 / 40)
        done_producing.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    rng = random.Random(SEED)
    survived: dict[str, int] = defaultdict(int)
    deadline = time.monotonic() + CHAOS_SECONDS
    try:
        while time.monotonic() < deadline or not done_producing.is_set():
            time.sleep(rng.uniform(2.0, 6.0))
            action = rng.choice(["kill", "kill", "term", "pause"])
            if action == "kill":
                victim.kill()
                victim.start()
            elif action == "term":
                assert victim.stop(timeout=60) == 0, victim.log_tail()
                victim.start()
            else:
                victim.signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1.0, 4.0))
                victim.signal(signal.SIGCONT)
            survived[action] += 1
        producer.join(timeout=60)
        log_records = read_topic(kafka_bootstrap, names.log, expect=len(events), timeout=120)
        want = expected_outputs(log_records, RULES, names)
        for topic, messages in want.items():
            try:
                read_topic(kafka_bootstrap, topic, expect=len(set(messages)), timeout=180)
            except AssertionError as exc:  # say what the workers were doing
                raise AssertionError(
                    f"{exc}\n--- steady worker:\n{steady.log_tail(60)}\n--- victim worker:\n"
                    f"{victim.log_tail(60)}\n--- lag:\n{_lag(steady)}\n{_lag(victim)}") from exc
        time.sleep(3)  # let the last checkpoints land
    finally:
        for worker in (victim, steady):
            if worker.process is not None and worker.process.poll() is None:
                worker.signal(signal.SIGCONT)
                worker.stop(timeout=60)
    print(f"\nchaos survived: {dict(survived)} "
          f"({sum(survived.values())} disruptions, {survived['kill']} kill -9)")
    assert survived["kill"] >= 3

    # (b) one payload per id, nothing missing, nothing that a from-scratch run would not emit
    for topic in (names.reward_due, names.rewards, names.attributions, names.fraud_flags):
        got = read_topic(kafka_bootstrap, topic, settle=1.0, timeout=30)
        payloads: dict[bytes, set[bytes]] = defaultdict(set)
        for record in got:
            payloads[_message_id(record.value)].add(record.value)
        if topic == names.reward_due:
            conflicting = {k: v for k, v in payloads.items() if len(v) > 1}
            assert not conflicting, f"reward ids with several payloads: {list(conflicting)[:3]}"
        assert {r.value for r in got} == {v for _, v in want.get(topic, [])}, topic

    # (a) every checkpoint equals the core over exactly the log prefix it claims
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for record in sorted(log_records, key=lambda r: (r.partition, r.offset)):
        by_partition[record.partition].append(record.value)
    checked = 0
    for store in (tmp_path / "steady", tmp_path / "victim"):
        path = store / "checkpoints.sqlite"
        if not path.exists():
            continue
        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT partition, next_offset, state FROM checkpoints").fetchall()
        for partition, next_offset, state in rows:
            scratch = Pipeline(RULES)
            for value in by_partition[partition][:next_offset]:
                event = CODEC.decode_log_event(value)
                if event is not None:
                    scratch.apply(event)
            assert Pipeline.restore(RULES, bytes(state)).state == scratch.state, (
                f"{store.name} partition {partition} @ {next_offset}")
            checked += 1
    assert checked >= 4


def _lag(worker: WorkerProcess) -> str:
    return "\n".join(line for line in worker.metrics().splitlines()
                     if line.startswith(("refstream_consumer_lag", "refstream_caught_up")))


def _message_id(value: bytes) -> bytes:
    event = CODEC.decode(value)
    for name in ("reversal_id", "reward_id", "flag_id", "referral_id"):
        if hasattr(event, name):
            ident = getattr(event, name)
            if name == "reward_id" and type(event).__name__ == "RewardStatus":
                return f"{ident}:{event.revision}".encode()
            if name == "referral_id" and type(event).__name__ == "Attribution":
                return f"{ident}:{event.revision}".encode()
            return str(ident).encode()
    if type(event).__name__ == "LateArrival":  # one per late event of a shop
        return f"late:{event.shop_id}:{event.event_id}".encode()
    raise AssertionError(f"no id on {event!r}")
