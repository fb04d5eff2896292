"""`refstream worker`: run the faust app's agents until SIGTERM/SIGINT, then drain and stop.

Stopping comes from outside (signals handled by faust's Worker); an agent never calls
`app.stop()` itself, which hangs in faust's wait_empty.
"""

from __future__ import annotations

import argparse
import logging

import faust

from refstream.streams.faust_app import build_app
from refstream.streams.settings import Settings
from refstream.streams.topics import ensure_topics


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.loglevel.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ensure_topics(settings)
    app = build_app(settings, with_ingest=not args.no_ingest)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True, daemon=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0
