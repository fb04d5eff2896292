"""The test broker is a real Kafka: the launcher's readiness probe, keyed round trips, big
records, stop and restart."""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from refstream.deploy.kafka_launcher import (
    LocalKafka,
    describe_cluster,
    free_port,
    free_ports,
    port_accepts,
)
from refstream.streams.settings import Settings

pytestmark = pytest.mark.integration

KEYS = [f"referrer-{i}" for i in range(10)]


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **config: int) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        # One in-flight request: retries can then never reorder a key's records.
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
        **config,
    )
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in records]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close(timeout=10)


def _consume_all(
    bootstrap: str, topic: str, expect: int, timeout: float = 60.0, **config: int
) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        # A real group: this also proves __consumer_offsets works with RF 1.
        group_id=f"{topic}-reader",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **config,
    )
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        consumer.commit()
    finally:
        consumer.close()
    assert len(records) == expect, f"read {len(records)} of {expect} records within {timeout}s"
    return records


def test_the_probe_describes_the_session_broker(kafka_bootstrap: str) -> None:
    metadata = describe_cluster(kafka_bootstrap, timeout=10)

    assert metadata.broker_ids == (1,)  # one node, unfenced
    assert metadata.controller_id == 1  # broker and controller in one JVM
    assert metadata.cluster_id


def test_ready_only_as_a_member_of_our_own_cluster(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A launcher whose data dir names another cluster must not take the broker for its own."""
    cluster_id = describe_cluster(kafka_bootstrap, timeout=10).cluster_id
    host, _, port = kafka_bootstrap.rpartition(":")
    launcher = LocalKafka(port=int(port), controller_port=free_port(), host=host,
                          data_dir=tmp_path)
    assert launcher.is_ready()  # not formatted yet: any cluster with node 1 will do

    meta = launcher.log_dirs / "meta.properties"
    meta.parent.mkdir(parents=True)
    meta.write_text("cluster.id=another-cluster\n")
    assert not launcher.is_ready()
    meta.write_text(f"cluster.id={cluster_id}\n")
    assert launcher.is_ready()


def test_keyed_round_trip_keeps_contents_and_per_key_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic("roundtrip", partitions=3)
    sent = [(KEYS[i % 10].encode(), f"{KEYS[i % 10]}:{i // 10}".encode()) for i in range(100)]

    _produce(kafka_bootstrap, topic, sent)
    received = _consume_all(kafka_bootstrap, topic, expect=100)

    assert sorted((r.key, r.value) for r in received) == sorted(sent)
    per_key: dict[bytes, list[bytes]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for record in received:
        per_key[record.key].append(record.value)
        partitions_of_key[record.key].add(record.partition)
    for key in KEYS:
        assert per_key[key.encode()] == [f"{key}:{n}".encode() for n in range(10)]
    assert all(len(parts) == 1 for parts in partitions_of_key.values())
    # Ten keys over three partitions: the default partitioner spreads them.
    assert len(set().union(*partitions_of_key.values())) > 1


def test_broker_accepts_a_12_mb_record(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic("big")
    payload = os.urandom(12 * 1024 * 1024)

    _produce(kafka_bootstrap, topic, [(b"big", payload)], max_request_size=16 * 1024 * 1024)
    (record,) = _consume_all(
        kafka_bootstrap, topic, expect=1, max_partition_fetch_bytes=16 * 1024 * 1024
    )

    assert record.value == payload


def test_stage_consumer_gets_a_record_larger_than_its_fetch_size_amid_a_backlog(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    """The stages fetch at most `fetch_max_partition_bytes` from a partition (1 MiB), while
    shop topics accept 16 MiB records so ingest can dead-letter them. A 12 MB record on one
    partition, with megabytes waiting on the others, must still arrive whole and in order:
    the broker answers with a whole record larger than the limit only for the first
    partition with data in a fetch, so this relies on aiokafka varying that order."""
    fetch_bytes = Settings.model_fields["fetch_max_partition_bytes"].default
    topic = kafka_topic("bigamid", partitions=3)
    big = os.urandom(12 * 1024 * 1024)
    assert len(big) > 10 * fetch_bytes
    small = [os.urandom(1024) for _ in range(3000)]  # 3 MB on each of the other partitions
    sent = {0: small, 1: [big, *small[:100]], 2: small}

    async def produce_and_read() -> dict[int, list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                    max_request_size=16 * 1024 * 1024)
        await producer.start()
        try:
            for partition, values in sent.items():
                for value in values:
                    await producer.send(topic, value, partition=partition)
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    max_partition_fetch_bytes=fetch_bytes)
        await consumer.start()
        got: dict[int, list[bytes]] = defaultdict(list)
        expected, received = sum(map(len, sent.values())), 0
        try:
            deadline = time.monotonic() + 60
            while received < expected:
                assert time.monotonic() < deadline, {p: len(v) for p, v in got.items()}
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    got[tp.partition].extend(r.value for r in records)
                    received += len(records)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(produce_and_read())
    assert got[1][0] == big
    assert dict(got) == sent


@pytest.mark.slow
@pytest.mark.failure
def test_stop_ends_the_jvm_and_restart_keeps_data(tmp_path: Path) -> None:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(
        port=port, controller_port=controller_port, data_dir=tmp_path, die_with_parent=True
    )
    try:
        kafka.start(timeout=180)
        first_pid = kafka.pid()
        assert first_pid is not None
        assert kafka.pid_file.read_text().strip() == str(first_pid)
        topic = f"restart-{tmp_path.name}"
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        try:
            admin.create_topics(
                {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
            )
        finally:
            admin.close()
        _produce(kafka.bootstrap, topic, [(b"k", b"before-restart")])

        assert kafka.stop() == first_pid
        assert not psutil.pid_exists(first_pid), "the broker JVM is still alive after stop()"
        assert not kafka.pid_file.exists()
        assert kafka.pid() is None
        assert not port_accepts(kafka.host, port, timeout=1)

        kafka.start(timeout=180)
        assert kafka.pid() not in (None, first_pid)
        _produce(kafka.bootstrap, topic, [(b"k", b"after-restart")])
        consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            values: list[bytes] = []
            deadline = time.monotonic() + 60
            while len(values) < 2 and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    values.extend(record.value for record in batch)
        finally:
            consumer.close()
        assert values == [b"before-restart", b"after-restart"]
    finally:
        kafka.stop()
    assert kafka.pid() is None
