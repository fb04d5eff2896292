"""`refstream worker`: run the faust app's agents until SIGTERM/SIGINT, then drain and stop.

Stopping comes from outside (signals handled by faust's Worker); an agent never calls
`app.stop()` itself, which hangs in faust's wait_empty. On SIGTERM faust stops the agents,
then the pipeline's stop hook flushes outputs and commits a final checkpoint. A crashed
agent sends the process the same SIGTERM and the worker exits 1; a shutdown that cannot
finish (broker down) is cut off after REFSTREAM_SHUTDOWN_TIMEOUT_S (exit 4).
"""

from __future__ import annotations

from pathlib import Path

from refstream.rewards.rules import Rules
from refstream.streams.faust_app import build_app
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.settings import Settings
from refstream.streams.supervision import configure_logging, run_supervised
from refstream.streams.topics import ensure_topics


def run_worker(settings: Settings, rules: Rules, *, with_ingest: bool = True,
               with_pipeline: bool = True, archive: Path | None = None,
               loglevel: str = "warning") -> int:
    """`rules` as the CLI resolved them (the pipeline's, and ingest's allowed lateness)."""
    configure_logging(loglevel)
    ensure_topics(settings)
    metrics = WorkerMetrics()
    return run_supervised(settings, metrics, loglevel, lambda health, crash: build_app(
        settings, rules, with_ingest=with_ingest, with_pipeline=with_pipeline,
        archive_dir=archive, metrics=metrics, health=health, crash=crash))
