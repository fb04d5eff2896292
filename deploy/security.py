"""TLS certificates, SCRAM users and client settings for the secure local broker.

Owns the development CA and the broker/client certificates (made with the openssl CLI),
the credentials file, the broker's TLS/SASL/authorizer properties and per-principal env files.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Final, Literal

from refstream.schemas.errors import (
    EXIT_INPUT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    RefstreamError,
)

# Stdlib only, like kafka_launcher.py: deploy/kafka.sh may run both with a bare python3.

SCRAM_MECHANISM: Final = "SCRAM-SHA-512"
# The broker's own identity (its certificate's CN): inter-broker and controller traffic.
BROKER_PRINCIPAL: Final = "broker"
# Creates topics, applies ACLs, manages SCRAM users: a super user, like the broker.
ADMIN_PRINCIPAL: Final = "admin"
SHOP_PRODUCER_PRINCIPAL: Final = "shop-producer"
PIPELINE_PRINCIPAL: Final = "pipeline"
FINANCE_PRINCIPAL: Final = "finance"
REPLAY_PRINCIPAL: Final = "replay"
# Creates refstream's topics (the Kubernetes topics Job): CREATE and DESCRIBE on them only.
TOPICS_PRINCIPAL: Final = "topics"
CLIENT_PRINCIPALS: Final = (
    ADMIN_PRINCIPAL,
    SHOP_PRODUCER_PRINCIPAL,
    PIPELINE_PRINCIPAL,
    FINANCE_PRINCIPAL,
    REPLAY_PRINCIPAL,
    TOPICS_PRINCIPAL,
)

# Long enough that a dev setup does not expire mid-project, short enough that a leaked
# local key does not stay useful for years; certificates are renewed on start near expiry.
CERT_VALIDITY_DAYS: Final = 365
RENEW_BEFORE_DAYS: Final = 30
_SECONDS_PER_DAY: Final = 24 * 3600
EC_CURVE: Final = "prime256v1"
# token_urlsafe(24) = 32 characters, ~192 bits.
PASSWORD_BYTES: Final = 24
OPENSSL_TIMEOUT_S: Final = 60.0

CA_SUBJECT: Final = "/CN=refstream local development CA"
CREDENTIALS_FILE: Final = "credentials.json"
# Users that exist on the broker: formatted in, or created through the admin API since.
REGISTERED_USERS_FILE: Final = "registered-users"
CLIENTS_DIR: Final = "clients"
_CREDENTIALS_VERSION: Final = 1

# Principal names end up in certificate subjects, ACLs, file names and --add-scram values.
_PRINCIPAL: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# StorageTool's --add-scram parser splits on ',' ']' '=' and quotes; keep passwords
# to characters it takes verbatim.
_SAFE_PASSWORD: Final = re.compile(r"^[A-Za-z0-9._~+/-]{12,}$")
# Certificate CN -> Kafka principal: "CN=pipeline" becomes User:pipeline. Any other
# subject keeps its full DN and so matches no ACL and no super user.
PRINCIPAL_MAPPING_RULES: Final = r"RULE:^CN=([a-z0-9][a-z0-9._-]*)$/$1/,DEFAULT"

ClientProtocol = Literal["SSL", "SASL_SSL"]
CLIENT_PROTOCOLS: Final[tuple[ClientProtocol, ...]] = ("SASL_SSL", "SSL")
_ENV_SUFFIX: Final = MappingProxyType({"SASL_SSL": "sasl", "SSL": "tls"})


# --------------------------------------------------------------------------- errors


class SecuritySetupError(RefstreamError):
    """Base class: the secure broker's key material or credentials are unusable."""

    exit_code: ClassVar[int] = EXIT_USAGE


class OpensslError(SecuritySetupError):
    """The openssl CLI is missing or one of its commands failed."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class CredentialsFileError(SecuritySetupError):
    """The credentials file is unreadable, malformed or lacks a principal."""

    exit_code: ClassVar[int] = EXIT_INPUT_REJECTED


class PrincipalNameError(SecuritySetupError, ValueError):
    """A principal name that would not be safe in a certificate, ACL or file name."""


def check_principal(name: str) -> str:
    """`name` if it is a valid principal name, else PrincipalNameError."""
    if not _PRINCIPAL.match(name):
        raise PrincipalNameError(
            f"principal {name!r} must be 1-64 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-512 user as created at format time (StorageTool --add-scram)."""

    name: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_principal(self.name)
        if not _SAFE_PASSWORD.match(self.password):
            raise SecuritySetupError(
                f"the password of {self.name!r} must be at least 12 characters of "
                "A-Z a-z 0-9 . _ ~ + / - (StorageTool cannot take others verbatim); "
                "leave it out to get a generated one"
            )

    def storage_tool_argument(self) -> str:
        """The value of one `kafka.tools.StorageTool format --add-scram` option."""
        return f"{SCRAM_MECHANISM}=[name={self.name},password={self.password}]"


# --------------------------------------------------------------------------- openssl


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise OpensslError(
            "the secure broker needs the openssl command to make its certificates: "
            "install it (e.g. apt-get install openssl) and retry"
        )
    return found


def _run_openssl(args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    command = [_openssl(), *args]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=OPENSSL_TIMEOUT_S,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired as exc:
        raise OpensslError(f"openssl {args[0]} took longer than {exc.timeout}s") from exc
    if result.returncode != 0:
        raise OpensslError(
            f"openssl {' '.join(args[:2])} failed (exit {result.returncode}):\n"
            f"{(result.stdout + result.stderr).strip()}"
        )
    return result.stdout


def _usable(cert: Path) -> bool:
    """True if `cert` exists and stays valid for RENEW_BEFORE_DAYS more days."""
    if not cert.is_file():
        return False
    try:
        seconds = RENEW_BEFORE_DAYS * _SECONDS_PER_DAY
        _run_openssl(["x509", "-in", str(cert), "-noout", "-checkend", str(seconds)])
    except OpensslError:
        return False
    return True


def _signed_by(cert: Path, ca_file: Path) -> bool:
    try:
        _run_openssl(["verify", "-CAfile", str(ca_file), str(cert)])
    except OpensslError:
        return False
    return True


def _private(path: Path) -> Path:
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class LocalPki:
    """A throwaway certificate authority in `directory` and the certificates it signs.

    Keys are EC P-256 in unencrypted PKCS#8 PEM (mode 0600, in a 0700 directory); the
    subject of every leaf is just CN=<principal>, which PRINCIPAL_MAPPING_RULES turn into
    the Kafka principal User:<principal>.
    """

    directory: Path
    validity_days: int = CERT_VALIDITY_DAYS

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    def certfile(self, name: str) -> Path:
        return self.directory / f"{check_principal(name)}.crt"

    def keyfile(self, name: str) -> Path:
        return self.directory / f"{check_principal(name)}.key"

    def ensure_ca(self) -> bool:
        """Create (or renew) the CA; True if it is new, so every leaf must be reissued."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o700)
        if _usable(self.ca_file) and self.ca_key.is_file():
            return False
        _run_openssl(
            [
                "req", "-x509", "-new",
                "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{EC_CURVE}", "-nodes",
                "-keyout", str(self.ca_key), "-out", str(self.ca_file),
                "-days", str(self.validity_days), "-subj", CA_SUBJECT,
                "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ]
        )
        _private(self.ca_key)
        return True

    def ensure_certificate(
        self, name: str, *, server_names: Sequence[str] = (), renew: bool = False
    ) -> tuple[Path, Path]:
        """(certfile, keyfile) for `name`, issued now unless a valid one exists.

        `server_names` (host names and IP addresses) make it a TLS server certificate
        as well; the broker's certificate needs them, a client's does not.
        """
        cert, key = self.certfile(name), self.keyfile(name)
        if not renew and key.is_file() and _usable(cert) and _signed_by(cert, self.ca_file):
            return cert, key
        usages = "serverAuth,clientAuth" if server_names else "clientAuth"
        extensions = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature",
            f"extendedKeyUsage={usages}",
        ]
        if server_names:
            extensions.append("subjectAltName=" + ",".join(_san(n) for n in server_names))
        with tempfile.TemporaryDirectory(dir=self.directory) as scratch:
            csr = Path(scratch) / "request.csr"
            ext = Path(scratch) / "extensions.cnf"
            ext.write_text("\n".join(extensions) + "\n", encoding="ascii")
            _run_openssl(
                [
                    "req", "-new",
                    "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{EC_CURVE}", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
                ]
            )
            _private(key)
            _run_openssl(
                [
                    "x509", "-req", "-in", str(csr),
                    "-CA", str(self.ca_file), "-CAkey", str(self.ca_key),
                    # A random serial instead of a ca.srl file next to the CA.
                    "-set_serial", f"0x{secrets.token_hex(16)}",
                    "-days", str(self.validity_days),
                    "-extfile", str(ext), "-out", str(cert),
                ]
            )
        return cert, key

    def pkcs12_keystore(self, name: str, password: str) -> Path:
        """`name`'s key and certificate chain as a PKCS#12 keystore (what the JVM reads)."""
        keystore = self.directory / f"{check_principal(name)}.p12"
        _run_openssl(
            [
                "pkcs12", "-export",
                "-in", str(self.certfile(name)), "-inkey", str(self.keyfile(name)),
                "-certfile", str(self.ca_file), "-name", name,
                "-out", str(keystore),
                # From the environment, so the password never shows in `ps`.
                "-passout", "env:REFSTREAM_KEYSTORE_PASSWORD",
            ],
            env={"REFSTREAM_KEYSTORE_PASSWORD": password},
        )
        return _private(keystore)


def _san(name: str) -> str:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return f"DNS:{name}"
    return f"IP:{name}"


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """Generated secrets of one secure broker: the keystore password and SCRAM users."""

    keystore_password: str = field(repr=False)
    users: Mapping[str, str] = field(repr=False)

    def user(self, name: str) -> ScramUser:
        try:
            return ScramUser(name, self.users[name])
        except KeyError:
            raise CredentialsFileError(
                f"no SCRAM user {name!r} in the credentials (known: {sorted(self.users)}); "
                "create it with `refstream kafka-users create`"
            ) from None

    def scram_users(self) -> list[ScramUser]:
        return [ScramUser(name, password) for name, password in sorted(self.users.items())]


def load_credentials(path: Path) -> Credentials:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CredentialsFileError(
            f"{path} does not exist: the broker was not set up in secure mode "
            "(deploy/kafka.sh start --secure)"
        ) from None
    except (OSError, ValueError) as exc:
        raise CredentialsFileError(f"{path} is not readable JSON: {exc}") from exc
    try:
        if document["version"] != _CREDENTIALS_VERSION:
            raise CredentialsFileError(f"{path}: unsupported version {document['version']!r}")
        users = {str(name): str(password) for name, password in document["users"].items()}
        return Credentials(str(document["keystore_password"]), MappingProxyType(users))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CredentialsFileError(
            f"{path} lacks {exc}; restore it or delete the broker's data dir"
        ) from exc


def store_credentials(path: Path, credentials: Credentials) -> None:
    document = {
        "version": _CREDENTIALS_VERSION,
        "keystore_password": credentials.keystore_password,
        "users": dict(sorted(credentials.users.items())),
    }
    # Written under a temporary name with 0600 from the start, then renamed: readers never
    # see a half-written file and the secrets are never world-readable.
    partial = path.with_name(path.name + ".partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    partial.replace(path)


def registered_users(directory: Path) -> set[str]:
    """Names of the SCRAM users known to exist on the broker of `directory`."""
    try:
        text = (directory / REGISTERED_USERS_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    return {line.strip() for line in text.splitlines() if line.strip()}


def record_registered_users(directory: Path, names: Iterable[str]) -> None:
    known = registered_users(directory) | set(names)
    (directory / REGISTERED_USERS_FILE).write_text(
        "".join(f"{name}\n" for name in sorted(known)), encoding="utf-8"
    )


def add_user(directory: Path, name: str, password: str | None = None) -> ScramUser:
    """Add (or re-password) `name` in the credentials file and issue its client certificate."""
    path = directory / CREDENTIALS_FILE
    existing = load_credentials(path)
    user = ScramUser(check_principal(name), password or new_password())
    store_credentials(
        path,
        Credentials(
            existing.keystore_password,
            MappingProxyType({**existing.users, user.name: user.password}),
        ),
    )
    LocalPki(directory).ensure_certificate(user.name)
    return user


# --------------------------------------------------------------------------- material


@dataclass(frozen=True)
class SecurityMaterial:
    """Everything on disk a secure broker and its clients need, under one directory."""

    pki: LocalPki
    credentials: Credentials
    principals: tuple[str, ...]

    @property
    def directory(self) -> Path:
        return self.pki.directory

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    @property
    def broker_keystore(self) -> Path:
        return self.directory / f"{BROKER_PRINCIPAL}.p12"

    def client_options(self, principal: str, protocol: ClientProtocol) -> dict[str, object]:
        """kafka-python client options for `principal` (the names Settings.kafka_security uses)."""
        if protocol == "SASL_SSL":
            user = self.credentials.user(principal)
            return {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_plain_username": user.name,
                "sasl_plain_password": user.password,
                "ssl_cafile": str(self.ca_file),
            }
        return {
            "security_protocol": "SSL",
            "ssl_cafile": str(self.ca_file),
            "ssl_certfile": str(self.pki.certfile(principal)),
            "ssl_keyfile": str(self.pki.keyfile(principal)),
        }

    def client_env(
        self, principal: str, protocol: ClientProtocol, bootstrap: str
    ) -> dict[str, str]:
        """REFSTREAM_* variables that make a refstream process connect as `principal`."""
        env = {"REFSTREAM_KAFKA_BOOTSTRAP": bootstrap, "REFSTREAM_SECURITY_PROTOCOL": protocol}
        options = self.client_options(principal, protocol)
        for option, variable in (
            ("sasl_mechanism", "REFSTREAM_SASL_MECHANISM"),
            ("sasl_plain_username", "REFSTREAM_SASL_USERNAME"),
            ("sasl_plain_password", "REFSTREAM_SASL_PASSWORD"),
            ("ssl_cafile", "REFSTREAM_SSL_CAFILE"),
            ("ssl_certfile", "REFSTREAM_SSL_CERTFILE"),
            ("ssl_keyfile", "REFSTREAM_SSL_KEYFILE"),
        ):
            if option in options:
                env[variable] = str(options[option])
        return env

    def env_file(self, principal: str, protocol: ClientProtocol) -> Path:
        return self.directory / CLIENTS_DIR / f"{principal}.{_ENV_SUFFIX[protocol]}.env"

    def write_env_files(self, bootstraps: Mapping[ClientProtocol, str]) -> Path:
        """One sourceable env file per principal and protocol; returns their directory."""
        clients = self.directory / CLIENTS_DIR
        clients.mkdir(exist_ok=True)
        clients.chmod(0o700)
        for principal in self.principals:
            for protocol, bootstrap in bootstraps.items():
                path = self.env_file(principal, protocol)
                env = self.client_env(principal, protocol, bootstrap)
                lines = [
                    f"# Connect as {principal} over {protocol}: set -a; . {path}; set +a",
                    *(f"{key}={shlex.quote(value)}" for key, value in env.items()),
                ]
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
        return clients

    def broker_ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the broker and presents the broker's own certificate.

        The launcher's readiness probe uses it: the SSL listener demands a client
        certificate, and the broker's maps to a super user.
        """
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(
            str(self.pki.certfile(BROKER_PRINCIPAL)), str(self.pki.keyfile(BROKER_PRINCIPAL))
        )
        return context


def provision(
    directory: Path,
    principals: Iterable[str] = CLIENT_PRINCIPALS,
    *,
    server_names: Sequence[str] = ("127.0.0.1", "localhost"),
    validity_days: int = CERT_VALIDITY_DAYS,
) -> SecurityMaterial:
    """Create what is missing (CA, broker keystore, client certificates, passwords).

    Idempotent: existing valid certificates and passwords are kept, so clients
    configured earlier keep working across broker restarts.
    """
    names = tuple(dict.fromkeys(check_principal(p) for p in principals))
    if BROKER_PRINCIPAL in names:
        raise PrincipalNameError(
            f"{BROKER_PRINCIPAL!r} is the broker's own identity, not a client principal"
        )
    pki = LocalPki(directory, validity_days)
    renew = pki.ensure_ca()
    credentials_path = directory / CREDENTIALS_FILE
    if credentials_path.is_file():
        existing = load_credentials(credentials_path)
    else:
        existing = Credentials(new_password(), MappingProxyType({}))
    users = {name: existing.users.get(name) or new_password() for name in names}
    # Users added later through the admin API stay in the file as well.
    credentials = Credentials(
        existing.keystore_password, MappingProxyType({**existing.users, **users})
    )
    if credentials != existing or not credentials_path.is_file():
        store_credentials(credentials_path, credentials)
    broker_cert = pki.certfile(BROKER_PRINCIPAL)
    keystore = directory / f"{BROKER_PRINCIPAL}.p12"
    before = broker_cert.stat().st_mtime_ns if broker_cert.is_file() else None
    pki.ensure_certificate(BROKER_PRINCIPAL, server_names=server_names, renew=renew)
    if renew or not keystore.is_file() or broker_cert.stat().st_mtime_ns != before:
        pki.pkcs12_keystore(BROKER_PRINCIPAL, credentials.keystore_password)
    for name in names:
        pki.ensure_certificate(name, renew=renew)
    return SecurityMaterial(pki, credentials, names)


def load_material(directory: Path) -> SecurityMaterial:
    """The material `provision` made earlier, without creating anything."""
    credentials = load_credentials(directory / CREDENTIALS_FILE)
    pki = LocalPki(directory)
    if not pki.ca_file.is_file():
        raise SecuritySetupError(f"{pki.ca_file} is missing; start the broker with --secure")
    return SecurityMaterial(pki, credentials, tuple(sorted(credentials.users)))


# --------------------------------------------------------------------------- broker config


def broker_security_properties(
    material: SecurityMaterial,
    *,
    sasl_listener: str,
    super_users: Sequence[str] = (BROKER_PRINCIPAL, ADMIN_PRINCIPAL),
) -> dict[str, str]:
    """TLS everywhere, mutual TLS except on the SCRAM listener, deny unless an ACL allows.

    The defaults (not listener-prefixed) cover the SSL client listener and the controller
    listener alike, on the server and the client side: the broker reaches its own
    controller with its certificate, whose principal is a super user.
    """
    prefix = f"listener.name.{sasl_listener.lower()}"
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(material.broker_keystore),
        "ssl.keystore.password": material.credentials.keystore_password,
        "ssl.key.password": material.credentials.keystore_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(material.ca_file),
        "ssl.client.auth": "required",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.principal.mapping.rules": PRINCIPAL_MAPPING_RULES,
        # SCRAM authenticates the client; a certificate on top is not asked for.
        f"{prefix}.ssl.client.auth": "none",
        f"{prefix}.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"{prefix}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config": jaas,
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(f"User:{name}" for name in super_users),
    }
