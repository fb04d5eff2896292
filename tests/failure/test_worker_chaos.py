"""Two workers, one of them repeatedly killed (SIGKILL), stopped (SIGTERM) and paused
(SIGSTOP/SIGCONT) while events flow; in the longer variant also the broker is killed and
restarted. Afterwards (a) every checkpointed state equals the core run from scratch over its
log prefix, (b) every reward id maps to one payload, and no derived message is missing or
foreign, and (c) the log holds every produced event id (compared as distinct ids, so a
duplicate cannot hide a lost event).

Each run draws its schedule's seed and prints it; REFSTREAM_CHAOS_SEED=<seed> replays it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from refstream.deploy.kafka_launcher import LocalKafka
from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.failure.conftest import kill_broker, restart_broker
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_to_end,
)
from tests.integration.pipeline_expectations import expected_outputs

pytestmark = [pytest.mark.integration, pytest.mark.failure, pytest.mark.slow]
RULES = load_rules(default_rules_path())
CODEC = Codec()
CHAOS_SECONDS = 70
SEED_ENV = "REFSTREAM_CHAOS_SEED"


def chaos_seed() -> int:
    """This run's seed: REFSTREAM_CHAOS_SEED if set, else a fresh one (printed either way)."""
    text = os.environ.get(SEED_ENV, "").strip()
    seed = int(text) if text else random.SystemRandom().randrange(2**31)
    print(f"\nchaos seed {seed} (replay this schedule: {SEED_ENV}={seed})")
    return seed


def test_effectively_once_under_kill_stop_and_pause(kafka_bootstrap: str, tmp_path: Path) -> None:
    seed = chaos_seed()
    survived = run_chaos(kafka_bootstrap, tmp_path, seed, seconds=CHAOS_SECONDS,
                         gap_s=(2.0, 6.0), min_kills=3)
    assert survived["kill"] >= 3, f"seed {seed}: {dict(survived)}"


def test_effectively_once_through_fifty_disruptions_and_a_broker_kill(
        own_broker: LocalKafka, tmp_path: Path) -> None:
    restart_broker(own_broker)
    seed = chaos_seed()
    survived = run_chaos(own_broker.bootstrap, tmp_path, seed, seconds=60, gap_s=(0.3, 1.5),
                         min_disruptions=50, broker=own_broker)
    assert sum(survived.values()) >= 50 and survived["broker-kill"] == 1, dict(survived)


def run_chaos(bootstrap: str, tmp_path: Path, seed: int, *, seconds: float,
              gap_s: tuple[float, float], min_disruptions: int = 0, min_kills: int = 0,
              broker: LocalKafka | None = None) -> dict[str, int]:
    """Produce while disrupting the victim worker (and once the broker, if given) on the
    schedule `seed` draws; then check (a), (b) and (c). Returns the disruptions survived."""
    base = isolated_settings(bootstrap, tmp_path, partitions=4, tick_interval_s=0,
                             checkpoint_interval_s=1.0, session_timeout_s=6.0,
                             # the producer waits out a broker restart instead of giving up
                             client_timeout_s=300.0)
    names = TopicNames.from_settings(base)
    ensure_topics(base)
    # Separate checkpoint stores, as on two machines: a partition that moves is rebuilt from
    # the new owner's (older or absent) checkpoint by re-reading the log.
    steady = WorkerProcess(base.model_copy(update={"data_dir": tmp_path / "steady"})).start()
    victim = WorkerProcess(base.model_copy(update={"data_dir": tmp_path / "victim"})).start()
    events = list(iter_shop_events(SyntheticConfig(seed=3, shops=6, customers_per_shop=120,
                                                   days=25)))
    done_producing = threading.Event()
    producer_failed: list[BaseException] = []

    def produce() -> None:
        try:
            chunk = max(1, len(events) // 40)
            for start in range(0, len(events), chunk):
                publish_shop_events(base, events[start:start + chunk])
                time.sleep(seconds * 0.8 / 40)
        except Exception as exc:  # noqa: BLE001 - the test thread reports it
            producer_failed.append(exc)
        finally:
            done_producing.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    rng = random.Random(seed)
    broker_kill_at = rng.randrange(10, max(11, min_disruptions - 10)) if broker else -1
    survived: dict[str, int] = defaultdict(int)
    deadline = time.monotonic() + seconds
    try:
        # Whatever the seed draws, at least `min_kills` kill -9 and `min_disruptions` happen.
        while (time.monotonic() < deadline or not done_producing.is_set()
               or sum(survived.values()) < min_disruptions or survived["kill"] < min_kills):
            time.sleep(rng.uniform(*gap_s))
            action = rng.choice(["kill", "kill", "term", "pause"])
            if sum(survived.values()) == broker_kill_at and broker is not None:
                action = "broker-kill"
                kill_broker(broker)
                time.sleep(rng.uniform(1.0, 5.0))
                restart_broker(broker)
            elif action == "kill":
                victim.kill()
                # The long variant often kills again before the restarted worker is ready
                # (harsher, and it keeps fifty disruptions within a few minutes).
                victim.start(wait=not min_disruptions or rng.random() < 0.25)
            elif action == "term":
                victim.wait_ready()  # SIGTERM of a worker that is up: a clean drain
                assert victim.stop(timeout=60) == 0, victim.log_tail()
                victim.start(wait=not min_disruptions or rng.random() < 0.25)
            else:
                victim.wait_ready()
                victim.signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1.0, 4.0))
                victim.signal(signal.SIGCONT)
            survived[action] += 1
        producer.join(timeout=60)
        assert not producer_failed, f"seed {seed}: producing failed: {producer_failed[0]!r}"
        produced_ids = {event.event_id for event in events}
        log_records = wait_for_distinct(
            bootstrap, names.log, produced_ids, _log_event_id, timeout=180,
            diagnosis=lambda: _diagnosis(seed, steady, victim))
        want = expected_outputs(log_records, RULES, names)
        for topic, messages in want.items():
            wait_for_distinct(bootstrap, topic, {value for _, value in messages},
                              lambda record: bytes(record.value), timeout=180,
                              diagnosis=lambda: _diagnosis(seed, steady, victim))
        time.sleep(3)  # let the last checkpoints land
    finally:
        for worker in (victim, steady):
            if worker.process is not None and worker.process.poll() is None:
                worker.signal(signal.SIGCONT)
                worker.stop(timeout=60)
    print(f"\nchaos seed {seed} survived: {dict(survived)} "
          f"({sum(survived.values())} disruptions, {survived['kill']} kill -9, "
          f"{survived['broker-kill']} broker kill -9)")

    # (b) one payload per id, nothing missing, nothing that a from-scratch run would not emit
    for topic in (names.reward_due, names.rewards, names.attributions, names.fraud_flags):
        got = read_to_end(bootstrap, topic)
        payloads: dict[bytes, set[bytes]] = defaultdict(set)
        for record in got:
            payloads[_message_id(record.value)].add(record.value)
        if topic == names.reward_due:
            conflicting = {k: v for k, v in payloads.items() if len(v) > 1}
            assert not conflicting, (f"seed {seed}: reward ids with several payloads: "
                                     f"{list(conflicting)[:3]}")
        assert {r.value for r in got} == {v for _, v in want.get(topic, [])}, (seed, topic)

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
                f"seed {seed}: {store.name} partition {partition} @ {next_offset}")
            checked += 1
    assert checked >= 4
    return survived


def wait_for_distinct(bootstrap: str, topic: str, want: set[Any],
                      key: Callable[[Any], Any], *, timeout: float,
                      diagnosis: Callable[[], str]) -> list[Any]:
    """The records of `topic` once their distinct keys include every key of `want` (counting
    records would let a duplicate stand in for a lost one); fails naming what is missing."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_to_end(bootstrap, topic)
        missing = want - {key(record) for record in records}
        if not missing:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{topic}: {len(missing)} of {len(want)} distinct ids missing after "
                f"{timeout:.0f}s (e.g. {sorted(map(str, missing))[:3]}), {len(records)} "
                f"records\n{diagnosis()}")
        time.sleep(2)


def _log_event_id(record: Any) -> str | None:
    event = CODEC.decode_log_event(record.value)
    return None if event is None else str(event.event_id)


def _diagnosis(seed: int, steady: WorkerProcess, victim: WorkerProcess) -> str:
    return (f"seed {seed} ({SEED_ENV}={seed} replays it)\n--- steady worker:\n"
            f"{steady.log_tail(60)}\n--- victim worker:\n{victim.log_tail(60)}\n--- lag:\n"
            f"{_lag(steady)}\n{_lag(victim)}")


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
