"""A shop credential speaks only for its shop, on the secure broker: shop A's principal can
write only A's own topics, and an event for shop B written there is dead-lettered by ingest,
never appended. Shop B's own principal gets B's events in."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAuthorizationFailedError

from refstream.deploy import security
from refstream.deploy.acls import apply_acls, create_scram_user, roles_for
from refstream.deploy.kafka_launcher import LocalKafka, LocalKafkaError, free_ports
from refstream.replay.sources import topic_raw_records, topic_records
from refstream.schemas.codec import Codec
from refstream.schemas.events import DeadLetter
from refstream.schemas.shop import ShopClick
from refstream.streams.producer import publish_shop_events
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, wait_for

pytestmark = pytest.mark.integration
START_TIMEOUT_S = 240.0
CODEC = Codec()
SHOPS = {"shop-acme": "acme", "shop-beta": "beta"}


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    port, sasl_port, controller_port = free_ports(3)
    kafka = LocalKafka.secure(port=port, sasl_port=sasl_port, controller_port=controller_port,
                              data_dir=tmp_path_factory.mktemp("shop-credentials-kafka"),
                              die_with_parent=True)
    try:
        kafka.start(timeout=START_TIMEOUT_S)
    except LocalKafkaError as exc:
        pytest.fail(f"could not start the secure Kafka broker: {exc}", pytrace=False)
    try:
        admin = KafkaAdminClient(**kafka.client_config("admin"))
        try:
            for principal in SHOPS:  # one SCRAM user per shop, as `kafka-users create` makes
                create_scram_user(admin, security.add_user(kafka.security_dir, principal))
        finally:
            admin.close()
        yield kafka
    finally:
        kafka.stop()


def as_principal(kafka: LocalKafka, principal: str, base: Settings) -> Settings:
    fields = {name.removeprefix("REFSTREAM_").lower(): value
              for name, value in kafka.client_env(principal, "SASL_SSL").items()}
    return Settings(**{**base.model_dump(), **fields})


def click(shop_id: str, event_id: str) -> ShopClick:
    return ShopClick(event_id=event_id, shop_id=shop_id,
                     occurred_at=datetime(2026, 11, 2, 10, 0, tzinfo=UTC), visitor_id="v1",
                     landing_url=f"https://{shop_id}.example/", ip="198.51.100.9",
                     user_agent="Mozilla/5.0")


def produce(config: dict[str, Any], topic: str, event: ShopClick) -> None:
    producer = KafkaProducer(**config, max_block_ms=15_000)
    try:
        producer.send(topic, key=event.shop_id.encode(), value=CODEC.encode(event)).get(15)
    finally:
        producer.close(timeout=5)


def test_shop_a_credential_cannot_get_an_event_for_shop_b_into_the_log(
        secure_kafka: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = isolated_settings(secure_kafka.sasl_bootstrap, tmp_path, partitions=1,
                             tick_interval_s=0, shop_principals=SHOPS)
    names = TopicNames.from_settings(base)
    ensure_topics(as_principal(secure_kafka, "admin", base))
    admin = KafkaAdminClient(**secure_kafka.client_config("admin"))
    try:
        apply_acls(admin, roles_for(base, shop_producers=("shop-producer",)))
    finally:
        admin.close()
    for name, value in secure_kafka.client_env("pipeline").items():
        monkeypatch.setenv(name, value)  # WorkerProcess passes os.environ on
    monkeypatch.setenv("REFSTREAM_SHOP_PRINCIPALS", json.dumps(SHOPS))
    monkeypatch.setenv("REFSTREAM_MERGE_IDLE_S", "0.5")
    worker = WorkerProcess(base, ["--no-pipeline"]).start()
    acme = secure_kafka.client_config("shop-acme")
    try:
        # Allowed: each shop publishes its own events on its own topics.
        assert publish_shop_events(as_principal(secure_kafka, "shop-acme", base),
                                   [click("acme", "acme-own")]) == 1
        assert publish_shop_events(as_principal(secure_kafka, "shop-beta", base),
                                   [click("beta", "beta-own")]) == 1
        # Refused by the broker: acme's credential on beta's topic, or on the shared topics.
        with pytest.raises(TopicAuthorizationFailedError):
            produce(acme, names.own_shop("beta", "click"), click("beta", "forged-on-beta"))
        with pytest.raises(TopicAuthorizationFailedError):
            produce(acme, names.shop("click"), click("beta", "forged-on-shared"))
        # Dead-lettered by ingest: an event for beta on acme's own topic; and beta's event
        # on the shared topics, written by the shared producer credential.
        produce(acme, names.own_shop("acme", "click"), click("beta", "forged-on-acme"))
        produce(secure_kafka.client_config("shop-producer"), names.shop("click"),
                click("beta", "beta-via-shared"))
        replay = as_principal(secure_kafka, "replay", base)
        appended: set[str] = set()

        def both_appended() -> bool:
            records = topic_records(replay.kafka_bootstrap, names.log, replay.kafka_security())
            appended.update(e.event_id for _, _, _, e in records if e is not None)
            return {"acme-own", "beta-own"} <= appended

        wait_for(both_appended, 90, f"both shops' own events in {names.log} "
                                    f"(worker log: {worker.log_path})")
        letters: list[DeadLetter] = []

        def dead_lettered() -> bool:
            records = topic_raw_records(secure_kafka.sasl_bootstrap, names.dlq,
                                        as_principal(secure_kafka, "admin", base)
                                        .kafka_security())
            letters[:] = [CODEC.decode(value) for _, _, _, value in records]
            return len(letters) >= 2

        wait_for(dead_lettered, 60, f"two dead letters in {names.dlq}")
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert appended == {"acme-own", "beta-own"}
    errors = [letter.error for letter in letters]
    assert len(errors) == 2, errors
    assert any(f"an event for shop 'beta' on {names.own_shop('acme', 'click')}, a topic only "
               "shop 'acme''s credential may write" in error for error in errors), errors
    assert any(f"an event for shop 'beta' on the shared topic {names.shop('click')}" in error
               for error in errors), errors

