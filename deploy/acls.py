"""Least-privilege Kafka ACLs for refstream's principals, as code, and applying them.

Owns the table of who may do what on which topic and group, `refstream acls show|apply`
and `refstream kafka-users create|list` (SCRAM users through the admin API).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

from pydantic import SecretStr
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from refstream.deploy import security
from refstream.deploy.kafka_launcher import (
    SASL_LISTENER,
    SECURITY_DIR,
    TLS_LISTENER,
    read_properties,
)
from refstream.schemas.errors import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, RefstreamError

if TYPE_CHECKING:
    from refstream.streams.settings import Settings
    from refstream.streams.topics import TopicNames

FINANCE_GROUP: Final = "refstream-finance"
ANY_HOST: Final = "*"
ENV_ADMIN_PASSWORD: Final = "REFSTREAM_ADMIN_PASSWORD"
ADMIN_TIMEOUT_MS: Final = 30_000
# The controller commits new ACLs at once, but a broker's authorizer picks them up from
# the metadata log a moment later (about a second on a small machine).
ACL_SETTLE_TIMEOUT_S: Final = 30.0
ACL_SETTLE_POLL_S: Final = 0.2


class AclError(RefstreamError):
    """ACLs or SCRAM users could not be read or changed on the broker."""

    exit_code: ClassVar[int] = EXIT_USAGE


class AdminConnectionError(AclError):
    """No admin connection: unreachable broker, wrong credentials or not a super user."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


class Operation(StrEnum):
    """The Kafka operations refstream grants (names as in kafka.admin.ACLOperation)."""

    READ = "READ"
    WRITE = "WRITE"
    DESCRIBE = "DESCRIBE"
    CREATE = "CREATE"


class Resource(StrEnum):
    """Kafka resource types (names as in kafka.admin.ResourceType)."""

    TOPIC = "TOPIC"
    GROUP = "GROUP"
    CLUSTER = "CLUSTER"


class Pattern(StrEnum):
    """How a grant's name matches (names as in kafka.admin.ACLResourcePatternType)."""

    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL from any host: `principal` may `operation` on the resource."""

    principal: str
    resource: Resource
    name: str
    pattern: Pattern
    operation: Operation

    @property
    def kafka_principal(self) -> str:
        return f"User:{self.principal}"


@dataclass(frozen=True)
class Role:
    """A principal, why it exists, and everything it is allowed to do."""

    principal: str
    purpose: str
    grants: tuple[Grant, ...]


def _topic(principal: str, topics: Iterable[str], *operations: Operation) -> list[Grant]:
    return [
        Grant(principal, Resource.TOPIC, topic, Pattern.LITERAL, operation)
        for topic in topics
        for operation in operations
    ]


def _group(principal: str, group: str, pattern: Pattern) -> Grant:
    # READ on a group covers join, sync, heartbeat, offset commit and fetch; it implies
    # DESCRIBE, and nothing else of the group (no DELETE).
    return Grant(principal, Resource.GROUP, group, pattern, Operation.READ)


def least_privilege_roles(
    names: TopicNames,
    *,
    app_id: str,
    finance_group: str = FINANCE_GROUP,
    shop_producers: Sequence[str] = (security.SHOP_PRODUCER_PRINCIPAL,),
    shop_principals: Mapping[str, str] | None = None,
) -> tuple[Role, ...]:
    """The roles of a deployment with these topic names and faust app id.

    `shop_principals` (principal -> shop id) gives each such shop topics of its own that
    only its principal may write (literal names: a prefix `shop.acme` would also match
    shop `acme.eu`'s topics); ingest binds what it reads there to that shop.

    Topics are created by the `topics` principal (`refstream topics create`, the
    Kubernetes topics Job), which may CREATE and DESCRIBE exactly refstream's topics and
    nothing else; no runtime role has CREATE: a worker with a typo'd prefix fails instead
    of inventing topics.
    DESCRIBE is spelled out next to READ/WRITE (Kafka implies it) so the table reads
    as the complete list. The shop topics are shared by all shops, so ACLs cannot keep
    one shop from writing another's shop_id; ingest's known-shops check is that guard.
    """
    read, write, describe = Operation.READ, Operation.WRITE, Operation.DESCRIBE
    from refstream.streams.topics import STAGES, stage_group

    pipeline = security.PIPELINE_PRINCIPAL
    own = dict(shop_principals or {})
    shared_and_own = sorted(set(own) & set(shop_producers))
    if shared_and_own:
        raise AclError(
            f"{', '.join(shared_and_own)} would write the shared shop topics, where any "
            "shop_id passes, as well as its shop's own topics; give a shop principal one of "
            "the two (drop it from --shop-producer)")
    own_roles = [
        Role(
            security.check_principal(principal),
            f"shop {shop}'s events in: writes only {shop}'s own topics, reads nothing",
            tuple(_topic(principal, names.own_shop_topics([shop]), write, describe)),
        )
        for principal, shop in sorted(own.items())
    ]
    outputs = (names.dlq, names.attributions, names.fraud_flags, names.reward_due, names.rewards)
    shop_roles = [
        Role(
            producer,
            "shop events in: writes the shop.<type> topics, reads nothing",
            tuple(_topic(producer, names.shop_topics, write, describe)),
        )
        for producer in map(security.check_principal, shop_producers)
    ]
    return (
        *shop_roles,
        *own_roles,
        Role(
            pipeline,
            "refstream worker: ingest, pipeline, archiver (a consumer group per stage)",
            (
                *_topic(pipeline, names.shop_topics, read, describe),
                *_topic(pipeline, names.own_shop_topics(own.values()), read, describe),
                *_topic(pipeline, [names.log], read, write, describe),
                *_topic(pipeline, outputs, write, describe),
                # Literal: a prefix "refstream" would also match the finance group. faust's
                # group (app id) and each stage's own group (streams/topics.py).
                _group(pipeline, app_id, Pattern.LITERAL),
                *(_group(pipeline, stage_group(app_id, stage), Pattern.LITERAL)
                  for stage in STAGES),
            ),
        ),
        Role(
            security.FINANCE_PRINCIPAL,
            "pays rewards: reads reward-due with its own consumer group only",
            (
                *_topic(security.FINANCE_PRINCIPAL, [names.reward_due], read, describe),
                _group(security.FINANCE_PRINCIPAL, finance_group, Pattern.LITERAL),
            ),
        ),
        Role(
            security.REPLAY_PRINCIPAL,
            "replay and archive: read the canonical log from offset 0, no group",
            tuple(_topic(security.REPLAY_PRINCIPAL, [names.log], read, describe)),
        ),
        Role(
            security.TOPICS_PRINCIPAL,
            "creates the missing topics (refstream topics create, the k8s topics Job); "
            "reads and writes nothing",
            tuple(_topic(security.TOPICS_PRINCIPAL,
                         [*names.shop_topics, names.log, *outputs], Operation.CREATE,
                         describe)),
        ),
    )


def roles_for(
    settings: Settings, shop_producers: Sequence[str] = (security.SHOP_PRODUCER_PRINCIPAL,)
) -> tuple[Role, ...]:
    """The roles for the topic names and app id of `settings`."""
    from refstream.streams.topics import TopicNames

    return least_privilege_roles(
        TopicNames.from_settings(settings),
        app_id=settings.app_id,
        shop_producers=shop_producers,
        shop_principals=settings.shop_principals,
    )


def grants_of(roles: Iterable[Role]) -> tuple[Grant, ...]:
    return tuple(sorted({grant for role in roles for grant in role.grants}))


# Principals outside the ACL table, shown so `acls show` answers "who can do what" fully.
UNLISTED_PRINCIPALS: Final = (
    (security.ADMIN_PRINCIPAL, "super user: applies ACLs, manages SCRAM users"),
    (security.BROKER_PRINCIPAL, "super user: the broker's own certificate (controller, "
                                "inter-broker); never a client"),
    ("analysts", "no Kafka access: they query published DuckDB snapshots"),
)


def table_rows(roles: Iterable[Role]) -> list[tuple[str, str, str, str, str]]:
    """(principal, resource, pattern, name, operations): one row per resource and principal."""
    merged: dict[tuple[str, str, str, str], list[str]] = {}
    order = list(Operation)
    for role in roles:
        for grant in role.grants:
            key = (grant.principal, grant.resource.value, grant.pattern.value, grant.name)
            merged.setdefault(key, []).append(grant.operation.value)
    return [
        (*key, ", ".join(sorted(set(ops), key=lambda op: order.index(Operation(op)))))
        for key, ops in merged.items()
    ]


def render_table(roles: Sequence[Role], fmt: str = "table") -> str:
    from refstream.reports.tables_output import render_rows

    header = ["principal", "resource", "pattern", "name", "operations"]
    text = render_rows(header, table_rows(roles), fmt)
    if fmt != "table":
        return text
    purposes = [f"  {role.principal:14} {role.purpose}" for role in roles]
    unlisted = [f"  {name:14} {what}" for name, what in UNLISTED_PRINCIPALS]
    return "\n".join(
        [text, "", "roles:", *purposes, *unlisted,
         "", "Everything else is denied (allow.everyone.if.no.acl.found=false)."]
    )


# --------------------------------------------------------------------------- applying


@dataclass(frozen=True)
class ExistingAcl:
    """An ACL as the broker reports it, in comparable form."""

    principal: str
    host: str
    resource: str
    name: str
    pattern: str
    operation: str
    permission: str

    def __str__(self) -> str:
        return (
            f"{self.principal} {self.permission} {self.operation} {self.resource.lower()} "
            f"{self.name} ({self.pattern.lower()}, host {self.host})"
        )


@dataclass(frozen=True)
class ApplyResult:
    created: tuple[Grant, ...]
    present: tuple[Grant, ...]
    removed: tuple[ExistingAcl, ...]

    def summary(self, *, dry_run: bool = False) -> str:
        verb = "would create" if dry_run else "created"
        removed = "would remove" if dry_run else "removed"
        return (
            f"{verb} {len(self.created)} ACLs, {len(self.present)} already present, "
            f"{removed} {len(self.removed)}"
        )


def _desired(grant: Grant) -> ExistingAcl:
    return ExistingAcl(
        grant.kafka_principal, ANY_HOST, grant.resource.value, grant.name,
        grant.pattern.value, grant.operation.value, "ALLOW",
    )


def _to_kafka(acl: ExistingAcl) -> Any:
    """The kafka-python ACL object (kafka.admin.ACL) of `acl`."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    pattern = ResourcePattern(
        ResourceType[acl.resource], acl.name, ACLResourcePatternType[acl.pattern]
    )
    return ACL(
        principal=acl.principal,
        host=acl.host,
        operation=ACLOperation[acl.operation],
        permission_type=ACLPermissionType[acl.permission],
        resource_pattern=pattern,
    )


def describe_all_acls(admin: Any) -> list[ExistingAcl]:
    """Every ACL on the cluster."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import KafkaError

    match_all = ACLFilter(
        principal=None,
        host=None,
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
    try:
        acls, _ = admin.describe_acls(match_all)
    except KafkaError as exc:
        raise _explain(exc, "list ACLs") from exc
    return [
        ExistingAcl(
            acl.principal, acl.host, acl.resource_pattern.resource_type.name,
            acl.resource_pattern.resource_name, acl.resource_pattern.pattern_type.name,
            acl.operation.name, acl.permission_type.name,
        )
        for acl in acls
    ]


def apply_acls(
    admin: Any,
    roles: Sequence[Role],
    *,
    prune: bool = False,
    dry_run: bool = False,
    settle_timeout_s: float = ACL_SETTLE_TIMEOUT_S,
) -> ApplyResult:
    """Create the missing ACLs of `roles`; with `prune`, delete other ACLs of their principals.

    Idempotent: what exists is left alone, so a second run creates nothing. ACLs of
    principals outside `roles` are never touched. Returns once the broker answering
    DescribeAcls enforces the result, so a client started next sees it.
    """
    from kafka.errors import KafkaError

    grants = grants_of(roles)
    existing = set(describe_all_acls(admin))
    missing = [grant for grant in grants if _desired(grant) not in existing]
    present = [grant for grant in grants if _desired(grant) in existing]
    wanted = {_desired(grant) for grant in grants}
    managed = {f"User:{role.principal}" for role in roles}
    stale = sorted(
        (acl for acl in existing if acl.principal in managed and acl not in wanted),
        key=lambda acl: (acl.principal, acl.resource, acl.name, acl.operation),
    )
    removed: list[ExistingAcl] = stale if prune else []
    if dry_run:
        return ApplyResult(tuple(missing), tuple(present), tuple(removed))
    try:
        if missing:
            outcome = admin.create_acls([_to_kafka(_desired(grant)) for grant in missing])
            if outcome["failed"]:
                raise AclError(
                    f"the broker refused {len(outcome['failed'])} of {len(missing)} ACLs: "
                    f"{outcome['failed'][:3]}; check that the admin principal is a super user"
                )
        if removed:
            for _, _, error in admin.delete_acls([_to_kafka(acl) for acl in removed]):
                if error.errno:
                    raise AclError(f"deleting stale ACLs failed: {error.__name__}")
    except KafkaError as exc:
        raise _explain(exc, "change ACLs") from exc
    _wait_until_enforced(admin, wanted, set(removed), settle_timeout_s)
    return ApplyResult(tuple(missing), tuple(present), tuple(removed))


def _wait_until_enforced(
    admin: Any, wanted: set[ExistingAcl], removed: set[ExistingAcl], timeout_s: float
) -> None:
    def unsettled(current: set[ExistingAcl]) -> bool:
        return not wanted <= current or bool(removed & current)

    try:
        Retrying(
            stop=stop_after_delay(timeout_s),
            wait=wait_fixed(ACL_SETTLE_POLL_S),
            retry=retry_if_result(unsettled),
        )(lambda: set(describe_all_acls(admin)))
    except RetryError as timeout:
        current = timeout.last_attempt.result()
        raise AclError(
            f"the broker still lacks {len(wanted - current)} of the new ACLs "
            f"{timeout_s:.0f}s after they were created; check the controller in the "
            "broker log, then run `refstream acls apply` again"
        ) from None


def _explain(exc: Exception, action: str) -> AclError:
    name = type(exc).__name__
    if name == "SecurityDisabledError":
        return AclError(
            f"cannot {action}: the broker has no authorizer; start it with "
            "deploy/kafka.sh start --secure (or set authorizer.class.name)"
        )
    if "Authorization" in name:
        return AdminConnectionError(
            f"cannot {action}: the connecting principal is not allowed to ({name}); "
            "connect as a super user (--admin-user admin)"
        )
    return AclError(f"cannot {action}: {name}: {exc}")


# --------------------------------------------------------------------------- SCRAM users


def create_scram_user(admin: Any, user: security.ScramUser) -> None:
    """Create `user` or change its password (SCRAM-SHA-512, through the admin API)."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion
    from kafka.errors import KafkaError

    upsert = UserScramCredentialUpsertion(user.name, ScramMechanism.SCRAM_SHA_512, user.password)
    try:
        errors = admin.alter_user_scram_credentials([upsert])
    except KafkaError as exc:
        raise _explain(exc, f"create SCRAM user {user.name!r}") from exc
    if errors.get(user.name):
        raise AclError(f"the broker refused SCRAM user {user.name!r}: {errors[user.name]}")


def list_scram_users(admin: Any) -> dict[str, list[str]]:
    """user -> its SCRAM mechanisms."""
    from kafka.errors import KafkaError

    try:
        described = admin.describe_user_scram_credentials()
    except KafkaError as exc:
        raise _explain(exc, "list SCRAM users") from exc
    return {
        user: [info["mechanism"].name.replace("_", "-") for info in entry["credential_infos"]]
        for user, entry in sorted(described.items())
    }


# --------------------------------------------------------------------------- admin connection


@dataclass(frozen=True)
class LocalBroker:
    """What a broker started by deploy/kafka.sh start --secure left in its data dir."""

    data_dir: Path

    @property
    def security_dir(self) -> Path:
        return self.data_dir / SECURITY_DIR

    def listener_address(self, listener: str) -> str:
        """host:port of `listener` from the broker's server.properties."""
        path = self.data_dir / "server.properties"
        try:
            listeners = read_properties(path).get("listeners", "")
        except OSError as exc:
            raise AclError(
                f"{path} is not readable ({exc}); was the broker started from {self.data_dir}?"
            ) from exc
        for url in listeners.split(","):
            name, _, address = url.partition("://")
            if name == listener:
                return address
        raise AclError(
            f"{path} has no {listener} listener: that broker was not started with --secure"
        )

    def material(self) -> security.SecurityMaterial:
        try:
            return security.load_material(self.security_dir)
        except security.SecuritySetupError as exc:
            raise AclError(str(exc)) from exc

    def admin_settings(self, base: Settings) -> Settings:
        material = self.material()
        user = material.credentials.user(security.ADMIN_PRINCIPAL)
        return base.model_copy(
            update={
                "kafka_bootstrap": self.listener_address(SASL_LISTENER),
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": security.SCRAM_MECHANISM,
                "sasl_username": user.name,
                "sasl_password": SecretStr(user.password),
                "ssl_cafile": material.ca_file,
                "ssl_certfile": None,
                "ssl_keyfile": None,
            }
        )


def admin_settings(*, bootstrap: str | None = None, admin_user: str | None = None,
                   local_broker: Path | None = None) -> Settings:
    """Settings for the admin connection: REFSTREAM_* env, then the command line.

    `local_broker` (--local-broker DIR) takes everything from a broker started by
    deploy/kafka.sh; `admin_user` takes the password from $REFSTREAM_ADMIN_PASSWORD, else a
    prompt.
    """
    from refstream.streams.settings import Settings

    settings = Settings()
    if local_broker is not None:
        settings = LocalBroker(local_broker).admin_settings(settings)
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    if admin_user:
        password = os.environ.get(ENV_ADMIN_PASSWORD)
        if password is None:
            if not sys.stdin.isatty():
                raise AdminConnectionError(
                    f"--admin-user {admin_user}: set ${ENV_ADMIN_PASSWORD} "
                    "(no terminal to prompt for the password)"
                )
            password = getpass.getpass(f"password of Kafka user {admin_user}: ")
        protocol = settings.security_protocol
        settings = settings.model_copy(
            update={
                "sasl_username": admin_user,
                "sasl_password": SecretStr(password),
                "security_protocol": protocol if protocol.startswith("SASL") else "SASL_SSL",
            }
        )
    return settings


def open_admin(settings: Settings) -> Any:
    """A KafkaAdminClient for `settings`; AdminConnectionError with the likely cause."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="refstream-acls",
            request_timeout_ms=ADMIN_TIMEOUT_MS,
            # Within the command's bound (REFSTREAM_CLIENT_TIMEOUT_S) when that is shorter.
            bootstrap_timeout_ms=min(ADMIN_TIMEOUT_MS, int(settings.client_timeout_s * 1000)),
            **settings.kafka_security(),
        )
    except KafkaError as exc:
        if settings.security_protocol.startswith("SASL"):
            who = settings.sasl_username or "(no user)"
        else:
            who = f"certificate {settings.ssl_certfile}" if settings.ssl_certfile else "nobody"
        raise AdminConnectionError(
            f"no admin connection to {settings.kafka_bootstrap} over "
            f"{settings.security_protocol} as {who}: {type(exc).__name__}. Check the "
            "address, the protocol, the CA file and the password (a wrong SCRAM password "
            "shows up as a timeout; the broker log says 'Failed authentication')"
        ) from exc


# --------------------------------------------------------------------------- CLI


def show_acls(shop_producers: Sequence[str], fmt: str) -> int:
    """Print the ACL table (no broker needed)."""
    from refstream.streams.settings import Settings

    print(render_table(roles_for(Settings(), _shop_producers(shop_producers)), fmt))
    return EXIT_OK


def apply_acls_to_broker(settings: Settings, shop_producers: Sequence[str], *, prune: bool,
                         dry_run: bool) -> int:
    """Create the ACLs the broker lacks (idempotent); with `prune`, delete unlisted ones."""
    roles = roles_for(settings, _shop_producers(shop_producers))
    admin = open_admin(settings)
    try:
        result = apply_acls(admin, roles, prune=prune, dry_run=dry_run)
    finally:
        admin.close()
    for grant in result.created:
        print(f"{'would create' if dry_run else 'created'}: {_describe(grant)}")
    for acl in result.removed:
        print(f"{'would remove' if dry_run else 'removed'}: {acl}")
    print(result.summary(dry_run=dry_run) + f" on {settings.kafka_bootstrap}")
    return EXIT_OK


def _shop_producers(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(names or (security.SHOP_PRODUCER_PRINCIPAL,))


def _describe(grant: Grant) -> str:
    return (
        f"{grant.kafka_principal} {grant.operation.value} {grant.resource.value.lower()} "
        f"{grant.name}{'*' if grant.pattern is Pattern.PREFIXED else ''}"
    )


def create_user(settings: Settings, name: str, *, password: str | None,
                local_broker: Path | None) -> int:
    """Create a SCRAM user (or change its password); without `password` one is generated."""
    name = security.check_principal(name)
    local = LocalBroker(local_broker) if local_broker is not None else None
    if local is not None:
        # Kept in the credentials file with a client certificate and env files,
        # like the users made at format time.
        user = security.add_user(local.security_dir, name, password)
    else:
        user = security.ScramUser(name, password or security.new_password())
    admin = open_admin(settings)
    try:
        create_scram_user(admin, user)
    finally:
        admin.close()
    if local is not None:
        security.record_registered_users(local.security_dir, [user.name])
        material = local.material()
        material.write_env_files(
            {
                "SASL_SSL": local.listener_address(SASL_LISTENER),
                "SSL": local.listener_address(TLS_LISTENER),
            }
        )
        print(
            f"created SCRAM-SHA-512 user {user.name}; settings in "
            f"{material.env_file(user.name, 'SASL_SSL')}"
        )
    elif password is None:
        # Shown once: nothing else keeps a generated password for a remote broker.
        print(f"created SCRAM-SHA-512 user {user.name} with password {user.password}")
    else:
        print(f"created SCRAM-SHA-512 user {user.name}")
    print("it can do nothing until ACLs allow it (refstream acls show / apply)")
    return EXIT_OK


def list_users(settings: Settings) -> int:
    """Print the broker's SCRAM users and their mechanisms."""
    admin = open_admin(settings)
    try:
        users = list_scram_users(admin)
    finally:
        admin.close()
    for user, mechanisms in users.items():
        print(f"{user:20} {', '.join(mechanisms)}")
    return EXIT_OK
