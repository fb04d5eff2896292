"""The faust application: its settings, topics and agents (ingest now; pipeline, archiver later).

Agents stay thin: decode, call the shared logic (`Ingestor`, the pure core), encode, send.
The app is built by a factory from `Settings`; nothing here is a module-level global.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types.auth import AuthProtocol

from refstream.schemas.codec import Codec
from refstream.schemas.privacy import Pseudonymiser
from refstream.streams.ingest import Accepted, Duplicate, Ingestor, Rejected, SourceRef
from refstream.streams.settings import DEVELOPMENT_PII_SECRET, Settings
from refstream.streams.topics import TopicNames

log = logging.getLogger("refstream.streams")


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """faust credentials for the configured security protocol (None for PLAINTEXT)."""
    if settings.security_protocol == "PLAINTEXT":
        return None
    context: ssl.SSLContext | None = None
    if settings.security_protocol.endswith("SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
    if settings.security_protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value() if settings.sasl_password else None,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
        credentials.protocol = (
            AuthProtocol.SASL_SSL if context is not None else AuthProtocol.SASL_PLAINTEXT
        )
        return credentials
    return faust.SSLCredentials(context)


@dataclass
class IngestCounters:
    """What ingest did since start; the metrics module exports these."""

    accepted: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def raw_topic(app: faust.App, *names: str) -> Any:
    # Bytes in, bytes out: serialization belongs to refstream.schemas, not to faust.
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", internal=False)


def build_app(settings: Settings, *, with_ingest: bool = True) -> faust.App:
    """The faust app with the agents this worker runs."""
    if settings.pii_secret.get_secret_value() == DEVELOPMENT_PII_SECRET:
        log.warning("running with the development PII secret; set REFSTREAM_PII_SECRET")
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=broker_credentials(settings),
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=False,
        store="memory://",
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_request_size=16 * 1024 * 1024,
        consumer_max_fetch_size=16 * 1024 * 1024,
        stream_wait_empty=False,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
    )
    names = TopicNames.from_settings(settings)
    codec = Codec()
    app.refstream_counters = IngestCounters()  # type: ignore[attr-defined]
    if with_ingest:
        _register_ingest(app, settings, names, codec, app.refstream_counters)  # type: ignore[attr-defined]
    return app


def _register_ingest(app: faust.App, settings: Settings, names: TopicNames, codec: Codec,
                     counters: IngestCounters) -> None:
    ingestor = Ingestor(
        codec,
        Pseudonymiser(settings.pii_secret_bytes()),
        frozenset(settings.known_shops),
        settings.max_event_bytes,
    )
    source = raw_topic(app, *names.shop_topics)
    log_topic = raw_topic(app, names.log)
    dlq_topic = raw_topic(app, names.dlq)

    # Concurrency 1: one ordered stream per partition, so the log keeps the shops' order.
    @app.agent(source, name="refstream.ingest", concurrency=1)
    async def ingest(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            ref = SourceRef(message.topic, message.partition, message.offset)
            outcome = ingestor.accept(message.value, ref, names.event_type_of(message.topic),
                                      now_ms=int(time.time() * 1000))
            counters.by_topic[message.topic] = counters.by_topic.get(message.topic, 0) + 1
            match outcome:
                case Accepted(log_event):
                    counters.accepted += 1
                    await log_topic.send(key=log_event.shop_id.encode(),
                                         value=codec.encode(log_event))
                case Duplicate():
                    counters.duplicates += 1
                case Rejected(dead_letter):
                    counters.dead_letters += 1
                    log.warning("dead letter from %s[%d]@%d: %s", ref.topic, ref.partition,
                                ref.offset, dead_letter.error[:300])
                    await dlq_topic.send(key=message.key, value=codec.encode(dead_letter))
