"""A supervised faust process, as `refstream worker` runs one, towards a port where no broker
listens; run by test_supervision as a subprocess. With `stage`, a service of its own starts a
producer there first (as the worker's stages do); with `faust`, only the app's own producer
(refstream's faust app) tries. It imports what the worker's command imports (duckdb
included) and exits with the code `run_supervised` returns."""

from __future__ import annotations

import sys
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from mode import Service

import refstream.cli.main  # noqa: F401 - the worker command's imports
from refstream.deploy.kafka_launcher import free_port
from refstream.streams.faust_app import RefstreamApp
from refstream.streams.metrics import ProcessMetrics
from refstream.streams.reachable import start_when_reachable
from refstream.streams.settings import Settings
from refstream.streams.supervision import configure_logging, run_supervised

SETTINGS = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", client_timeout_s=1.0)


class Unreachable(Service):
    async def on_start(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=SETTINGS.kafka_bootstrap)
        await start_when_reachable(producer.start, "a stage's producer",
                                   SETTINGS.kafka_bootstrap, SETTINGS.client_timeout_s)


def build(health: Any, crash: Any) -> faust.App:
    app = RefstreamApp("unreachable", broker=f"kafka://{SETTINGS.kafka_bootstrap}",
                       web_enabled=False, store="memory://")
    app.client_timeout_s = SETTINGS.client_timeout_s
    if sys.argv[1:] == ["stage"]:
        app.add_dependency(Unreachable())
    return app


if __name__ == "__main__":
    configure_logging("info")
    sys.exit(run_supervised(SETTINGS, ProcessMetrics(), "info", build))
