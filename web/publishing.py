"""Where the edge's shop events go: the shop topics on Kafka, or a local JSON Lines event log.

The event log is the embedded default: the same lines `refstream run` reads (and `run
--append` folds into an existing database), one `write` per event on an O_APPEND file so
lines from concurrent writers never interleave.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

from refstream.schemas.codec import Codec
from refstream.schemas.shop import SHOP_MODELS, ShopEvent
from refstream.streams.exit_codes import broker_error
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames


class EventPublisher(Protocol):
    async def start(self) -> None: ...

    async def publish(self, event: ShopEvent) -> None: ...

    async def publish_record(self, record: dict[str, Any]) -> None:
        """A shop event as its JSON object (`event_type`, ISO `occurred_at`, no None values):
        the hot path's form, validated where it leaves for a broker."""

    async def stop(self) -> None: ...


def json_line(event: ShopEvent) -> bytes:
    """The event as `schemas.jsonl.to_json_object` writes it, one line: shop events are flat
    (strings, integers, `occurred_at`), so their fields are read directly, not dumped."""
    record = {k: v for k, v in vars(event).items() if v is not None}
    record["occurred_at"] = event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


class EventLogPublisher:
    """Appends each event as one JSON line to `path` (created with its folder)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    async def publish(self, event: ShopEvent) -> None:
        if self._fd is None:
            raise RuntimeError("the event log publisher was not started")
        os.write(self._fd, json_line(event))

    async def publish_record(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError("the event log publisher was not started")
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    async def stop(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class KafkaPublisher:
    """Publishes to shop.<event_type>, Avro single-object encoded, keyed by shop, acks=all:
    `publish` returns once the broker has the event."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._codec = Codec()
        self._names = TopicNames.from_settings(settings)
        self._producer: Any = None

    async def start(self) -> None:
        """Connected to the broker, waiting up to REFSTREAM_CLIENT_TIMEOUT_S for one that is
        restarting; then BrokerUnavailable (exit code 4)."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaConnectionError

        from refstream.streams.reachable import start_when_reachable

        settings = self._settings
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all",
            enable_idempotence=True, linger_ms=5, **settings.aiokafka_security())
        try:
            await start_when_reachable(producer.start, "the front door's producer",
                                       settings.kafka_bootstrap, settings.client_timeout_s)
        except KafkaConnectionError as exc:
            await producer.stop()
            raise broker_error("publishing to the shop topics", settings.kafka_bootstrap, exc,
                               settings.client_timeout_s) from exc
        self._producer = producer

    async def publish(self, event: ShopEvent) -> None:
        await self._producer.send_and_wait(self._names.shop(event.event_type),
                                           self._codec.encode(event),
                                           key=event.shop_id.encode())

    async def publish_record(self, record: dict[str, Any]) -> None:
        await self.publish(SHOP_MODELS[record["event_type"]].model_validate(record))

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def publisher_from_settings(settings: Settings) -> EventPublisher:
    if settings.web_publish_to == "kafka":
        return KafkaPublisher(settings)
    return EventLogPublisher(settings.web_event_log)
