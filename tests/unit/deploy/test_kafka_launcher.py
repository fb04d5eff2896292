"""LocalKafka without a JVM: generated config, CLI, pid-file safety and error paths.

The readiness probe against a real broker: tests/integration/test_local_kafka.py.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from refstream.deploy import kafka_launcher as kl
from refstream.deploy.kafka_launcher import (
    BrokerStartError,
    KafkaJarsError,
    Listener,
    LocalKafka,
    LocalKafkaConfigError,
    PortInUseError,
    StorageFormatError,
)


@pytest.fixture
def fake_jars(tmp_path: Path) -> Path:
    """A jars dir that passes jars_present(), so nothing reaches Maven."""
    jars = tmp_path / "libs"
    jars.mkdir()
    (jars / f"kafka_{kl.SCALA_VERSION}-{kl.KAFKA_VERSION}.jar").write_bytes(b"")
    return jars


def make(tmp_path: Path, **changes: object) -> LocalKafka:
    config: dict[str, object] = {
        "port": 19092,
        "controller_port": 19093,
        "data_dir": tmp_path / "kafka",
        "jars_dir": tmp_path / "libs",
    }
    config.update(changes)
    return LocalKafka(**config)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties


def test_single_node_kraft_properties(tmp_path: Path) -> None:
    props = make(tmp_path).server_properties()

    expected = {
        "process.roles": "broker,controller", "node.id": "1",
        "controller.quorum.voters": "1@127.0.0.1:19093",
        "listeners": "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:19092",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str((tmp_path / "kafka" / "data").resolve()),
    }
    assert {key: props.get(key) for key in expected} == expected


def test_test_broker_settings(tmp_path: Path) -> None:
    props = make(tmp_path).server_properties()

    expected = {
        "offsets.topic.replication.factor": "1", "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1", "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "1", "auto.create.topics.enable": "false",
    }
    assert {key: props.get(key) for key in expected} == expected
    assert int(props["message.max.bytes"]) >= 12 * 1024 * 1024 + 64 * 1024
    assert int(props["replica.fetch.max.bytes"]) >= int(props["message.max.bytes"])
    # Retention is per topic; a broker-wide value would silently override topic defaults.
    assert not [key for key in props if key.startswith("log.retention")]


def test_extra_properties_win(tmp_path: Path) -> None:
    props = make(
        tmp_path, extra_properties={"num.partitions": "3", "log.retention.ms": "1000"}
    ).server_properties()

    assert props["num.partitions"] == "3"
    assert props["log.retention.ms"] == "1000"


def test_extra_listener_is_advertised_and_mapped(tmp_path: Path) -> None:
    sasl = Listener("SASL_SSL", 19094, "SASL_SSL")
    props = make(
        tmp_path,
        extra_listeners=(sasl,),
        extra_properties={
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": "x required;",
        },
    ).server_properties()

    assert props["listeners"].split(",") == [
        "PLAINTEXT://127.0.0.1:19092",
        "SASL_SSL://127.0.0.1:19094",
        "CONTROLLER://127.0.0.1:19093",
    ]
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092,SASL_SSL://127.0.0.1:19094"
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"].split(",")
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")


@pytest.mark.parametrize(
    "changes",
    [
        {"controller_port": 19092},
        {"extra_listeners": (Listener("PLAINTEXT", 19095),)},
        {"heap": "lots"},
    ],
)
def test_inconsistent_config_is_rejected_at_construction(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    with pytest.raises(LocalKafkaConfigError):
        make(tmp_path, **changes)


def test_listener_validation() -> None:
    with pytest.raises(LocalKafkaConfigError, match="upper case"):
        Listener("plaintext", 9092)
    with pytest.raises(LocalKafkaConfigError, match="out of range"):
        Listener("PLAINTEXT", 70000)


def test_properties_round_trip_through_the_file_format(tmp_path: Path) -> None:
    props = {
        "a.b": "plain",
        "jaas": 'org.Module required username="u" password="p=1";',
        "path": "C:\\kafka\\data",
        "lead": "  spaced",
        "multi": "line1\nline2",
        "empty": "",
        "unicode": "/home/jörg/data-\U0001f600",
    }
    path = tmp_path / "x.properties"
    path.write_text(kl.render_properties(props, header="two\nlines"))

    assert kl.read_properties(path) == props
    # Kafka loads the file as ISO-8859-1: only ASCII may be written.
    assert path.read_bytes().isascii()
    assert path.read_text().startswith("# two\n# lines\n")


def test_property_keys_that_would_need_escaping_are_refused() -> None:
    with pytest.raises(LocalKafkaConfigError):
        kl.render_properties({"bad key": "x"})


def test_cluster_id_is_a_base64url_uuid() -> None:
    for _ in range(50):
        cluster_id = kl.new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_commands(tmp_path: Path) -> None:
    java = shutil.which("sh")  # any executable stands in; nothing is run
    assert java is not None
    kafka = make(tmp_path, java=java, heap="1g", jvm_options=("-Dx=y",))

    broker = kafka.broker_command()
    assert broker[0] == java
    assert "-Xmx1g" in broker and "-Dx=y" in broker
    assert broker[broker.index("-cp") + 1] == str(kafka.jars_dir / "*")
    assert broker[-2:] == ["kafka.Kafka", str(kafka.properties_file)]
    fmt = kafka.format_command("abc")
    assert fmt[fmt.index("kafka.tools.StorageTool") :] == [
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        "abc",
        "--config",
        str(kafka.properties_file),
        "--ignore-formatted",
    ]


def test_from_env() -> None:
    env = {
        "KAFKA_PORT": "29092",
        "KAFKA_CONTROLLER_PORT": "29093",
        "REFSTREAM_KAFKA_DIR": "/tmp/rs-kafka",
        "REFSTREAM_KAFKA_JARS": "/tmp/rs-libs",
        "REFSTREAM_KAFKA_HEAP": "256m",
    }
    kafka = LocalKafka.from_env(env)

    assert (kafka.port, kafka.controller_port, kafka.heap) == (29092, 29093, "256m")
    assert kafka.data_dir == Path("/tmp/rs-kafka").resolve()
    assert kafka.jars_dir == Path("/tmp/rs-libs").resolve()
    assert kafka.bootstrap == "127.0.0.1:29092"
    with pytest.raises(LocalKafkaConfigError, match="KAFKA_PORT"):
        LocalKafka.from_env({"KAFKA_PORT": "ninety"})


def test_default_jars_dir_is_versioned_under_the_user_cache() -> None:
    assert kl.default_jars_dir({}) == (
        Path.home() / ".cache" / "refstream" / f"kafka-{kl.KAFKA_VERSION}" / "libs"
    )


def test_pom_pins_the_launcher_kafka_version() -> None:
    pom = kl.POM_PATH.read_text()
    assert f"<kafka.version>{kl.KAFKA_VERSION}</kafka.version>" in pom
    assert f"kafka_{kl.SCALA_VERSION}" in pom


# --------------------------------------------------------------------------- ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = kl.free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        assert kl.port_is_free("127.0.0.1", port)


def test_start_refuses_a_taken_port_before_launching_anything(
    tmp_path: Path, fake_jars: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        kafka = make(tmp_path, port=port, controller_port=kl.free_port(), java="/nonexistent")
        with pytest.raises(PortInUseError, match=str(port)):
            kafka.start(timeout=5)
    assert not kafka.pid_file.exists()


# --------------------------------------------------------------------------- pid file safety


def test_pid_file_of_an_unrelated_process_is_not_trusted(tmp_path: Path) -> None:
    kafka = make(tmp_path)
    kafka.data_dir.mkdir(parents=True)
    # Our own pid: alive, but not a kafka.Kafka for this data dir. stop() must not kill us.
    kafka.pid_file.write_text(f"{os.getpid()}\n")

    assert kafka.pid() is None
    assert kafka.stop() is None
    assert not kafka.pid_file.exists()


def test_stop_without_anything_running_is_a_no_op(tmp_path: Path) -> None:
    assert make(tmp_path).stop() is None


def _lookalike(kafka: LocalKafka) -> int:
    """A process (not our child) whose command line is our broker's; returns its pid."""
    # The shell exits at once, so the sleeper is adopted by init (or a subreaper).
    started = subprocess.run(
        ["sh", "-c", '"$0" -c "import time; time.sleep(120)" kafka.Kafka "$1" '
                     ">/dev/null 2>&1 & echo $!",
         sys.executable, str(kafka.properties_file)],
        capture_output=True, text=True, check=True,
    )
    return int(started.stdout.strip())


def test_pid_file_of_a_broker_started_elsewhere_is_trusted_and_stopped(tmp_path: Path) -> None:
    kafka = make(tmp_path)
    kafka.data_dir.mkdir(parents=True)
    pid = _lookalike(kafka)
    kafka.pid_file.write_text(f"{pid}\n")
    other = make(tmp_path, port=19192)  # same data dir, other ports: still that broker
    try:
        assert kafka.pid() == pid
        assert other.pid() == pid
        assert other.stop(timeout=10) == pid
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert kafka.pid() is None and not kafka.pid_file.exists()
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def test_a_broker_command_for_another_data_dir_is_not_ours(tmp_path: Path) -> None:
    elsewhere = make(tmp_path / "elsewhere")
    kafka = make(tmp_path)
    kafka.data_dir.mkdir(parents=True)
    pid = _lookalike(elsewhere)
    try:
        kafka.pid_file.write_text(f"{pid}\n")
        assert kafka.pid() is None
        assert kafka.stop() is None
        assert psutil.Process(pid).is_running()  # not touched
    finally:
        psutil.Process(pid).kill()


# --------------------------------------------------------------------------- jars


def test_fetch_is_skipped_when_jars_are_present(
    tmp_path: Path, fake_jars: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_maven(*args: object, **kwargs: object) -> None:
        raise AssertionError("Maven must not run")

    monkeypatch.setattr(subprocess, "run", no_maven)
    assert make(tmp_path, jars_dir=fake_jars).fetch_jars() == fake_jars.resolve()


def test_fetch_without_maven_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KafkaJarsError, match="REFSTREAM_KAFKA_JARS"):
        make(tmp_path, jars_dir=tmp_path / "empty").fetch_jars()


# --------------------------------------------------------------------------- readiness probe
# Against a real broker: tests/integration/test_local_kafka.py and test_security.py.


def test_probe_against_nothing_is_not_ready(tmp_path: Path) -> None:
    kafka = make(tmp_path, port=kl.free_port(), controller_port=kl.free_port())
    assert not kafka.is_ready(timeout=0.5)
    with pytest.raises(kl.BrokerNotReadyError, match=kafka.bootstrap):
        kl.describe_cluster(kafka.bootstrap, timeout=0.5)


def test_a_port_that_accepts_is_told_from_one_that_does_not() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert kl.port_accepts("127.0.0.1", port, timeout=1)
    assert not kl.port_accepts("127.0.0.1", port, timeout=1)


def test_a_listener_that_speaks_no_kafka_is_not_ready(tmp_path: Path) -> None:
    """Something holds the port but never answers a Kafka request: not ready, quickly."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        kafka = make(tmp_path, port=server.getsockname()[1], controller_port=kl.free_port())
        assert not kafka.is_ready(timeout=0.5)


# --------------------------------------------------------------------------- start failures


def _fake_java(tmp_path: Path, *, format_ok: bool) -> str:
    """A stand-in for java: formats like StorageTool, then dies like a broker on a bad port."""
    script = tmp_path / "fake-java"
    script.write_text(
        "#!/bin/sh\n"
        'prev=""\n'
        'for arg in "$@"; do\n'
        '  [ "$prev" = "--config" ] && props="$arg"\n'
        '  [ "$arg" = "kafka.tools.StorageTool" ] && fmt=1\n'
        '  prev="$arg"\n'
        "done\n"
        'if [ -n "$fmt" ]; then\n'
        + (
            '  dir=$(sed -n "s/^log.dirs=//p" "$props"); mkdir -p "$dir"\n'
            '  printf "cluster.id=fakefakefakefakefakefa\\nnode.id=1\\n" > "$dir/meta.properties"\n'
            "  exit 0\n"
            if format_ok
            else '  echo "simulated format failure" >&2; exit 1\n'
        )
        + "fi\n"
        'echo "ERROR simulated: Address already in use"\n'
        "exit 1\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_broker_that_dies_during_startup_reports_the_log_tail(
    tmp_path: Path, fake_jars: Path
) -> None:
    kafka = make(
        tmp_path,
        port=kl.free_port(),
        controller_port=kl.free_port(),
        java=_fake_java(tmp_path, format_ok=True),
    )
    with pytest.raises(BrokerStartError, match="exited with code 1") as failure:
        kafka.start(timeout=20)

    assert "simulated: Address already in use" in str(failure.value)
    assert kafka.cluster_id() == "fakefakefakefakefakefa"
    assert kafka.pid() is None and not kafka.pid_file.exists()


def test_format_failure_is_reported_with_tool_output(tmp_path: Path, fake_jars: Path) -> None:
    kafka = make(
        tmp_path,
        port=kl.free_port(),
        controller_port=kl.free_port(),
        java=_fake_java(tmp_path, format_ok=False),
    )
    with pytest.raises(StorageFormatError, match="simulated format failure"):
        kafka.start(timeout=20)


# --------------------------------------------------------------------------- CLI


def test_cli_help_explains_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert kl.main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("KRaft", "fetch", "start", "stop", "status"):
        assert word in out


def test_cli_status_and_stop_when_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = ["--data-dir", str(tmp_path / "kafka")]
    assert kl.main(["status", *data_dir]) == 3
    assert "not running" in capsys.readouterr().out
    assert kl.main(["stop", *data_dir]) == 0
    assert "not running" in capsys.readouterr().out


def test_missing_java_is_named(tmp_path: Path) -> None:
    with pytest.raises(kl.JavaNotFoundError, match="not an executable"):
        make(tmp_path, java=str(tmp_path / "no-java")).broker_command()


def test_cli_reports_errors_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kl.main(["status", "--heap", "lots", "--data-dir", str(tmp_path)]) == 2
    assert "error: heap 'lots'" in capsys.readouterr().err


def test_cli_probes_the_ports_the_running_broker_was_started_with(tmp_path: Path) -> None:
    started = make(tmp_path, port=29092, controller_port=29093)
    started.data_dir.mkdir(parents=True)
    started.properties_file.write_text(kl.render_properties(started.server_properties()))

    today = make(tmp_path)  # e.g. a shell without the KAFKA_PORT of the original start
    adopted = kl._as_running(today)

    assert (adopted.port, adopted.controller_port) == (29092, 29093)
    assert adopted.data_dir == today.data_dir
