"""A worker's Prometheus metrics and its HTTP endpoints: /metrics, /healthz and /readyz.

One registry per worker process (not the global default), so tests can run several.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class GcPauses(Collector):
    """How long the cyclic garbage collector stopped the process, as a histogram by
    generation (0 is the young one), and the longest stop so far. A collection holds the GIL
    throughout, so it is a pause of every stage, and what it scans grows with what the
    process keeps: the same 200,000-object young collection took ten times as long with a
    million events' state as at the start. `install` hooks it into `gc.callbacks` (once per
    process: `run_supervised`); the hook only adds to plain numbers, since a collection can
    start inside any code, this registry's own locks held included. A scrape reads them."""

    GENERATIONS = 3
    # The pause histogram's bucket bounds, in seconds (then +Inf).
    BOUNDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

    def __init__(self) -> None:
        self.seconds = [0.0] * self.GENERATIONS
        self.longest = [0.0] * self.GENERATIONS
        # Per generation, the pauses within each bound and above the one before (+Inf last).
        self.within = [[0] * (len(self.BOUNDS) + 1) for _ in range(self.GENERATIONS)]
        self._started = 0.0

    @property
    def collections(self) -> list[int]:
        """How many collections of each generation were timed."""
        return [sum(within) for within in self.within]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        paused = time.perf_counter() - self._started
        generation = info["generation"]
        self.seconds[generation] += paused
        self.within[generation][bisect.bisect_left(self.BOUNDS, paused)] += 1
        self.longest[generation] = max(self.longest[generation], paused)

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def collect(self) -> Iterator[Metric]:
        pauses = HistogramMetricFamily(
            "refstream_gc_pause_seconds",
            "how long each cyclic garbage collection held the process, by generation",
            labels=["generation"])
        longest = GaugeMetricFamily(
            "refstream_gc_longest_pause_seconds",
            "the longest cyclic garbage collection since the process started, by generation",
            labels=["generation"])
        bounds = [*map(str, self.BOUNDS), "+Inf"]
        for generation in range(self.GENERATIONS):
            counts = itertools.accumulate(self.within[generation])
            pauses.add_metric([str(generation)], list(zip(bounds, counts, strict=True)),
                              self.seconds[generation])
            longest.add_metric([str(generation)], self.longest[generation])
        yield pauses
        yield longest


@dataclass
class ProcessMetrics:
    """The metrics of a long-running process other than the worker (projector, finance-tail):
    records in, lag per topic and partition, crashes, broker reachability."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events_in = Counter("refstream_events_in_total", "records consumed", ["topic"],
                                 registry=r)
        self.lag = Gauge("refstream_consumer_lag",
                         "records behind the end of a consumed topic partition",
                         ["topic", "partition"], registry=r)
        self.agent_crashes = Counter("refstream_agent_crashes_total",
                                     "agents that crashed (the process then exits non-zero)",
                                     ["agent"], registry=r)
        self.broker_up = Gauge("refstream_broker_reachable",
                               "1 while the last broker probe was answered, else 0", registry=r)
        self.gc_pauses = GcPauses()
        r.register(self.gc_pauses)


@dataclass
class WorkerMetrics(ProcessMetrics):
    """A worker's metrics: a long-running process's, plus its stages' own."""

    def __post_init__(self) -> None:
        super().__post_init__()
        r = self.registry
        self.events_out = Counter("refstream_events_out_total", "records produced", ["topic"],
                                  registry=r)
        self.dead_letters = Counter("refstream_dlq_total", "records sent to the DLQ", registry=r)
        self.duplicates = Counter("refstream_duplicates_total", "duplicate shop events dropped",
                                  registry=r)
        self.latency = Histogram(
            "refstream_processing_latency_seconds",
            "from append to the canonical log to the derived event being sent",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r)
        self.rewards_due = Counter("refstream_rewards_due_total", "reward-due events",
                                   ["currency"], registry=r)
        self.rewards_due_amount = Counter("refstream_rewards_due_amount_minor_total",
                                          "amount of reward-due events, minor units",
                                          ["currency"], registry=r)
        self.fraud_flags = Counter("refstream_fraud_flags_total", "fraud flags", ["signal"],
                                   registry=r)
        self.late_events = Counter(
            "refstream_late_events_total",
            "log events applied after their shop's watermark had passed them", ["event_type"],
            registry=r)
        self.checkpoint_seconds = Histogram(
            "refstream_checkpoint_seconds", "flush outputs + commit snapshot and offset",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), registry=r)
        self.checkpoint_snapshot_seconds = Histogram(
            "refstream_checkpoint_snapshot_seconds",
            "serialise the state + commit it with its offset (in a forked child unless "
            "REFSTREAM_CHECKPOINT_IN_BACKGROUND=false: then included in checkpoint_seconds)",
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.checkpoint_acknowledged = Counter(
            "refstream_checkpoint_acknowledgements_total",
            "offsets recorded between snapshots, once the broker acknowledged their outputs "
            "(O(1) each; a restart re-applies the log from the snapshot up to them silently)",
            registry=r)
        self.caught_up = Counter(
            "refstream_caught_up_records_total",
            "log records read directly because the group's consumer was ahead of the state",
            registry=r)
        self.ticks = Counter("refstream_ticks_total", "stream-time ticks appended for quiet shops",
                             registry=r)


@dataclass
class Health:
    """Liveness: the process answers and no agent crashed. Readiness: partitions assigned
    (to every stage of the process that consumes), the broker answered the latest probe, no
    agent crashed, not stopping."""

    ready: threading.Event = field(default_factory=threading.Event)
    # Stages that have said they consume (`expect`) and hold no assignment right now.
    waiting: set[str] = field(default_factory=set)
    stopping: threading.Event = field(default_factory=threading.Event)
    broker_reachable: threading.Event = field(default_factory=threading.Event)
    crashed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Until a probe runs (a process without one), assume the broker answers.
        self.broker_reachable.set()

    def expect(self, stage: str) -> None:
        """`stage` consumes in this process: not ready until it has its partitions."""
        self.waiting.add(stage)
        self.ready.clear()

    def assigned(self, stage: str) -> None:
        """`stage` got its partitions; ready once every expected stage has."""
        self.waiting.discard(stage)
        if not self.waiting:
            self.ready.set()

    def revoked(self, stage: str) -> None:
        """`stage` lost its partitions (a rebalance): not ready until they come back."""
        self.waiting.add(stage)
        self.ready.clear()

    def alive(self) -> bool:
        return not self.stopping.is_set() and not self.crashed

    def is_ready(self) -> bool:
        return (self.ready.is_set() and self.broker_reachable.is_set() and self.alive())

    def why_not_ready(self) -> str:
        if self.crashed:
            return "crashed: " + "; ".join(f"{a}: {r}" for a, r in sorted(self.crashed.items()))
        if self.stopping.is_set():
            return "stopping"
        if not self.broker_reachable.is_set():
            return "broker unreachable"
        if not self.ready.is_set():
            waiting = f" ({', '.join(sorted(self.waiting))})" if self.waiting else ""
            return "partitions not assigned" + waiting
        return "ready"


log = logging.getLogger("refstream.health")


def watch_broker(probe: Callable[[], None], health: Health, metrics: Any,
                 interval_s: float) -> threading.Thread:
    """Run `probe` (raises when the broker does not answer within its bound) every
    `interval_s` in a daemon thread and keep `health.broker_reachable` in step with it."""

    def loop() -> None:
        while not health.stopping.is_set():
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - any failure means not ready; logged
                if health.broker_reachable.is_set():
                    log.warning("broker unreachable (%s: %s); not ready until it answers",
                                type(exc).__name__, str(exc)[:200])
                health.broker_reachable.clear()
                metrics.broker_up.set(0)
            else:
                if not health.broker_reachable.is_set():
                    log.warning("broker answers again; ready once partitions are assigned")
                health.broker_reachable.set()
                metrics.broker_up.set(1)
            health.stopping.wait(interval_s)

    thread = threading.Thread(target=loop, name="refstream-broker-probe", daemon=True)
    thread.start()
    return thread


def serve_http(metrics: WorkerMetrics | ProcessMetrics, health: Health, host: str,
               port: int) -> ThreadingHTTPServer:
    """Start the endpoints in a daemon thread; port 0 picks a free port (server.server_port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                alive = health.alive()
                self._reply(200 if alive else 503,
                            b"ok\n" if alive else f"{health.why_not_ready()}\n".encode())
            elif self.path == "/readyz":
                ready = health.is_ready()
                self._reply(200 if ready else 503,
                            b"ready\n" if ready else f"not ready: {health.why_not_ready()}\n"
                            .encode())
            else:
                self._reply(404, b"try /metrics, /healthz or /readyz\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would drown the worker's log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="refstream-http", daemon=True).start()
    return server
