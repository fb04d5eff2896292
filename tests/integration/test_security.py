"""The secure broker for real: TLS and SCRAM-SHA-512 authenticate, the ACL table authorizes.

One LocalKafka in secure mode for the module, ACLs applied as the admin; then every
principal does what its role allows, and each forbidden action fails with the broker's
authorization (or authentication) error rather than silently.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import (
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from refstream.deploy.acls import FINANCE_GROUP, apply_acls, roles_for
from refstream.deploy.kafka_launcher import (
    BrokerNotReadyError,
    LocalKafka,
    LocalKafkaError,
    describe_cluster,
    free_ports,
)
from refstream.deploy.security import ClientProtocol
from refstream.replay.sources import topic_records
from refstream.schemas.codec import Codec
from refstream.schemas.events import Tick
from refstream.schemas.shop import ShopClick
from refstream.streams.producer import publish_shop_events
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    settings_env,
    wait_for,
)

pytestmark = pytest.mark.integration

# Same allowance as the session broker in tests/conftest.py: 2-core CI machines are slow.
START_TIMEOUT_S = 240.0
# A wrong password never gets an answer kafka-python can tell apart from an unreachable
# broker: it retries until this runs out, and the broker log says why.
BOOTSTRAP_TIMEOUT_MS = 5_000
READ_TIMEOUT_S = 30.0
NAMES = TopicNames.from_settings(Settings())
CODEC = Codec()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A secure broker with refstream's topics (created by the admin) and ACLs applied."""
    port, sasl_port, controller_port = free_ports(3)
    kafka = LocalKafka.secure(
        port=port,
        sasl_port=sasl_port,
        controller_port=controller_port,
        data_dir=tmp_path_factory.mktemp("secure-kafka"),
        die_with_parent=True,
    )
    try:
        kafka.start(timeout=START_TIMEOUT_S)
    except LocalKafkaError as exc:
        pytest.fail(f"could not start the secure Kafka broker: {exc}", pytrace=False)
    try:
        admin = settings_as(kafka, "admin")
        ensure_topics(admin)
        _apply(kafka, admin)
        yield kafka
    finally:
        kafka.stop()


def settings_as(
    kafka: LocalKafka, principal: str, protocol: ClientProtocol = "SASL_SSL",
    base: Settings | None = None,
) -> Settings:
    """Settings from the REFSTREAM_* variables the broker hands `principal`.

    Going through the variable names checks that they are the ones Settings reads.
    """
    fields = {
        name.removeprefix("REFSTREAM_").lower(): value
        for name, value in kafka.client_env(principal, protocol).items()
    }
    template = base or Settings()
    return Settings(**{**template.model_dump(), **fields})


def _apply(kafka: LocalKafka, settings: Settings) -> Any:
    admin = KafkaAdminClient(**kafka.client_config("admin"))
    try:
        return apply_acls(admin, roles_for(settings))
    finally:
        admin.close()


def _produce(config: dict[str, object], topic: str, value: bytes = b"payload") -> int:
    producer = KafkaProducer(**config, max_block_ms=15_000)
    try:
        return int(producer.send(topic, key=b"shop-1", value=value).get(timeout=15).offset)
    finally:
        producer.close(timeout=5)


def _read_all(config: dict[str, object], topic: str) -> list[Any]:
    """Partition 0 from the beginning to its end, the way replay and archive read."""
    consumer = KafkaConsumer(**config, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        start = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, start)
        records: list[Any] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while consumer.position(tp) < end and time.monotonic() < deadline:
            records.extend(consumer.poll(timeout_ms=500).get(tp, []))
        return records
    finally:
        consumer.close()


def _read_with_group(config: dict[str, object], topic: str, group: str) -> list[Any]:
    """Consume `topic` in consumer group `group` until a record arrives, then commit."""
    consumer = KafkaConsumer(
        topic, **config, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        records: list[Any] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        consumer.commit()
        return records
    finally:
        consumer.close()


def _tick() -> Tick:
    # A valid log event: the canonical log only ever holds decodable records.
    stream_time = time.time_ns() // 1_000_000
    return Tick(f"tick:shop-1:{stream_time}", "shop-1", stream_time)


def _click(n: int) -> ShopClick:
    return ShopClick(
        event_id=f"secure-click-{n}-{time.time_ns()}", shop_id="shop-1",
        occurred_at=datetime(2026, 10, 5, 9, n, tzinfo=UTC), visitor_id=f"v{n}",
        landing_url=f"https://shop-1.example/?ref=R{n}", ip=f"198.51.100.{n}",
        user_agent="Mozilla/5.0", referral_code=f"R-{n}",
    )


# --------------------------------------------------------------------------- the setup


def test_acls_apply_idempotently(secure_kafka: LocalKafka) -> None:
    again = _apply(secure_kafka, Settings())
    assert again.created == ()
    assert again.removed == ()
    assert len(again.present) > 0


def test_only_the_secure_listeners_exist(secure_kafka: LocalKafka) -> None:
    props = secure_kafka.server_properties()
    assert props["listener.security.protocol.map"] == "SSL:SSL,SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:broker;User:admin"


# --------------------------------------------------------------------------- allowed


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_shop_producer_writes_its_topics(
    secure_kafka: LocalKafka, protocol: ClientProtocol
) -> None:
    settings = settings_as(secure_kafka, "shop-producer", protocol)
    assert publish_shop_events(settings, [_click(1)]) == 1


def test_pipeline_reads_shop_topic_in_its_group_and_writes_the_log(
    secure_kafka: LocalKafka,
) -> None:
    _produce(secure_kafka.client_config("shop-producer"), NAMES.shop("share"))
    pipeline = secure_kafka.client_config("pipeline")
    records = _read_with_group(pipeline, NAMES.shop("share"), Settings().app_id)
    assert records, "the pipeline read nothing from the shop topic"
    assert _produce(pipeline, NAMES.log, CODEC.encode(_tick())) >= 0
    assert _produce(pipeline, NAMES.reward_due) >= 0


def test_finance_reads_reward_due_with_its_group(secure_kafka: LocalKafka) -> None:
    _produce(secure_kafka.client_config("admin"), NAMES.reward_due, b"reward")
    records = _read_with_group(
        secure_kafka.client_config("finance", "SSL"), NAMES.reward_due, FINANCE_GROUP
    )
    assert records


def test_replay_reads_the_canonical_log_with_a_security_mapping(secure_kafka: LocalKafka) -> None:
    tick = _tick()
    _produce(secure_kafka.client_config("pipeline"), NAMES.log, CODEC.encode(tick))
    settings = settings_as(secure_kafka, "replay")
    records = topic_records(settings.kafka_bootstrap, NAMES.log, settings.kafka_security())
    assert tick in [event for _, _, _, event in records]


# --------------------------------------------------------------------------- forbidden


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SSL"])
def test_shop_producer_cannot_read_the_log(
    secure_kafka: LocalKafka, protocol: ClientProtocol
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        _read_all(secure_kafka.client_config("shop-producer", protocol), NAMES.log)


def test_shop_producer_cannot_write_reward_due(secure_kafka: LocalKafka) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        _produce(secure_kafka.client_config("shop-producer"), NAMES.reward_due)


def test_finance_cannot_read_the_log(secure_kafka: LocalKafka) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        _read_all(secure_kafka.client_config("finance"), NAMES.log)


@pytest.mark.parametrize("idempotent", [True, False])
def test_finance_cannot_write_reward_due(secure_kafka: LocalKafka, idempotent: bool) -> None:
    config = {**secure_kafka.client_config("finance"), "enable_idempotence": idempotent}
    # Finance may write no topic at all: an idempotent producer is already refused its
    # producer id (cluster authorization), a plain one the write itself.
    expected = "ClusterAuthorizationFailed" if idempotent else "TopicAuthorizationFailed"
    with pytest.raises(KafkaError, match=expected):
        _produce(config, NAMES.reward_due)


@pytest.mark.parametrize(
    ("principal", "group"),
    [("finance", "someone-elses-group"), ("pipeline", FINANCE_GROUP)],
)
def test_a_principal_cannot_use_another_consumer_group(
    secure_kafka: LocalKafka, principal: str, group: str
) -> None:
    topic = NAMES.reward_due if principal == "finance" else NAMES.shop("share")
    with pytest.raises(GroupAuthorizationFailedError):
        _read_with_group(secure_kafka.client_config(principal), topic, group)


def test_wrong_password_fails_authentication(secure_kafka: LocalKafka) -> None:
    config = {**secure_kafka.client_config("finance"), "sasl_plain_password": "not-the-password"}
    log_size = secure_kafka.log_file.stat().st_size
    with pytest.raises(KafkaError):
        KafkaAdminClient(**config, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS)
    # The client cannot tell a refused login from a dead broker; the broker can.
    wait_for(
        lambda: "invalid credentials with SASL mechanism SCRAM-SHA-512"
        in secure_kafka.log_file.read_bytes()[log_size:].decode(errors="replace"),
        10, "the broker to log the failed authentication",
    )


@pytest.mark.parametrize("listener", ["SSL", "SASL_SSL"])
def test_plaintext_connection_to_a_tls_port_fails(
    secure_kafka: LocalKafka, listener: str
) -> None:
    address = secure_kafka.bootstrap if listener == "SSL" else secure_kafka.sasl_bootstrap
    with pytest.raises(BrokerNotReadyError, match="did not answer"):
        describe_cluster(address, timeout=5)


def test_tls_port_demands_a_client_certificate(secure_kafka: LocalKafka) -> None:
    material = secure_kafka.security_material()
    anonymous = ssl.create_default_context(cafile=str(material.ca_file))
    with pytest.raises(BrokerNotReadyError):
        describe_cluster(secure_kafka.bootstrap, timeout=5, ssl_context=anonymous)
    # Control: the same request with a certificate of the CA is answered.
    metadata = describe_cluster(
        secure_kafka.bootstrap, timeout=5, ssl_context=material.broker_ssl_context()
    )
    assert metadata.broker_ids == (secure_kafka.node_id,)
    assert metadata.cluster_id == secure_kafka.cluster_id()


def test_the_launcher_sees_the_secure_broker_ready(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    """Readiness over mutual TLS as the broker; a launcher for another cluster says no."""
    assert secure_kafka.is_ready()
    other = dataclasses.replace(secure_kafka, data_dir=tmp_path / "other")
    shutil.copytree(secure_kafka.security_dir, other.security_dir)  # the same certificates
    other.log_dirs.mkdir(parents=True)
    (other.log_dirs / "meta.properties").write_text("cluster.id=another-cluster\n")
    assert not other.is_ready()


def test_kafka_python_plaintext_client_cannot_bootstrap(secure_kafka: LocalKafka) -> None:
    with pytest.raises(KafkaError):
        KafkaAdminClient(
            bootstrap_servers=secure_kafka.bootstrap, bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS
        )


# --------------------------------------------------------------------------- end to end


def test_worker_over_sasl_ssl_ingests_into_the_log(
    secure_kafka: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `refstream worker` as `pipeline` over SCRAM/TLS, shop and replay likewise."""
    isolated = isolated_settings(secure_kafka.sasl_bootstrap, tmp_path, partitions=1)
    ensure_topics(settings_as(secure_kafka, "admin", base=isolated))
    _apply(secure_kafka, isolated)  # ACLs follow the topic prefixes and app id
    pipeline_env = secure_kafka.client_env("pipeline")
    for name, value in pipeline_env.items():
        monkeypatch.setenv(name, value)  # WorkerProcess passes os.environ on
    worker = WorkerProcess(isolated).start()
    try:
        click = _click(7)
        assert publish_shop_events(settings_as(secure_kafka, "shop-producer", base=isolated),
                                   [click]) == 1
        replay = settings_as(secure_kafka, "replay", base=isolated)
        log_topic = TopicNames.from_settings(isolated).log

        def appended() -> bool:
            records = topic_records(replay.kafka_bootstrap, log_topic, replay.kafka_security())
            return any(event is not None and event.event_id == click.event_id
                       for _, _, _, event in records)

        wait_for(appended, 90, f"{click.event_id} in {log_topic} (worker log: {worker.log_path})")
    finally:
        assert worker.stop() == 0, worker.log_tail()


# --------------------------------------------------------------------------- topics principal


def _cli_as(kafka: LocalKafka, principal: str, settings: Settings, *args: str
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), **kafka.client_env(principal),
           "REFSTREAM_CLIENT_TIMEOUT_S": "20"}
    return subprocess.run([sys.executable, "-m", "refstream.cli", *args], env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_topics_create_fails_loudly_without_rights_and_works_as_the_topics_principal(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    isolated = isolated_settings(secure_kafka.sasl_bootstrap, tmp_path, partitions=1)
    _apply(secure_kafka, isolated)  # ACLs for this prefix; no topic exists yet
    names = TopicNames.from_settings(isolated)
    wanted = [*names.shop_topics, names.log, names.dlq, names.attributions,
              names.fraud_flags, names.reward_due, names.rewards]

    refused = _cli_as(secure_kafka, "pipeline", isolated, "topics", "create")
    assert refused.returncode == 5, refused.stdout + refused.stderr
    assert "refused to create" in refused.stderr and names.log in refused.stderr
    assert "Traceback" not in refused.stderr

    created = _cli_as(secure_kafka, "topics", isolated, "topics", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    assert f"created {len(wanted)} topics" in created.stdout

    admin = KafkaAdminClient(**secure_kafka.client_config("admin"))
    try:
        assert set(wanted) <= set(admin.list_topics())
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, names.log)])
    finally:
        admin.close()
    entries = {key: data["value"] for key, data in configs["topic"][names.log].items()}
    assert entries["unclean.leader.election.enable"] == "false"
    assert entries["min.insync.replicas"] == "1"  # one replica on this broker

    # Again: nothing is missing, nothing to refuse.
    again = _cli_as(secure_kafka, "topics", isolated, "topics", "create")
    assert again.returncode == 0 and "created 0 topics" in again.stdout, again.stderr

    # The pipeline writes the DLQ but may not read it: the broker's refusal, no traceback.
    _produce(secure_kafka.client_config("pipeline"), names.dlq, b"a dead letter")
    dlq = _cli_as(secure_kafka, "pipeline", isolated, "dlq", "list", "--timeout", "20")
    assert dlq.returncode == 5, dlq.stdout + dlq.stderr
    assert "Traceback" not in dlq.stderr and "refused" in dlq.stderr

