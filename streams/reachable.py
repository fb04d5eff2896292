"""Starting an aiokafka client while the broker may be restarting: the bootstrap is tried
again, for up to REFSTREAM_CLIENT_TIMEOUT_S, instead of failing at the first refused
connection. Used by the worker's stages, faust's producer (`PatientProducer`) and the front
door's publisher; light enough for any command to import."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

log = logging.getLogger("refstream.reachable")

# The pauses between attempts to reach a broker at start: doubling from the first to the last.
START_RETRY_PAUSES_S = (0.5, 5.0)


async def start_when_reachable(start: Callable[[], Awaitable[None]], what: str,
                               bootstrap: str, bound_s: float) -> None:
    """`start()` of an aiokafka client (consumer, producer or admin), tried again while no
    broker answers its bootstrap, for up to `bound_s` (REFSTREAM_CLIENT_TIMEOUT_S): a broker
    that restarts while a worker starts delays the worker instead of stopping it. After that
    the last error is raised (a broker that did not answer: exit code 4)."""
    deadline = time.monotonic() + bound_s
    pause, longest = START_RETRY_PAUSES_S
    while True:
        try:
            await start()
            return
        except KafkaConnectionError as exc:  # raised by the bootstrap, before any other state
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning("%s: no broker at %s answered (%s); trying again for up to %.0fs",
                        what, bootstrap, exc, left)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, longest)


class PatientProducer(AIOKafkaProducer):  # type: ignore[misc]
    """aiokafka's producer whose `start` waits for a broker for up to `start_bound_s` (a
    constructor keyword of its own), for clients created by faust (its `_producer_type`)."""

    def __init__(self, *, start_bound_s: float, **options: Any) -> None:
        super().__init__(**options)
        self.start_bound_s = start_bound_s
        servers = options.get("bootstrap_servers", "localhost")  # aiokafka's own default
        self.bootstrap = servers if isinstance(servers, str) else ",".join(servers)

    async def start(self) -> None:
        await start_when_reachable(super().start, "faust's producer", self.bootstrap,
                                   self.start_bound_s)
