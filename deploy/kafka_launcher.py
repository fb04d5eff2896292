"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) for dev and tests.

Owns fetching the broker jars, generating server.properties (plaintext, or TLS + SCRAM +
ACLs in secure mode) and the JVM lifecycle.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import dataclasses
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, ClassVar, Final, Self

import psutil
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from refstream.deploy import security as broker_security
from refstream.schemas.errors import (
    EXIT_INTERRUPTED,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    RefstreamError,
)

KAFKA_VERSION: Final = "3.9.1"
SCALA_VERSION: Final = "2.13"
NODE_ID: Final = 1
# Room for the 12 MB records the pipeline produces plus batch/record overhead.
MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
POM_PATH: Final = Path(__file__).resolve().parent / "kafka" / "pom.xml"
# Not __name__: that is "__main__" when run through deploy/kafka.sh.
_GENERATOR: Final = "refstream.deploy.kafka_launcher"

DEFAULT_PORT: Final = 9092
DEFAULT_CONTROLLER_PORT: Final = 9093
DEFAULT_SASL_PORT: Final = 9094
DEFAULT_HEAP: Final = "512m"

ENV_PORT: Final = "KAFKA_PORT"
ENV_CONTROLLER_PORT: Final = "KAFKA_CONTROLLER_PORT"
ENV_SASL_PORT: Final = "KAFKA_SASL_PORT"
ENV_DATA_DIR: Final = "REFSTREAM_KAFKA_DIR"
ENV_JARS_DIR: Final = "REFSTREAM_KAFKA_JARS"
ENV_HEAP: Final = "REFSTREAM_KAFKA_HEAP"

_PROPERTY_KEY: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_LISTENER_NAME: Final = re.compile(r"^[A-Z][A-Z0-9_]*$")
_HEAP: Final = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_PR_SET_PDEATHSIG: Final = 1
# Between readiness probes while the JVM starts; each probe is bounded by _PROBE_TIMEOUT_S.
_READY_POLL_S: Final = 0.2
_PROBE_TIMEOUT_S: Final = 2.0
# kafka-python's reconnect backoff grows to 30 s by default, longer than a whole start;
# a probe must retry a refused connection within its own short timeout.
_PROBE_RECONNECT_BACKOFF_MS: Final = 50
_PROBE_CLIENT_ID: Final = "refstream-kafka-launcher"
# Listener names of secure mode; each doubles as the listener.name.<name>.* prefix.
TLS_LISTENER: Final = "SSL"
SASL_LISTENER: Final = "SASL_SSL"
SECURITY_DIR: Final = "security"
_CONTROL_ESCAPES: Final = MappingProxyType({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"})


# --------------------------------------------------------------------------- errors


class LocalKafkaError(RefstreamError):
    """Base class: anything that stops the local broker from being usable."""

    exit_code: ClassVar[int] = EXIT_PROBLEM


class LocalKafkaConfigError(LocalKafkaError, ValueError):
    """The requested broker configuration is inconsistent."""

    exit_code: ClassVar[int] = EXIT_USAGE


class JavaNotFoundError(LocalKafkaError):
    """No `java` executable to run the broker with."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class KafkaJarsError(LocalKafkaError):
    """The broker jars are missing and could not be fetched."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class PortInUseError(LocalKafkaError):
    """A port the broker needs is already bound by another process."""

    exit_code: ClassVar[int] = EXIT_USAGE


class BrokerAlreadyRunningError(LocalKafkaError):
    """A broker launched from the same data directory is still alive."""

    exit_code: ClassVar[int] = EXIT_USAGE


class StorageFormatError(LocalKafkaError):
    """`kafka.tools.StorageTool format` failed."""


class BrokerStartError(LocalKafkaError):
    """The broker exited during startup or did not answer in time."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class BrokerStopError(LocalKafkaError):
    """The broker process survived SIGTERM and SIGKILL."""


class BrokerNotReadyError(LocalKafkaError):
    """No Kafka answer on the broker port, or not one of our node as a member of our cluster."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Listener:
    """One broker listener; the name doubles as the listener.name.<name>.* config prefix."""

    name: str
    port: int
    security_protocol: str = "PLAINTEXT"
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if not _LISTENER_NAME.match(self.name):
            raise LocalKafkaConfigError(
                f"listener name {self.name!r} must be upper case letters, digits and '_'"
            )
        if not 0 < self.port < 65536:
            raise LocalKafkaConfigError(f"listener {self.name}: port {self.port} is out of range")

    @property
    def url(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


@dataclass(frozen=True)
class SecureBroker:
    """Secure mode: TLS on every listener, SCRAM-SHA-512 users, ACLs deny by default.

    Listeners: SSL on LocalKafka.port (mutual TLS; also the inter-broker listener),
    SASL_SSL on `sasl_port` (SCRAM-SHA-512 over TLS) and the controller on loopback
    with mutual TLS as the broker. Each of `principals` gets a SCRAM user (created at
    format time) and a client certificate; `broker` and `admin` are super users, every
    other principal can do nothing until ACLs allow it (refstream acls apply).
    """

    sasl_port: int = DEFAULT_SASL_PORT
    principals: tuple[str, ...] = broker_security.CLIENT_PRINCIPALS
    cert_validity_days: int = broker_security.CERT_VALIDITY_DAYS

    def __post_init__(self) -> None:
        if not 0 < self.sasl_port < 65536:
            raise LocalKafkaConfigError(f"SASL port {self.sasl_port} is out of range")
        for principal in self.principals:
            broker_security.check_principal(principal)
        if broker_security.BROKER_PRINCIPAL in self.principals:
            raise LocalKafkaConfigError(
                f"{broker_security.BROKER_PRINCIPAL!r} is the broker's own identity; "
                "leave it out of the client principals"
            )
        if broker_security.ADMIN_PRINCIPAL not in self.principals:
            raise LocalKafkaConfigError(
                f"principals {self.principals} must include {broker_security.ADMIN_PRINCIPAL!r}: "
                "nobody could create topics or apply ACLs otherwise"
            )


def single_node_defaults() -> dict[str, str]:
    """Broker settings for a throwaway one-node cluster; a fresh dict on every call."""
    return {
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Internal topics default to RF 3 and would never be created on one node.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # 50 partitions each make the first group join / transaction noticeably slower
        # on a small machine; tests never need that parallelism.
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.num.partitions": "10",
        # The 3 s default only helps real deployments where members arrive together.
        "group.initial.rebalance.delay.ms": "0",
        # Topics are declared by the pipeline; a typo must fail instead of creating one.
        "auto.create.topics.enable": "false",
        "message.max.bytes": str(MAX_MESSAGE_BYTES),
        "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        # The 128 MiB default is a quarter of the small test heap.
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        # No log.retention.* here on purpose: each topic declares its own retention.
    }


def broker_properties(
    *,
    node_id: int,
    client: Listener,
    controller: Listener,
    log_dir: Path,
    extra_listeners: Sequence[Listener] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Complete server.properties for a combined broker+controller node.

    `client` is the inter-broker listener and the one tests bootstrap from;
    `extra_listeners` (e.g. a SASL_SSL one) are advertised next to it, and their
    listener.name.<name>.* settings, like an authorizer, go in `extra`, which
    wins over everything generated here.
    """
    listeners = [client, *extra_listeners, controller]
    names = [listener.name for listener in listeners]
    if len(set(names)) != len(names):
        raise LocalKafkaConfigError(f"listener names must be unique, got {names}")
    ports = [(listener.host, listener.port) for listener in listeners]
    if len(set(ports)) != len(ports):
        raise LocalKafkaConfigError(
            f"listeners must not share a host:port, got {[lst.url for lst in listeners]}"
        )
    advertised = [client, *extra_listeners]
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{controller.host}:{controller.port}",
        "listeners": ",".join(listener.url for listener in listeners),
        # The controller listener must not be advertised: clients cannot use it.
        "advertised.listeners": ",".join(listener.url for listener in advertised),
        "listener.security.protocol.map": ",".join(
            f"{listener.name}:{listener.security_protocol}" for listener in listeners
        ),
        "controller.listener.names": controller.name,
        "inter.broker.listener.name": client.name,
        "log.dirs": str(log_dir),
    }
    props.update(single_node_defaults())
    props.update(extra or {})
    return props


def render_properties(props: Mapping[str, str], header: str = "") -> str:
    """Java .properties text; keys are restricted so they never need escaping."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for key, value in props.items():
        if not _PROPERTY_KEY.match(key):
            raise LocalKafkaConfigError(f"unsupported property key {key!r}")
        escaped = _escape(value)
        # Leading blanks would otherwise be eaten by the Java parser.
        if escaped[:1] in (" ", "\t"):
            escaped = "\\" + escaped
        lines.append(f"{key}={escaped}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    # Kafka reads server.properties as ISO-8859-1, so anything beyond ASCII
    # (a path under a non-English home dir) must become \uXXXX escapes.
    out: list[str] = []
    for char in value:
        if char == "\\":
            out.append("\\\\")
        elif char in _CONTROL_ESCAPES:
            out.append(_CONTROL_ESCAPES[char])
        elif " " <= char <= "~":
            out.append(char)
        else:
            units = char.encode("utf-16-be", "surrogatepass")
            out.extend(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
    return "".join(out)


def read_properties(path: Path) -> dict[str, str]:
    """Parse the subset of the .properties format that render_properties writes."""
    props: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.lstrip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            continue
        props[key.strip()] = _unescape(value)
    return props


def _unescape(value: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        nxt = value[index + 1 : index + 2]
        if char != "\\" or not nxt:
            out.append(char)
            index += 1
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", value[index + 2 : index + 6]):
            out.append(chr(int(value[index + 2 : index + 6], 16)))
            index += 6
        else:
            out.append({"n": "\n", "r": "\r", "t": "\t", "f": "\f"}.get(nxt, nxt))
            index += 2
    # Astral characters were written as two \u escapes (a surrogate pair).
    return "".join(out).encode("utf-16-be", "surrogatepass").decode("utf-16-be")


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (22 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        # A leading '-' would be parsed as an option by StorageTool.
        if not text.startswith("-"):
            return text


def default_jars_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get(ENV_JARS_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "refstream" / f"kafka-{KAFKA_VERSION}" / "libs"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(ENV_DATA_DIR) or ".kafka")


# --------------------------------------------------------------------------- ports


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago.

    All sockets stay open until every port is picked, so the kernel cannot hand
    out the same port twice; another process may still grab one before use.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    """One port that was free a moment ago (see free_ports for the caveat)."""
    return free_ports(1, host)[0]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same flag the JVM sets, so TIME_WAIT leftovers of a just-stopped broker
        # do not count as "in use" (they would not stop the new broker either).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(host: str, port: int, timeout: float) -> bool:
    """True if something accepts a TCP connection on host:port within `timeout`."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- readiness probe


@dataclass(frozen=True)
class ClusterMetadata:
    """The cluster as one broker describes it: id, controller and unfenced brokers."""

    cluster_id: str | None
    controller_id: int
    broker_ids: tuple[int, ...]


def describe_cluster(
    bootstrap: str, timeout: float = _PROBE_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None
) -> ClusterMetadata:
    """One DescribeCluster through kafka-python's admin client (over TLS with `ssl_context`).

    Raises BrokerNotReadyError when no broker completes the request within `timeout`:
    nothing listens, the TLS handshake fails, or the broker does not answer yet.
    """
    timeout_ms = max(100, int(timeout * 1000))
    tls: dict[str, object] = (
        {} if ssl_context is None else {"security_protocol": "SSL", "ssl_context": ssl_context}
    )
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=_PROBE_CLIENT_ID,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=_PROBE_RECONNECT_BACKOFF_MS,
            **tls,
        )
    except (KafkaError, OSError) as exc:
        raise BrokerNotReadyError(f"{bootstrap} did not answer: {exc}") from exc
    try:
        described = admin.describe_cluster()
    except (KafkaError, OSError) as exc:
        raise BrokerNotReadyError(f"{bootstrap} did not describe its cluster: {exc}") from exc
    finally:
        admin.close()
    return ClusterMetadata(
        cluster_id=described.get("cluster_id"),
        controller_id=int(described.get("controller_id", -1)),
        # Kafka 4 also lists fenced brokers (with the flag); a fenced broker serves nobody.
        broker_ids=tuple(
            int(broker["broker_id"])
            for broker in described.get("brokers", ())
            if not broker.get("is_fenced", False)
        ),
    )


# --------------------------------------------------------------------------- process helpers


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec hook that makes the child die with us (Linux only), else None.

    The one ctypes call left in the launcher, on purpose: PyPI's prctl wrappers are
    unmaintained (python-prctl's last release is from 2020 and builds a C extension that
    needs the libcap headers; pyprctl and prctl are older still), and psutil has no
    parent-death signal. PR_SET_PDEATHSIG is one libc call with constant arguments.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Loaded before fork: dlopen in the forked child of a threaded parent can deadlock.
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died between fork and prctl.
        if os.getppid() != parent:
            os._exit(1)

    return hook


def _tail(path: Path, offset: int = 0, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(log {path} is empty)"


# --------------------------------------------------------------------------- the broker


@dataclass
class LocalKafka:
    """One combined broker+controller JVM on 127.0.0.1, all state under `data_dir`.

    Layout of data_dir: server.properties, log4j.properties, kafka.pid,
    kafka.log (JVM stdout/stderr, appended across restarts) and data/ (log.dirs);
    in secure mode also security/ (CA, certificates, credentials.json, clients/*.env).
    """

    port: int = DEFAULT_PORT
    controller_port: int = DEFAULT_CONTROLLER_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    jars_dir: Path = field(default_factory=default_jars_dir)
    heap: str = DEFAULT_HEAP
    extra_properties: dict[str, str] = field(default_factory=dict)
    extra_listeners: tuple[Listener, ...] = ()
    host: str = "127.0.0.1"
    java: str | None = None
    jvm_options: tuple[str, ...] = ()
    # For test sessions: a killed pytest must not leave a JVM behind (Linux only).
    die_with_parent: bool = False
    node_id: int = NODE_ID
    # None: one PLAINTEXT listener, no authentication, no authorizer.
    security: SecureBroker | None = None

    _process: subprocess.Popen[bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _log_offset: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Absolute, because the JVM runs with data_dir as its working directory.
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        self.jars_dir = Path(self.jars_dir).expanduser().resolve()
        if not _HEAP.match(self.heap):
            raise LocalKafkaConfigError(f"heap {self.heap!r} must look like 512m or 1g")
        self._listener_properties()  # fail fast on bad listeners/ports

    @classmethod
    def secure(
        cls,
        *,
        port: int = DEFAULT_PORT,
        sasl_port: int = DEFAULT_SASL_PORT,
        controller_port: int = DEFAULT_CONTROLLER_PORT,
        principals: Sequence[str] = broker_security.CLIENT_PRINCIPALS,
        **options: Any,
    ) -> Self:
        """A broker in secure mode: mutual TLS on `port`, SCRAM over TLS on `sasl_port`.

        `options` are the other LocalKafka fields (data_dir, heap, die_with_parent, ...).
        """
        broker = SecureBroker(sasl_port=sasl_port, principals=tuple(principals))
        return cls(
            port=port,
            controller_port=controller_port,
            security=broker,
            **options,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Configured like deploy/kafka.sh: KAFKA_PORT, KAFKA_CONTROLLER_PORT,
        REFSTREAM_KAFKA_DIR, REFSTREAM_KAFKA_JARS, REFSTREAM_KAFKA_HEAP (adjust the
        result with dataclasses.replace)."""
        env = os.environ if environ is None else environ
        return cls(
            port=_env_port(env, ENV_PORT, DEFAULT_PORT),
            controller_port=_env_port(env, ENV_CONTROLLER_PORT, DEFAULT_CONTROLLER_PORT),
            data_dir=default_data_dir(env),
            jars_dir=default_jars_dir(env),
            heap=env.get(ENV_HEAP) or DEFAULT_HEAP,
        )

    # -- paths and derived values

    @property
    def bootstrap(self) -> str:
        """The client listener: PLAINTEXT, or mutual TLS (SSL) in secure mode."""
        return f"{self.host}:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SCRAM-SHA-512 over TLS listener of secure mode."""
        return f"{self.host}:{self._secure().sasl_port}"

    @property
    def security_dir(self) -> Path:
        return self.data_dir / SECURITY_DIR

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j.properties"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "data"

    @property
    def client_listener(self) -> Listener:
        if self.security is not None:
            return Listener(TLS_LISTENER, self.port, "SSL", self.host)
        return Listener("PLAINTEXT", self.port, "PLAINTEXT", self.host)

    @property
    def controller_listener(self) -> Listener:
        # Secure mode: a PLAINTEXT controller would see the broker as User:ANONYMOUS,
        # which the authorizer then has to make a super user (anyone on the host could
        # use it); mutual TLS makes the broker its own super user instead.
        protocol = "PLAINTEXT" if self.security is None else "SSL"
        return Listener("CONTROLLER", self.controller_port, protocol, self.host)

    @property
    def sasl_listener(self) -> Listener | None:
        if self.security is None:
            return None
        return Listener(SASL_LISTENER, self.security.sasl_port, "SASL_SSL", self.host)

    def listeners(self) -> tuple[Listener, ...]:
        """Every listener, controller last (the order of `listeners=`)."""
        return (self.client_listener, *self._advertised_extra(), self.controller_listener)

    def _advertised_extra(self) -> tuple[Listener, ...]:
        sasl = self.sasl_listener
        return self.extra_listeners if sasl is None else (sasl, *self.extra_listeners)

    def _listener_properties(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return broker_properties(
            node_id=self.node_id,
            client=self.client_listener,
            controller=self.controller_listener,
            log_dir=self.log_dirs,
            extra_listeners=self._advertised_extra(),
            extra={**(extra or {}), **self.extra_properties},
        )

    def server_properties(self) -> dict[str, str]:
        """The complete server.properties; in secure mode after prepare() made the keys."""
        if self.security is None:
            return self._listener_properties()
        return self._listener_properties(
            broker_security.broker_security_properties(
                self.security_material(), sasl_listener=SASL_LISTENER
            )
        )

    # -- secure mode

    def _secure(self) -> SecureBroker:
        if self.security is None:
            raise LocalKafkaConfigError(
                f"the broker for {self.data_dir} runs without security; start it with "
                "LocalKafka.secure(...) or deploy/kafka.sh start --secure"
            )
        return self.security

    def security_material(self) -> broker_security.SecurityMaterial:
        """CA, keystore and credentials of secure mode (made by prepare()/start())."""
        self._secure()
        return broker_security.load_material(self.security_dir)

    def client_config(
        self, principal: str, protocol: broker_security.ClientProtocol = "SASL_SSL"
    ) -> dict[str, object]:
        """kafka-python options (bootstrap_servers included) to connect as `principal`."""
        bootstrap = self.sasl_bootstrap if protocol == "SASL_SSL" else self.bootstrap
        return {
            "bootstrap_servers": bootstrap,
            **self.security_material().client_options(principal, protocol),
        }

    def client_env(
        self, principal: str, protocol: broker_security.ClientProtocol = "SASL_SSL"
    ) -> dict[str, str]:
        """REFSTREAM_* variables that make a refstream process connect as `principal`."""
        bootstrap = self.sasl_bootstrap if protocol == "SASL_SSL" else self.bootstrap
        return self.security_material().client_env(principal, protocol, bootstrap)

    def _probe_context(self) -> ssl.SSLContext | None:
        if self.security is None:
            return None
        return self.security_material().broker_ssl_context()

    def _provision(self) -> broker_security.SecurityMaterial:
        broker = self._secure()
        first_time = not (self.security_dir / broker_security.CREDENTIALS_FILE).is_file()
        if first_time and self.cluster_id() is not None:
            raise StorageFormatError(
                f"{self.log_dirs} was formatted without --secure, so it has no SCRAM users; "
                f"use another data dir or delete {self.data_dir} to start over in secure mode"
            )
        material = broker_security.provision(
            self.security_dir,
            broker.principals,
            server_names=tuple(dict.fromkeys((self.host, "127.0.0.1", "localhost"))),
            validity_days=broker.cert_validity_days,
        )
        material.write_env_files({"SASL_SSL": self.sasl_bootstrap, "SSL": self.bootstrap})
        if not first_time and self.cluster_id() is not None:
            registered = broker_security.registered_users(self.security_dir)
            missing = sorted(set(material.principals) - registered)
            if missing:
                _log_info(
                    f"SCRAM users {missing} were added after {self.log_dirs} was formatted and "
                    "do not exist on the broker yet: create them with `refstream kafka-users "
                    f"create NAME --local-broker {self.data_dir}` once it runs"
                )
        return material

    def cluster_id(self) -> str | None:
        """The id the storage was formatted with, None before the first format."""
        meta = self.log_dirs / "meta.properties"
        return read_properties(meta).get("cluster.id") if meta.is_file() else None

    def java_executable(self) -> str:
        if self.java:
            if shutil.which(self.java) is None:
                raise JavaNotFoundError(f"java={self.java!r} is not an executable")
            return self.java
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            return str(Path(java_home) / "bin" / "java")
        found = shutil.which("java")
        if found is None:
            raise JavaNotFoundError(
                "no java on PATH and JAVA_HOME is unset: install a JDK/JRE 17 "
                "(e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
            )
        return found

    def _java_base(self) -> list[str]:
        return [
            self.java_executable(),
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={self.log4j_file.as_uri()}",
            # The JVM expands a trailing '*' itself; no shell involved.
            "-cp",
            str(self.jars_dir / "*"),
        ]

    def broker_command(self) -> list[str]:
        base = self._java_base()
        return [
            base[0],
            f"-Xmx{self.heap}",
            # Kafka's own launcher defaults: short pauses matter more than throughput here.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            *self.jvm_options,
            *base[1:],
            "kafka.Kafka",
            str(self.properties_file),
        ]

    def format_command(
        self, cluster_id: str, scram_users: Sequence[broker_security.ScramUser] = ()
    ) -> list[str]:
        # KRaft keeps SCRAM credentials in the metadata log; users added here exist from
        # the first second, before any listener accepts a connection.
        scram = [
            arg for user in scram_users for arg in ("--add-scram", user.storage_tool_argument())
        ]
        return [
            *self._java_base(),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
            *scram,
        ]

    # -- jars

    def jars_present(self) -> bool:
        return (self.jars_dir / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").is_file()

    def fetch_jars(self, *, force: bool = False) -> Path:
        """Download the broker jars with Maven unless already there; returns jars_dir."""
        if self.jars_present() and not force:
            return self.jars_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaJarsError(
                f"Kafka jars are missing in {self.jars_dir} and Maven (mvn) is not on PATH: "
                "install Maven 3, or unpack the Kafka "
                f"{KAFKA_VERSION} tarball and point {ENV_JARS_DIR} at its libs/ directory"
            )
        if not POM_PATH.is_file():
            raise KafkaJarsError(f"{POM_PATH} is missing; it lists the jars to fetch")
        self.jars_dir.parent.mkdir(parents=True, exist_ok=True)
        # Stage next to the target and rename, so an interrupted or concurrent fetch
        # never leaves a half-filled directory that jars_present() would accept.
        with tempfile.TemporaryDirectory(prefix=".libs-", dir=self.jars_dir.parent) as tmp:
            staging = Path(tmp) / "libs"
            command = [
                mvn,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(POM_PATH),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ]
            _log_info(f"fetching Kafka {KAFKA_VERSION} jars into {self.jars_dir} (Maven)")
            try:
                result = subprocess.run(
                    command, capture_output=True, text=True, timeout=1800, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise KafkaJarsError(f"Maven took longer than {exc.timeout}s; retry") from exc
            if result.returncode != 0:
                output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise KafkaJarsError(
                    f"Maven could not fetch the Kafka jars (exit {result.returncode}); "
                    f"check network access to Maven Central or ~/.m2/settings.xml:\n{output}"
                )
            expected = staging / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar"
            if not expected.is_file():
                raise KafkaJarsError(
                    f"Maven succeeded but {expected.name} is missing: {POM_PATH} and "
                    f"KAFKA_VERSION={KAFKA_VERSION} in {Path(__file__).name} disagree"
                )
            if force and self.jars_dir.exists():
                shutil.rmtree(self.jars_dir)
            try:
                staging.rename(self.jars_dir)
            except OSError:
                if not self.jars_present():  # otherwise a concurrent fetch won the race
                    raise
        return self.jars_dir

    # -- process state

    def pid(self) -> int | None:
        """Pid of the live broker for this data_dir, or None.

        A pid file is only trusted if that pid still runs kafka.Kafka with our
        server.properties: after a reboot the number may belong to anything.
        """
        if self._process is not None:
            if self._process.poll() is None:
                return self._process.pid
            self._process = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._runs_our_broker(pid) else None

    def _runs_our_broker(self, pid: int) -> bool:
        try:
            process = psutil.Process(pid)
            # An unreaped child is as good as gone: it serves nothing and cannot be stopped.
            if process.status() == psutil.STATUS_ZOMBIE:
                return False
            command = process.cmdline()
        except psutil.Error:  # gone, a zombie, or another user's process
            return False
        return "kafka.Kafka" in command and str(self.properties_file) in command

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_ready(self, timeout: float = _PROBE_TIMEOUT_S) -> bool:
        """True if the broker describes its cluster with our node as an unfenced member."""
        try:
            self._check_ready(timeout, self._probe_context())
        except (BrokerNotReadyError, broker_security.SecuritySetupError):
            return False
        return True

    def _check_ready(self, timeout: float, context: ssl.SSLContext | None) -> None:
        """Raise BrokerNotReadyError saying why unless the broker serves clients as our node."""
        metadata = describe_cluster(self.bootstrap, timeout, context)
        expected = self.cluster_id()
        if (
            self.node_id not in metadata.broker_ids
            or metadata.controller_id < 0
            # Guards against a different broker that happens to own the port.
            or (expected is not None and metadata.cluster_id != expected)
        ):
            raise BrokerNotReadyError(
                f"{self.bootstrap} answered but is not node {self.node_id} of cluster "
                f"{expected or '(any)'} with a controller yet: {metadata}"
            )

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the broker wrote since the latest start() of this object."""
        return _tail(self.log_file, self._log_offset, lines)

    # -- lifecycle

    def prepare(self) -> str:
        """Write the config files and format storage if needed; returns the cluster id.

        In secure mode this first makes (or reuses) the CA, certificates and passwords.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        material = self._provision() if self.security is not None else None
        text = render_properties(
            self.server_properties(),
            header=f"Generated by {_GENERATOR}; edits are overwritten on every start.",
        )
        # Secure mode puts the keystore password in it: owner-only from the first byte.
        descriptor = os.open(self.properties_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        self.properties_file.chmod(0o600)
        self.log4j_file.write_text(_LOG4J_PROPERTIES, encoding="utf-8")
        existing = self.cluster_id()
        if existing is not None:
            return existing
        cluster_id = new_cluster_id()
        scram_users = material.credentials.scram_users() if material is not None else []
        result = subprocess.run(
            self.format_command(cluster_id, scram_users),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.data_dir,
        )
        if result.returncode != 0:
            raise StorageFormatError(
                f"formatting KRaft storage in {self.log_dirs} failed (exit {result.returncode}); "
                f"delete {self.data_dir} if it holds another cluster's data:\n"
                # The tool dumps its whole KafkaConfig first; the cause is at the end.
                + "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            )
        formatted = self.cluster_id()
        if formatted is None:
            raise StorageFormatError(f"StorageTool wrote no meta.properties in {self.log_dirs}")
        if material is not None:
            names = [user.name for user in scram_users]
            broker_security.record_registered_users(self.security_dir, names)
        return formatted

    def start(self, timeout: float = 60.0, *, detach: bool = False) -> Self:
        """Launch the broker and return once it serves requests.

        detach=True puts the JVM in its own session so it outlives the caller
        (the CLI); otherwise it shares the caller's terminal signals.
        """
        running = self.pid()
        if running is not None:
            raise BrokerAlreadyRunningError(
                f"a broker for {self.data_dir} is already running (pid {running}) at "
                f"{self.bootstrap}; stop it first (deploy/kafka.sh stop)"
            )
        self.fetch_jars()
        for listener in self.listeners():
            if not port_is_free(listener.host, listener.port):
                raise PortInUseError(
                    f"{listener.host}:{listener.port} ({listener.name} listener) is already in "
                    f"use; stop whatever holds it or pick other ports "
                    f"({ENV_PORT} / {ENV_CONTROLLER_PORT})"
                )
        self.prepare()
        command = self.broker_command()
        self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        # The hook only issues prctl() and getppid() in the child, which is safe even
        # if the parent runs threads (PLW1509's concern is locks held across fork).
        death_hook = None if detach or not self.die_with_parent else _parent_death_signal()
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            log.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {_GENERATOR}: "
                f"{' '.join(command)}\n".encode()
            )
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=detach,
                preexec_fn=death_hook,  # noqa: PLW1509
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        try:
            self.wait_ready(max(0.0, timeout - (time.monotonic() - started)))
        except BrokerStartError:
            # A half-started JVM would hold the ports and confuse the next attempt.
            self._kill_quietly()
            raise
        _log_info(
            f"Kafka {KAFKA_VERSION} ready at {self.bootstrap} (pid {self._process.pid}) "
            f"after {time.monotonic() - started:.1f}s"
        )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Probe every 0.2 s until the broker serves clients; BrokerStartError if it does not."""
        deadline = time.monotonic() + timeout
        context = self._probe_context()

        def probe() -> None:
            # A dead JVM raises BrokerStartError, which is not retried.
            self._check_process()
            timeout = min(_PROBE_TIMEOUT_S, max(deadline - time.monotonic(), 0.1))
            # Most of a start passes before the port opens; a plain connect tells that for
            # free, where a Kafka client would start a thread and log each refusal.
            if not port_accepts(self.host, self.port, timeout):
                raise BrokerNotReadyError(f"nothing accepts connections on {self.bootstrap} yet")
            self._check_ready(timeout, context)

        try:
            Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(_READY_POLL_S),
                retry=retry_if_exception_type(BrokerNotReadyError),
                reraise=True,
            )(probe)
        except BrokerNotReadyError as last:
            raise BrokerStartError(
                f"the broker at {self.bootstrap} did not become ready within {timeout:.0f}s "
                f"({last}); raise the timeout on a slow machine or read {self.log_file}. "
                f"Last lines:\n{self.log_tail()}"
            ) from last

    def _check_process(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise BrokerStartError(
                f"the broker exited with code {self._process.returncode} during startup; "
                f"last lines of {self.log_file}:\n{self.log_tail()}"
            )
        if self._process is None and not self.is_running():
            raise BrokerStartError(
                f"no broker process for {self.data_dir}; start it first "
                f"(deploy/kafka.sh start). Last lines of {self.log_file}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (controlled shutdown), SIGKILL after `timeout`; returns the pid stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._process = None
            return None
        try:
            process = psutil.Process(pid)
            # psutil checks that the pid still names the process it looked up (no reuse).
            process.terminate()
        except psutil.NoSuchProcess:
            pass  # it ended by itself meanwhile
        except psutil.AccessDenied as exc:
            raise BrokerStopError(
                f"not allowed to signal broker pid {pid}; stop it as the user that started it"
            ) from exc
        else:
            if not self._wait_gone(process, timeout):
                _log_info(f"broker pid {pid} ignored SIGTERM for {timeout:.0f}s; sending SIGKILL")
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
                if not self._wait_gone(process, 10.0):
                    raise BrokerStopError(
                        f"broker pid {pid} survived SIGKILL; check `ps -p {pid}` (stuck in I/O?)"
                    )
        self.pid_file.unlink(missing_ok=True)
        self._process = None
        return pid

    def _wait_gone(self, process: psutil.Process, timeout: float) -> bool:
        try:
            if self._process is not None and self._process.pid == process.pid:
                self._process.wait(timeout)  # our child: Popen reaps it and keeps its exit code
            else:
                process.wait(timeout)  # an exited process counts as gone, reaped or not
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            return False
        return True

    def _kill_quietly(self) -> None:
        with contextlib.suppress(LocalKafkaError, OSError):
            self.stop(timeout=5.0)

    def __enter__(self) -> Self:
        # Always start: exiting must never stop a broker this block did not start.
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_LOG4J_PROPERTIES: Final = """\
# Everything to stdout; the launcher redirects it into kafka.log.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# Per-request and per-partition chatter would bury the lines that explain a failure.
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
"""


def _log_info(message: str) -> None:
    # Looked up per call: the module keeps no logger object of its own.
    import logging

    logging.getLogger(_GENERATOR).info(message)


def _env_port(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise LocalKafkaConfigError(f"{name}={raw!r} is not a port number") from None


# --------------------------------------------------------------------------- CLI


def _parse_properties(_ctx: Any, _param: Any, values: Sequence[str]) -> dict[str, str]:
    import click

    parsed: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {text!r}")
        parsed[key.strip()] = value
    return parsed


_EPILOG = """\b
commands:
  fetch   download the broker jars (skipped when present)
  start   fetch if needed, format storage on first use, launch the broker in
          the background and return once it answers Metadata requests;
          --secure: TLS + SCRAM-SHA-512 + ACLs (see docs/security.md)
  stop    SIGTERM the broker from the pid file, SIGKILL if it hangs
  status  exit 0 = running and answering, 1 = process up but not answering,
          3 = not running

Run '<command> --help' for the options; each defaults from the environment variable shown in
brackets. Java 17 and (for fetch) Maven are required."""


def _build_cli(env: Mapping[str, str]) -> Any:
    """The launcher's Click group; option defaults read from `env` when it is built."""
    import click

    def common(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed((
            click.option("--port", type=int, default=_env_port(env, ENV_PORT, DEFAULT_PORT),
                         show_default=True,
                         help=f"client (PLAINTEXT) port on 127.0.0.1 [${ENV_PORT}]"),
            click.option("--sasl-port", type=int,
                         default=_env_port(env, ENV_SASL_PORT, DEFAULT_SASL_PORT),
                         show_default=True,
                         help=f"SASL_SSL (SCRAM-SHA-512) port of --secure [${ENV_SASL_PORT}]"),
            click.option("--controller-port", type=int,
                         default=_env_port(env, ENV_CONTROLLER_PORT, DEFAULT_CONTROLLER_PORT),
                         show_default=True,
                         help=f"KRaft controller port [${ENV_CONTROLLER_PORT}]"),
            click.option("--data-dir", type=click.Path(path_type=Path),
                         default=default_data_dir(env), show_default=True,
                         help=f"config, pid file, log and topic data [${ENV_DATA_DIR}]"),
            click.option("--jars-dir", type=click.Path(path_type=Path),
                         default=default_jars_dir(env), show_default=True,
                         help=f"broker jars [${ENV_JARS_DIR}]"),
            click.option("--heap", default=env.get(ENV_HEAP) or DEFAULT_HEAP,
                         show_default=True, help=f"JVM max heap [${ENV_HEAP}]"),
            click.option("--property", "-P", "properties", multiple=True, metavar="KEY=VALUE",
                         callback=_parse_properties,
                         help="extra server.properties entry, repeatable; overrides the "
                              "generated value"),
        )):
            command = option(command)
        return command

    def broker(*, port: int, sasl_port: int, controller_port: int, data_dir: Path,
               jars_dir: Path, heap: str, properties: dict[str, str],
               secure: bool = False) -> LocalKafka:
        return LocalKafka(port=port, controller_port=controller_port, data_dir=data_dir,
                          jars_dir=jars_dir, heap=heap, extra_properties=properties,
                          security=SecureBroker(sasl_port=sasl_port) if secure else None)

    @click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG,
                 help=f"Run a real single-node Apache Kafka {KAFKA_VERSION} broker (KRaft mode: "
                      "broker and controller in one JVM) on 127.0.0.1, without Docker. The "
                      "jars come from Maven Central once and are cached; all broker state "
                      "lives in --data-dir.")
    def launcher() -> None:
        pass

    @launcher.command(help="Download the broker jars.")
    @common
    @click.option("--force", is_flag=True, help="download even if present")
    def fetch(force: bool, **options: Any) -> int:
        print(broker(**options).fetch_jars(force=force))
        return 0

    @launcher.command(help="Start in the background.")
    @common
    @click.option("--timeout", type=float, default=90.0, show_default=True,
                  help="seconds to wait for readiness")
    @click.option("--secure", is_flag=True,
                  help="secure mode: mutual TLS on --port, SCRAM-SHA-512 over TLS on "
                       "--sasl-port, controller on mutual TLS, ACL authorizer denying by "
                       "default; makes a local CA, certificates and SCRAM users (admin, "
                       "shop-producer, pipeline, finance, replay) under DATA_DIR/security, "
                       "with client env files in DATA_DIR/security/clients")
    def start(timeout: float, secure: bool, **options: Any) -> int:
        return _start(broker(**options, secure=secure), timeout)

    @launcher.command(help="Stop the broker.")
    @common
    @click.option("--timeout", type=float, default=30.0, show_default=True,
                  help="seconds between SIGTERM and SIGKILL")
    def stop(timeout: float, **options: Any) -> int:
        stopped = broker(**options).stop(timeout)
        print(f"stopped: pid {stopped}" if stopped is not None else "not running")
        return 0

    @launcher.command(help="Report whether it runs: exit 0 running and answering, 1 process "
                           "up but not answering, 3 not running.")
    @common
    def status(**options: Any) -> int:
        return _status(broker(**options))

    return launcher


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (deploy/kafka.sh); returns the process exit status."""
    import logging

    import click

    logging.basicConfig(level=logging.INFO, format="kafka: %(message)s", stream=sys.stderr)
    # kafka-python logs every connection of the readiness probe, and each refused one while
    # the JVM starts as an error; the launcher says in its own words what went wrong.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = _build_cli(os.environ).main(args=args, prog_name="kafka_launcher",
                                             standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return EXIT_INTERRUPTED
    except RefstreamError as exc:  # LocalKafkaError, SecuritySetupError: their own codes
        print(f"kafka: error: {exc}", file=sys.stderr)
        return type(exc).exit_code
    except OSError as exc:
        print(f"kafka: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return int(result)


def _start(kafka: LocalKafka, timeout: float) -> int:
    pid = kafka.pid()
    if pid is not None:
        kafka = _as_running(kafka)
        kafka.wait_ready(timeout)
        print(f"already running: pid {pid}, {_endpoints(kafka)}")
        return 0
    credentials = kafka.security_dir / broker_security.CREDENTIALS_FILE
    if kafka.security is None and credentials.is_file() and kafka.cluster_id() is not None:
        raise LocalKafkaConfigError(
            f"{kafka.data_dir} holds a secure broker (it has {credentials}); start it "
            "with --secure, or delete the directory for a plaintext broker"
        )
    started = time.monotonic()
    kafka.start(timeout, detach=True)
    print(
        f"started: pid {kafka.pid()}, {_endpoints(kafka)}, "
        f"ready in {time.monotonic() - started:.1f}s, log {kafka.log_file}"
    )
    if kafka.security is not None:
        print(
            f"client settings: {kafka.security_dir / broker_security.CLIENTS_DIR}/"
            "<principal>.{sasl,tls}.env  (set -a; . FILE; set +a)"
        )
    return 0


def _status(kafka: LocalKafka) -> int:
    pid = kafka.pid()
    if pid is None:
        print(f"not running (data dir {kafka.data_dir})")
        return 3
    kafka = _as_running(kafka)
    if kafka.is_ready():
        print(f"running: pid {pid}, {_endpoints(kafka)}")
        return 0
    print(f"starting or unhealthy: pid {pid}, {kafka.bootstrap} does not answer yet")
    return 1


def _endpoints(kafka: LocalKafka) -> str:
    if kafka.security is None:
        return f"bootstrap {kafka.bootstrap}"
    return f"bootstrap {kafka.sasl_bootstrap} (SASL_SSL, SCRAM-SHA-512), {kafka.bootstrap} (SSL)"


def _as_running(kafka: LocalKafka) -> LocalKafka:
    """`kafka` with the ports (and mode) its data dir's running broker was started with.

    status/start from a shell without the KAFKA_PORT/... or --secure of the original
    start must still probe the right port the right way.
    """
    try:
        saved = read_properties(kafka.properties_file)
    except OSError:
        return kafka
    ports: dict[str, int] = {}
    for url in saved.get("listeners", "").split(","):
        name, _, address = url.partition("://")
        port = address.rpartition(":")[2]
        if port.isdigit():
            ports[name] = int(port)
    sasl = ports.get(SASL_LISTENER)
    secure = SecureBroker(sasl_port=sasl) if sasl is not None else None
    client = ports.get(TLS_LISTENER if secure is not None else "PLAINTEXT")
    controller = ports.get(kafka.controller_listener.name)
    if client is None or controller is None:
        return kafka
    return dataclasses.replace(
        kafka, port=client, controller_port=controller, security=secure
    )


if __name__ == "__main__":
    sys.exit(main())
