"""Session-wide test fixtures: one real Kafka broker per test session, and unique topics.

Broker choice (REFSTREAM_TEST_KAFKA=auto|local|docker, default auto): an external
broker from KAFKA_BOOTSTRAP_SERVERS wins; else a Kafka container if a Docker engine
answers; else a LocalKafka JVM on free ports in a temp dir (see deploy/kafka.sh).

Under pytest-xdist (`make test` runs two workers) every worker is its own session with its
own broker; `distribution_unit` keeps tests that share something costlier on one worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from refstream.deploy.kafka_launcher import (
    LocalKafka,
    LocalKafkaError,
    free_ports,
    single_node_defaults,
)

# Matches deploy/kafka_launcher.py (Kafka 3.9.x); Confluent 7.9 ships Apache Kafka 3.9.
KAFKA_IMAGE = os.environ.get("REFSTREAM_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")
# Generous: the first session on a machine also downloads the jars via Maven, and
# CI machines with 2 cores start the JVM several times slower than a laptop.
LOCAL_START_TIMEOUT_S = 240.0


def _runs_local_kafka() -> bool:
    """Whether kafka_bootstrap will start LocalKafka JVMs (no external broker, no Docker)."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip():
        return False
    backend = os.environ.get("REFSTREAM_TEST_KAFKA", "auto").strip().lower()
    return backend == "local" or (backend == "auto" and not _docker_engine_answers())


def pytest_sessionstart(session: pytest.Session) -> None:
    """With xdist, the controller fetches the broker jars before the workers start, so two
    workers of a fresh clone do not both run Maven into the same caches."""
    config = session.config
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        return
    if _runs_local_kafka():
        try:
            LocalKafka().fetch_jars()
        except LocalKafkaError as exc:
            pytest.exit(f"could not fetch the Kafka broker jars: {exc}", returncode=3)


# Test packages whose tests share something costlier than a test: the conformance tests one
# registry JVM and the Maven builds of the Java program and the registry (same target/ dirs);
# the failure tests `own_broker` (tests/failure/conftest.py), a broker they kill and restart.
SHARED_PACKAGES = ("tests/conformance/", "tests/failure/")


def distribution_unit(nodeid: str) -> str:
    """What one xdist worker runs as a whole: its test package for SHARED_PACKAGES, else
    its file (so a module-scoped fixture, such as a secure broker, is built once)."""
    path = nodeid.split("::", 1)[0]
    for package in SHARED_PACKAGES:
        if path.startswith(package):
            return package
    return path


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (what `make test` uses), with the SHARED_PACKAGES kept whole.

    pytest-xdist's own `loadgroup` cannot do it on pytest 9, whose node ids ignore the
    group suffix that xdist writes."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedPackageScheduling(LoadFileScheduling):  # type: ignore[misc]  # untyped
        def _split_scope(self, nodeid: str) -> str:
            return distribution_unit(nodeid)

    return SharedPackageScheduling(config, log)


def _docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run([docker, "info"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _container_env(props: Mapping[str, str]) -> dict[str, str]:
    """server.properties keys as Confluent-image env vars (a.b.c -> KAFKA_A_B_C)."""
    return {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in props.items()}


@contextlib.contextmanager
def _docker_kafka() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.9 kept it at the old path
        from testcontainers.kafka import KafkaContainer

    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    # Same broker behaviour as the local JVM, so tests cannot pass on one and not the other.
    for name, value in _container_env(single_node_defaults()).items():
        container.with_env(name, value)
    with container:
        yield container.get_bootstrap_server()


@contextlib.contextmanager
def _local_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, controller_port = free_ports(2)
    kafka = LocalKafka(
        port=port,
        controller_port=controller_port,
        data_dir=tmp_path_factory.mktemp("kafka"),
        # An interrupted or killed pytest must not leave a JVM holding 512 MB behind.
        die_with_parent=True,
    )
    try:
        kafka.start(timeout=LOCAL_START_TIMEOUT_S)
    except LocalKafkaError as exc:
        pytest.fail(f"could not start the local Kafka broker: {exc}", pytrace=False)
    try:
        yield kafka.bootstrap
    finally:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap.servers of a real broker shared by the whole session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    backend = os.environ.get("REFSTREAM_TEST_KAFKA", "auto").strip().lower()
    if backend not in {"auto", "local", "docker"}:
        pytest.fail(f"REFSTREAM_TEST_KAFKA={backend!r}: use auto, local or docker", pytrace=False)
    use_docker = backend == "docker" or (backend == "auto" and _docker_engine_answers())
    broker = _docker_kafka() if use_docker else _local_kafka(tmp_path_factory)
    with broker as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="refstream-tests")
    try:
        yield admin
    finally:
        admin.close()


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic names no other test (or earlier run on the same broker) uses."""
    # The test name makes leftover topics on a shared broker traceable to their test.
    test_name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:80]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test_name}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def kafka_topic(
    kafka_admin: KafkaAdminClient, unique_topic: Callable[[str], str]
) -> Iterator[Callable[..., str]]:
    """Factory `kafka_topic(prefix="t", partitions=1, configs=None) -> name`.

    Creates the topic, waits until every partition has a leader, and deletes it
    after the test so a long-lived broker does not accumulate test topics.
    """
    created: list[str] = []

    def create(
        prefix: str = "t", partitions: int = 1, configs: Mapping[str, str] | None = None
    ) -> str:
        name = unique_topic(prefix)
        kafka_admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "configs": dict(configs or {}),
                }
            },
            wait_for_metadata=True,
        )
        created.append(name)
        return name

    yield create
    if created:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(created)
