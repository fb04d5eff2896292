"""`refstream worker`: run the faust app's agents until SIGTERM/SIGINT, then drain and stop.

Stopping comes from outside (signals handled by faust's Worker); an agent never calls
`app.stop()` itself, which hangs in faust's wait_empty. On SIGTERM faust stops the agents,
then the pipeline's stop hook flushes outputs and commits a final checkpoint. A crashed
agent sends the process the same SIGTERM and the worker exits 1; a shutdown that cannot
finish (broker down) is cut off after REFSTREAM_SHUTDOWN_TIMEOUT_S (exit 4).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from refstream.rewards.rules import Rules
from refstream.streams.faust_app import build_app
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.settings import Settings
from refstream.streams.supervision import configure_logging, run_supervised
from refstream.streams.topics import ensure_topics


def run_worker(settings: Settings, args: argparse.Namespace, rules: Rules) -> int:
    """`rules` as the CLI resolved them (the pipeline's, and ingest's allowed lateness)."""
    configure_logging(args.loglevel)
    ensure_topics(settings)
    archive = Path(args.archive) if args.archive else None
    metrics = WorkerMetrics()
    return run_supervised(settings, metrics, args.loglevel, lambda health, crash: build_app(
        settings, rules, with_ingest=not args.no_ingest,
        with_pipeline=not args.no_pipeline, archive_dir=archive,
        metrics=metrics, health=health, crash=crash))
