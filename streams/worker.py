"""`refstream worker`: run the faust app's agents until SIGTERM/SIGINT, then drain and stop.

Stopping comes from outside (signals handled by faust's Worker); an agent never calls
`app.stop()` itself, which hangs in faust's wait_empty. On SIGTERM faust stops the agents,
then the pipeline's stop hook flushes outputs and commits a final checkpoint. A crashed
agent sends the process the same SIGTERM and the worker exits 1; a shutdown that cannot
finish (broker down) is cut off after REFSTREAM_SHUTDOWN_TIMEOUT_S (exit 4).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.streams.exit_codes import EXIT_OK, EXIT_PROBLEM
from refstream.streams.faust_app import build_app
from refstream.streams.metrics import Health, WorkerMetrics, serve_http, watch_broker
from refstream.streams.settings import Settings
from refstream.streams.supervision import (
    BoundedWorker,
    BrokerProbe,
    CrashPolicy,
    ShutdownDeadline,
    configure_logging,
)
from refstream.streams.topics import ensure_topics

log = logging.getLogger("refstream.worker")


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    configure_logging(args.loglevel)
    ensure_topics(settings)
    rules = None
    if not args.no_pipeline:
        rules = load_rules(Path(args.rules) if args.rules
                           else settings.rules_path or Path(default_rules_path()))
    metrics, health = WorkerMetrics(), Health()
    crash = CrashPolicy(health, metrics)
    server = serve_http(metrics, health, settings.metrics_host, settings.metrics_port)
    log.warning("metrics on http://%s:%d/metrics", settings.metrics_host, server.server_port)
    probe = BrokerProbe(settings, settings.client_timeout_s / 4)
    watch_broker(probe, health, metrics, settings.broker_probe_interval_s)
    archive = Path(args.archive) if args.archive else None
    app = build_app(settings, rules, with_ingest=not args.no_ingest, archive_dir=archive,
                    metrics=metrics, health=health, crash=crash)
    deadline = ShutdownDeadline(settings.shutdown_timeout_s, health, crash)
    worker = BoundedWorker(app, deadline, loglevel=args.loglevel, quiet=True, daemon=True,
                           override_logging=False)
    code = EXIT_OK
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        health.stopping.set()
        deadline.disarm()
        server.shutdown()
        probe.close()
    if crash.crashed:
        log.critical("exiting with code %d: agent crashed (%s)", EXIT_PROBLEM,
                     health.why_not_ready())
        return EXIT_PROBLEM
    return code
