"""The pieces behind "fail loudly": log rate limiting, readiness, exit codes, durable topics."""

from __future__ import annotations

import gc
import io
import logging
import time
from collections.abc import Iterator

import pytest
import yaml

from refstream.deploy.render_topics import TOPICS_YAML
from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    BrokerRefused,
    BrokerUnavailable,
    broker_error,
    exit_code_for,
)
from refstream.streams.metrics import Health
from refstream.streams.settings import Settings
from refstream.streams.supervision import RateLimitFilter, configure_logging, tune_gc
from refstream.streams.topics import TopicNames, min_insync_replicas, topic_specs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeated_messages_pass_once_per_window_and_say_how_many_were_held() -> None:
    clock = Clock()
    stream = io.StringIO()
    logger = logging.getLogger("test.ratelimit")
    handler = logging.StreamHandler(stream)
    handler.addFilter(RateLimitFilter(30.0, clock))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for second in range(100):  # a reconnect failure every second, to two nodes
            clock.now = float(second)
            logger.error("Unable connect to node with id %s: %s", second % 2, "refused")
        logger.warning("another message")  # a different template is not held back
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    connect = [line for line in lines if line.startswith("Unable connect")]
    assert len(connect) == 4  # at 0, 30, 60 and 90 seconds
    assert "[29 similar messages held back in the last 30s]" in connect[1]
    assert lines[-1] == "another message"


def test_configured_logs_carry_no_terminal_escapes() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        logging.getLogger("aiokafka").error("Unable connect to %r", "node")
    finally:
        configure_logging("warning")
    assert "\x1b[" not in stream.getvalue()
    assert "ERROR aiokafka: Unable connect to 'node'" in stream.getvalue()


@pytest.mark.parametrize(("situation", "ready", "reason"), [
    ((True, True, False, False), True, "ready"),
    ((False, True, False, False), False, "partitions not assigned"),
    ((True, False, False, False), False, "broker unreachable"),
    ((True, True, True, False), False, "crashed: refstream.pipeline: LogGapError: gap"),
    ((True, True, False, True), False, "stopping"),
])
def test_readiness_needs_assignment_broker_no_crash_and_not_stopping(
        situation: tuple[bool, bool, bool, bool], ready: bool, reason: str) -> None:
    assigned, broker, crashed, stopping = situation
    health = Health()
    if assigned:
        health.ready.set()
    if not broker:
        health.broker_reachable.clear()
    if crashed:
        health.crashed["refstream.pipeline"] = "LogGapError: gap"
    if stopping:
        health.stopping.set()
    assert health.is_ready() is ready
    assert health.why_not_ready() == reason
    assert health.alive() is not (crashed or stopping)


def test_exit_codes_of_broker_errors() -> None:
    from kafka.errors import KafkaTimeoutError, TopicAuthorizationFailedError

    assert exit_code_for(RefstreamError("bad flag")) == EXIT_USAGE
    assert exit_code_for(BrokerUnavailable("x")) == EXIT_UNAVAILABLE == 4
    assert exit_code_for(BrokerRefused("x")) == EXIT_REFUSED == 5
    down = broker_error("publishing", "h:1", KafkaTimeoutError("t"), 5)
    assert isinstance(down, BrokerUnavailable) and "within 5s" in str(down)
    refused = broker_error("creating", "h:1", TopicAuthorizationFailedError(), 5)
    assert isinstance(refused, BrokerRefused) and "refused" in str(refused)


@pytest.mark.parametrize(("replicas", "min_isr"), [(1, 1), (2, 1), (3, 2), (5, 2)])
def test_every_topic_is_durable(replicas: int, min_isr: int) -> None:
    assert min_insync_replicas(replicas) == min_isr
    for spec in topic_specs(TopicNames("shop", "refstream"), 6, replicas):
        assert spec.config["min.insync.replicas"] == str(min_isr), spec.name
        assert spec.config["unclean.leader.election.enable"] == "false", spec.name


def test_the_shipped_topics_yaml_is_for_three_replicas() -> None:
    document = yaml.safe_load(TOPICS_YAML.read_text(encoding="utf-8"))
    assert document["defaults"]["replication_factor"] == 3
    assert {t["config"]["min.insync.replicas"] for t in document["topics"]} == {"2"}
    assert {t["config"]["unclean.leader.election.enable"] for t in document["topics"]} == {
        "false"}


def test_a_process_of_two_stages_is_ready_once_both_have_their_partitions() -> None:
    # One process running ingest and the pipeline: the first assignment alone is not ready.
    health = Health()
    health.expect("ingest")
    health.expect("pipeline")
    health.assigned("pipeline")
    assert not health.is_ready()
    assert health.why_not_ready() == "partitions not assigned (ingest)"
    health.assigned("ingest")
    assert health.is_ready()
    health.revoked("ingest")  # a rebalance takes ingest's partitions away
    assert not health.is_ready()
    health.assigned("ingest")
    assert health.is_ready()


def test_a_crash_only_for_an_unanswering_broker_exits_4_any_other_fault_exits_1(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import aiokafka.errors

    from refstream.streams import supervision
    from refstream.streams.exit_codes import EXIT_PROBLEM
    from refstream.streams.metrics import ProcessMetrics

    stops: list[int] = []  # the policy's SIGTERM to itself, recorded instead of sent
    monkeypatch.setattr("refstream.streams.supervision.os.kill", lambda pid, sig: stops.append(sig))

    class Agent:
        def __init__(self, name: str) -> None:
            self.name = name

    health, metrics = Health(), ProcessMetrics()
    crash = supervision.CrashPolicy(health, metrics)
    timeout = aiokafka.errors.KafkaTimeoutError()
    asyncio.run(crash.on_agent_error(Agent("refstream.ingest"), timeout))
    assert crash.crashed and crash.exit_code == EXIT_UNAVAILABLE and len(stops) == 1
    assert not health.alive() and "KafkaTimeoutError" in health.why_not_ready()
    # A second crash that is a fault of this process decides the code.
    asyncio.run(crash.on_agent_error(Agent("refstream.pipeline"), ValueError("bad state")))
    assert crash.exit_code == EXIT_PROBLEM == 1 and len(stops) == 2
    assert metrics.registry.get_sample_value(
        "refstream_agent_crashes_total", {"agent": "refstream.ingest"}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("who", ["stage", "faust"])
def test_a_process_whose_start_finds_no_broker_exits_4_and_leaves_no_leak_report(
        who: str) -> None:
    import subprocess
    import sys

    # A real faust worker process: the producer (a stage's, or faust's own) retries the
    # closed port for the client bound (1 s), then the start fails. faust alone would exit 1
    # for any failed start; with the frozen heap kept to the end, duckdb's extension
    # reported leaks.
    done = subprocess.run([sys.executable, "-m", "tests.unit.streams.unreachable_process", who],
                          check=False, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == EXIT_UNAVAILABLE == 4, output[-3000:]
    producer = "a stage's producer" if who == "stage" else "faust's producer"
    assert f"{producer}: no broker at" in output and "trying again" in output, output[-3000:]
    assert "exiting with code 4" in output and "KafkaConnectionError" in output, output[-3000:]
    assert "nanobind: leaked" not in output, output[-3000:]


@pytest.fixture
def gc_as_it_was() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("gc_as_it_was")
def test_a_long_running_process_collects_young_objects_less_often_and_never_its_startup(
        ) -> None:
    built_at_startup = [[] for _ in range(1000)]
    _, middle, old = gc.get_threshold()
    tune_gc(Settings().gc_young_threshold)
    assert gc.get_threshold() == (1_000_000, middle, old)
    assert gc.get_freeze_count() >= len(built_at_startup)


def test_the_young_threshold_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSTREAM_GC_YOUNG_THRESHOLD", "700")
    assert Settings().gc_young_threshold == 700
    monkeypatch.setenv("REFSTREAM_GC_YOUNG_THRESHOLD", "0")
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Settings()


def test_the_collectors_pauses_are_counted_and_timed_as_python_counts_them() -> None:
    from refstream.streams.metrics import GcPauses, ProcessMetrics

    metrics = ProcessMetrics()
    pauses = metrics.gc_pauses
    pauses.install()
    pauses.install()  # once per process, however often asked
    try:
        started = time.perf_counter()
        python_before = [stats["collections"] for stats in gc.get_stats()]
        kept = [[index] for index in range(200_000)]  # young objects to scan
        gc.collect(0)
        gc.collect(0)
        gc.collect(2)
        elapsed = time.perf_counter() - started
        python_after = [stats["collections"] for stats in gc.get_stats()]
    finally:
        pauses.uninstall()
    assert len(kept) == 200_000
    # Python's own per-generation counters are the reference for what ran.
    assert pauses.collections == [
        a - b for a, b in zip(python_after, python_before, strict=True)]
    assert pauses.collections[0] >= 2 and pauses.collections[2] >= 1
    assert 0 < sum(pauses.seconds) <= elapsed
    assert pauses not in gc.callbacks

    def sample(name: str, generation: int, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"generation": str(generation),
                                                        **labels})

    for generation in range(GcPauses.GENERATIONS):
        count = pauses.collections[generation]
        assert sample("refstream_gc_pause_seconds_count", generation) == count
        assert sample("refstream_gc_pause_seconds_sum", generation) == pauses.seconds[generation]
        assert sample("refstream_gc_pause_seconds_bucket", generation, le="+Inf") == count
        longest = sample("refstream_gc_longest_pause_seconds", generation)
        assert longest is not None and longest <= elapsed
        if count:
            assert pauses.seconds[generation] / count <= longest <= pauses.seconds[generation]
        # Cumulative buckets: never fewer at a larger bound; all of them from the longest on.
        previous = 0.0
        for bound in GcPauses.BOUNDS:
            within = sample("refstream_gc_pause_seconds_bucket", generation, le=str(bound))
            assert within is not None and previous <= within <= count
            if bound >= longest:
                assert within == count
            previous = within
    young = pauses.collections[0]
    gc.collect(0)  # uninstalled: no longer counted
    assert sample("refstream_gc_pause_seconds_count", 0) == young
