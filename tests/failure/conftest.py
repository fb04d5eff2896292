"""A broker the failure tests may kill and restart: their own, not the session's (which
every other test shares). One for the whole tests/failure package: a JVM start costs a
minute or more on a small machine."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from refstream.deploy.kafka_launcher import LocalKafka, LocalKafkaError, free_ports

START_TIMEOUT_S = 240.0


@pytest.fixture(scope="package")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(port=port, controller_port=controller_port,
                       data_dir=tmp_path_factory.mktemp("own-kafka"), die_with_parent=True)
    try:
        kafka.start(timeout=START_TIMEOUT_S)
    except LocalKafkaError as exc:
        pytest.fail(f"could not start the failure tests' broker: {exc}", pytrace=False)
    try:
        yield kafka
    finally:
        kafka.stop()


def kill_broker(kafka: LocalKafka) -> None:
    """kill -9 of the broker JVM (no controlled shutdown), then forget its pid."""
    pid = kafka.pid()
    assert pid is not None, "the broker is not running"
    os.kill(pid, signal.SIGKILL)
    kafka.stop()  # reaps the process and removes its pid file


def restart_broker(kafka: LocalKafka) -> None:
    """Start it again on the same ports and data (a no-op while it runs)."""
    if kafka.pid() is None:
        kafka.start(timeout=START_TIMEOUT_S)
