"""Publishing shop events to the shop topics (`refstream produce`), Avro-encoded, keyed by shop.

This is also the reference for shop producers in Python: one topic per event type, the
shop id as key, single-object Avro as value, acks from all in-sync replicas, idempotent
retries (a batch re-sent after a lost acknowledgement is written once), and a bound on
every wait: a broker that stays away longer than the settings' client timeout ends the
call with `BrokerUnavailable` instead of a hang.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from refstream.schemas.codec import Codec
from refstream.schemas.errors import RefstreamError
from refstream.schemas.shop import ShopEvent
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames


def kafka_producer(settings: Settings, **overrides: Any) -> Any:
    """kafka-python's producer, idempotent, with every wait bounded by `client_timeout_s`:
    a record not acknowledged within it fails (retries happen inside that time), and a
    send blocked on a full buffer or missing metadata gives up after it."""
    from kafka import KafkaProducer

    bound_ms = int(settings.client_timeout_s * 1000)
    request_ms = max(1000, min(30_000, bound_ms // 2))
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 16 * 1024 * 1024,
        # delivery_timeout_ms >= linger_ms + request_timeout_ms, as Kafka requires.
        "request_timeout_ms": request_ms,
        "delivery_timeout_ms": max(bound_ms, request_ms + 20),
        "max_block_ms": bound_ms,
        "bootstrap_timeout_ms": bound_ms,
        **settings.kafka_security(),
    }
    options.update(overrides)
    return KafkaProducer(**options)


class DeliveryFailures:
    """Counts acknowledgements and keeps the first delivery error (callbacks of the sends)."""

    def __init__(self) -> None:
        self.acknowledged = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    def ok(self, _metadata: Any) -> None:
        self.acknowledged += 1

    def error(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = exc


def publish_shop_events(settings: Settings, events: Iterable[ShopEvent],
                        progress: Callable[[int], None] | None = None) -> int:
    """Send every event to its shop topic; returns the count once all are acknowledged.

    Raises `BrokerUnavailable` / `BrokerRefused` (exit 4 / 3) when the broker does not
    acknowledge everything within the bound, saying how many events it did acknowledge.
    """
    from kafka.errors import KafkaError

    from refstream.streams.exit_codes import broker_error

    codec = Codec()
    names = TopicNames.from_settings(settings)
    own_topic_shops = frozenset(settings.shop_principals.values())
    bound_s = settings.client_timeout_s
    outcome = DeliveryFailures()
    sent = 0
    try:
        producer = kafka_producer(settings)
    except KafkaError as exc:
        raise broker_error("publishing shop events", settings.kafka_bootstrap, exc,
                           bound_s) from exc
    try:
        try:
            for event in events:
                topic = names.topic_for(event.shop_id, event.event_type, own_topic_shops)
                future = producer.send(topic, key=event.shop_id.encode(),
                                       value=codec.encode(event))
                future.add_callback(outcome.ok)
                future.add_errback(outcome.error)
                sent += 1
                if progress is not None and sent % 5_000 == 0:
                    progress(5_000)
                if outcome.first_error is not None:
                    break
            producer.flush(timeout=bound_s)
        except KafkaError as exc:
            raise _undelivered(settings, outcome, sent, exc) from exc
        if outcome.first_error is not None or outcome.acknowledged < sent:
            raise _undelivered(settings, outcome, sent, outcome.first_error)
    finally:
        close_producer(producer, min(5.0, bound_s))
    return sent


def close_producer(producer: Any, timeout_s: float) -> None:
    """Close, giving up on records still unacknowledged after `timeout_s` (the caller has
    already reported them). kafka-python's close() raises while records are pending and
    leaves the producer open, to try again, and fail noisily, when garbage-collected."""
    from kafka.errors import KafkaError

    try:
        producer.close(timeout=timeout_s)
    except KafkaError:
        producer._sender.force_close()  # no public way to abandon the unacknowledged tail
        producer._closed = True


def _undelivered(settings: Settings, outcome: DeliveryFailures, sent: int,
                 cause: BaseException | None) -> RefstreamError:
    from kafka.errors import KafkaTimeoutError

    from refstream.streams.exit_codes import broker_error

    error = broker_error(
        f"publishing shop events ({outcome.acknowledged} of {sent} sent acknowledged, "
        f"{outcome.failed} failed)", settings.kafka_bootstrap,
        cause or KafkaTimeoutError("not acknowledged"), settings.client_timeout_s)
    return error
