"""What a long-running process (worker, projector) does to fail loudly and stop in time.

- a broker probe that readiness follows (`BrokerProbe`, run by `metrics.watch_broker`);
- an agent crash is recorded, logged with its reason, and ends the process non-zero so a
  supervisor restarts it (`CrashPolicy`);
- a shutdown that cannot finish (the broker is down, a flush never completes) is cut off
  after a bound (`ShutdownDeadline`): what was committed stays, the rest is redone on start;
- logs: one line format, no terminal escapes, repeated messages rate-limited
  (`configure_logging`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import aiokafka.errors
import faust
import mode.loop
from kafka.errors import KafkaError

from refstream.streams.exit_codes import EXIT_OK, EXIT_PROBLEM, EXIT_UNAVAILABLE
from refstream.streams.metrics import (
    Health,
    ProcessMetrics,
    WorkerMetrics,
    serve_http,
    watch_broker,
)
from refstream.streams.settings import Settings

log = logging.getLogger("refstream.supervision")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class BrokerProbe:
    """One metadata round trip to the cluster, bounded by `timeout_s`; raises when the
    broker does not answer. Keeps its admin client while it works, rebuilds it after a
    failure (a client whose connection died can wait for longer than the bound)."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        self.settings, self.timeout_ms = settings, max(1000, int(timeout_s * 1000))
        self._admin: Any = None

    def __call__(self) -> None:
        from kafka.admin import KafkaAdminClient

        try:
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self.settings.kafka_bootstrap,
                    client_id=f"{self.settings.app_id}-probe",
                    request_timeout_ms=self.timeout_ms, bootstrap_timeout_ms=self.timeout_ms,
                    **self.settings.kafka_security())
            self._admin.describe_cluster()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                admin.close()
            except (KafkaError, OSError) as exc:  # a broken client may fail to close too
                log.debug("closing the probe's admin client: %r", exc)


class RateLimitFilter(logging.Filter):
    """Lets the first record of each (logger, message template) through, then at most one
    per `window_s`, saying how many like it were held back. A broker outage makes the Kafka
    clients log every reconnect attempt (many per second); one line per window is enough."""

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.CRITICAL:
            return True
        key = (record.name, str(record.msg))
        now = self.clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} [{held} similar messages held back in the last " \
                         f"{self.window_s:.0f}s]"
        return True


def configure_logging(level: str, *, stream: Any = None, window_s: float = 30.0) -> None:
    """Plain lines on stderr (no colour codes: logs usually go to files and collectors),
    repeated messages rate-limited. faust's worker must then leave logging alone
    (`override_logging=False`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(RateLimitFilter(window_s))
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(handler)
    root.setLevel(level.upper())


# Raised by the Kafka clients when no broker answers in time: a crash for one of these is
# the dependency's absence (exit 4, as for the commands), not a fault of this process.
BROKER_UNAVAILABLE: tuple[type[BaseException], ...] = (
    aiokafka.errors.KafkaTimeoutError, aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.NodeNotReadyError, aiokafka.errors.RequestTimedOutError,
    aiokafka.errors.NoBrokersAvailable)


class CrashPolicy:
    """An agent that raises is recorded (readiness and liveness fail at once), logged with
    its reason, and the process begins a normal shutdown that ends with exit code 1, or 4
    when every crash was a broker that did not answer (`BROKER_UNAVAILABLE`)."""

    def __init__(self, health: Health, metrics: Any) -> None:
        self.health, self.metrics = health, metrics
        self.faults = 0  # crashes not explained by an unreachable broker

    @property
    def crashed(self) -> bool:
        return bool(self.health.crashed)

    @property
    def exit_code(self) -> int:
        """The code a crashed process ends with."""
        return EXIT_PROBLEM if self.faults else EXIT_UNAVAILABLE

    def record(self, name: str, exc: BaseException) -> None:
        """`name` failed with `exc`: readiness and liveness fail, and the exit code says why."""
        self.health.crashed[name] = f"{type(exc).__name__}: {exc}"
        self.metrics.agent_crashes.labels(name).inc()
        if not isinstance(exc, BROKER_UNAVAILABLE):
            self.faults += 1

    async def on_agent_error(self, agent: Any, exc: BaseException) -> None:
        name = getattr(agent, "name", str(agent))
        self.record(name, exc)
        log.critical("agent %s crashed: %s: %s; stopping this process (exit code %d) so "
                     "its supervisor restarts it", name, type(exc).__name__, exc,
                     self.exit_code, exc_info=exc)
        # The same path as SIGTERM: agents stop, the pipeline drains what is consistent.
        os.kill(os.getpid(), signal.SIGTERM)


class ShutdownDeadline:
    """Once shutdown begins, the process ends within `bound_s` even if the broker never
    answers again: faust's stop would wait for the producer and the group for minutes.
    Only what was already committed counts; the next start redoes the rest."""

    def __init__(self, bound_s: float, health: Health, crash: CrashPolicy | None = None
                 ) -> None:
        self.bound_s, self.health, self.crash = bound_s, health, crash
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            return
        self.health.stopping.set()
        self._timer = threading.Timer(self.bound_s, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _expire(self) -> None:
        code = self.crash.exit_code if self.crash is not None and self.crash.crashed \
            else EXIT_UNAVAILABLE
        log.critical("shutdown did not finish within %.0fs (is the broker reachable?); "
                     "exiting with code %d without the final commit: the next start resumes "
                     "from the last checkpoint", self.bound_s, code)
        logging.shutdown()
        os._exit(code)


class BoundedWorker(faust.Worker):
    """faust's worker whose SIGTERM/SIGINT also arm a `ShutdownDeadline`, without the
    terminal spinner."""

    def __init__(self, app: faust.App, deadline: ShutdownDeadline, **options: Any) -> None:
        super().__init__(app, **options)
        self.refstream_deadline = deadline
        # faust's progress spinner writes cursor escape codes into the output, which is a
        # log file or a collector far more often than a terminal.
        self.spinner = None

    async def start(self) -> None:
        # A start that fails (a stage whose broker never answered within the client bound)
        # stops the process as faust does, but with refstream's exit code: 4 for a broker
        # that did not answer, 1 for anything else.
        try:
            await super().start()
        except Exception as exc:
            if self.refstream_deadline.crash is not None:
                self.refstream_deadline.crash.record("start", exc)
            raise

    def _on_sigterm(self) -> None:
        self.refstream_deadline.arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self.refstream_deadline.arm()
        super()._on_sigint()


def tune_gc(young_threshold: int) -> None:
    """Fewer young collections, and none of them re-scanning what startup built: Python's
    default (a young collection every 700 net allocations) made a worker, which allocates
    dozens of objects per record, collect every few records. Cyclic garbage is still found,
    only later; reference counting frees everything else at once, as before."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def run_supervised(settings: Settings, metrics: WorkerMetrics | ProcessMetrics, loglevel: str,
                   build: Callable[[Health, CrashPolicy], faust.App]) -> int:
    """Run a long-lived faust process (worker, projector) until SIGTERM: metrics, /healthz and
    /readyz on the metrics port, readiness following a broker probe, a crashed agent ending
    it with exit 1 (4 if the broker did not answer), a shutdown that cannot finish cut off
    after REFSTREAM_SHUTDOWN_TIMEOUT_S."""
    mode.loop.use(settings.event_loop)  # before faust creates its loop
    health = Health()
    crash = CrashPolicy(health, metrics)
    server = serve_http(metrics, health, settings.metrics_host, settings.metrics_port)
    log.warning("metrics on http://%s:%d/metrics (event loop: %s)", settings.metrics_host,
                server.server_port, type(asyncio.get_event_loop_policy()).__module__)
    probe = BrokerProbe(settings, settings.client_timeout_s / 4)
    watch_broker(probe, health, metrics, settings.broker_probe_interval_s)
    deadline = ShutdownDeadline(settings.shutdown_timeout_s, health, crash)
    worker = BoundedWorker(build(health, crash), deadline, loglevel=loglevel, quiet=True,
                           daemon=True, override_logging=False)
    tune_gc(settings.gc_young_threshold)
    metrics.gc_pauses.install()
    code = EXIT_OK
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        health.stopping.set()
        metrics.gc_pauses.uninstall()
        # What tune_gc froze becomes collectable again, so the interpreter's exit frees it
        # (frozen, duckdb's nanobind objects outlived their module: a leak report per exit).
        gc.unfreeze()
        deadline.disarm()
        server.shutdown()
        probe.close()
    if crash.crashed:
        log.critical("exiting with code %d: an agent or the start failed (%s)", crash.exit_code,
                     health.why_not_ready())
        return crash.exit_code
    return code
