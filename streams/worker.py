"""`refstream worker`: run the faust app's agents until SIGTERM/SIGINT, then drain and stop.

Stopping comes from outside (signals handled by faust's Worker); an agent never calls
`app.stop()` itself, which hangs in faust's wait_empty. On SIGTERM faust stops the agents,
then the pipeline's stop hook flushes outputs and commits a final checkpoint.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import faust

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.streams.faust_app import build_app
from refstream.streams.metrics import Health, WorkerMetrics, serve_http
from refstream.streams.settings import Settings
from refstream.streams.topics import ensure_topics

log = logging.getLogger("refstream.worker")


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ensure_topics(settings)
    rules = None
    if not args.no_pipeline:
        rules = load_rules(Path(args.rules) if args.rules
                           else settings.rules_path or Path(default_rules_path()))
    metrics, health = WorkerMetrics(), Health()
    server = serve_http(metrics, health, settings.metrics_host, settings.metrics_port)
    log.warning("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)
    archive = Path(args.archive) if args.archive else None
    app = build_app(settings, rules, with_ingest=not args.no_ingest, archive_dir=archive,
                    metrics=metrics, health=health)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, daemon=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        health.stopping.set()
        server.shutdown()
    return 0
