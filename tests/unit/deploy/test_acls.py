"""The ACL table is the least-privilege matrix: every right a role needs, nothing more.

Also: applying it is idempotent and pruning only touches refstream's principals (against
an in-memory stand-in for the admin client that speaks kafka-python's ACL types).
"""

from __future__ import annotations

from typing import Any

import pytest
from kafka.admin import ACL, ACLFilter

from refstream.deploy import security
from refstream.deploy.acls import (
    FINANCE_GROUP,
    AclError,
    ExistingAcl,
    Grant,
    Operation,
    Pattern,
    Resource,
    _to_kafka,
    apply_acls,
    grants_of,
    least_privilege_roles,
    render_table,
    roles_for,
    table_rows,
)
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames

NAMES = TopicNames("shop", "refstream")
SHOP_TOPICS = NAMES.shop_topics
DERIVED = (NAMES.attributions, NAMES.fraud_flags, NAMES.reward_due, NAMES.rewards)
R, W, D = Operation.READ, Operation.WRITE, Operation.DESCRIBE

# principal -> topic -> operations; every (principal, topic) not listed is denied.
TOPIC_MATRIX: dict[str, dict[str, set[Operation]]] = {
    "shop-producer": {topic: {W, D} for topic in SHOP_TOPICS},
    "pipeline": {
        **{topic: {R, D} for topic in SHOP_TOPICS},
        NAMES.log: {R, W, D},
        NAMES.dlq: {W, D},
        **{topic: {W, D} for topic in DERIVED},
    },
    "finance": {NAMES.reward_due: {R, D}},
    "replay": {NAMES.log: {R, D}},
    "topics": {topic: {Operation.CREATE, D} for topic in
               (*SHOP_TOPICS, NAMES.log, NAMES.dlq, *DERIVED)},
}
# principal -> (group, pattern); a principal not listed may use no consumer group.
GROUP_MATRIX = {
    "pipeline": ("refstream", Pattern.LITERAL),
    "finance": (FINANCE_GROUP, Pattern.LITERAL),
}
# The pipeline stage's own consumer group (streams/pipeline_stage.py), literal as well.
# Each stage of the worker reads in a group of its own (streams/topics.py, STAGES).
STAGE_GROUPS = {("pipeline", f"refstream.{stage}", Pattern.LITERAL)
                for stage in ("ingest", "pipeline", "archiver")}


def _roles() -> Any:
    return least_privilege_roles(NAMES, app_id="refstream")


def _topic_rights(grants: tuple[Grant, ...]) -> dict[str, dict[str, set[Operation]]]:
    rights: dict[str, dict[str, set[Operation]]] = {}
    for grant in grants:
        if grant.resource is Resource.TOPIC:
            assert grant.pattern is Pattern.LITERAL, f"topic rights are per name: {grant}"
            rights.setdefault(grant.principal, {}).setdefault(grant.name, set()).add(
                grant.operation
            )
    return rights


def test_topic_rights_are_exactly_the_matrix() -> None:
    assert _topic_rights(grants_of(_roles())) == TOPIC_MATRIX


def test_group_rights_are_exactly_the_matrix() -> None:
    groups = {
        (grant.principal, grant.name, grant.pattern)
        for grant in grants_of(_roles())
        if grant.resource is Resource.GROUP
    }
    assert groups == {(p, name, pattern) for p, (name, pattern) in GROUP_MATRIX.items()
                      } | STAGE_GROUPS
    assert {
        grant.operation for grant in grants_of(_roles()) if grant.resource is Resource.GROUP
    } == {Operation.READ}


def test_pipeline_group_does_not_cover_the_finance_group() -> None:
    # A PREFIXED "refstream" grant would also match "refstream-finance".
    name, pattern = GROUP_MATRIX["pipeline"]
    assert pattern is Pattern.LITERAL
    assert FINANCE_GROUP.startswith(name)


def test_only_the_topics_principal_creates_nobody_alters_or_deletes_no_cluster_rights() -> None:
    grants = grants_of(_roles())
    assert {grant.operation for grant in grants} <= {R, W, D, Operation.CREATE}
    assert {g.principal for g in grants if g.operation is Operation.CREATE} == {"topics"}
    assert {g.operation for g in grants if g.principal == "topics"} == {Operation.CREATE, D}
    assert all(grant.resource is not Resource.CLUSTER for grant in grants)


def test_admin_broker_and_analysts_are_not_in_the_acl_table() -> None:
    principals = {grant.principal for grant in grants_of(_roles())}
    assert principals == {"shop-producer", "pipeline", "finance", "replay", "topics"}
    assert security.ADMIN_PRINCIPAL not in principals  # super user instead
    assert security.BROKER_PRINCIPAL not in principals


def test_every_principal_has_a_scram_user_and_certificate_by_default() -> None:
    principals = {grant.principal for grant in grants_of(_roles())}
    assert principals <= set(security.CLIENT_PRINCIPALS)


def test_one_role_per_shop_producer_with_identical_rights() -> None:
    roles = least_privilege_roles(
        NAMES, app_id="refstream", shop_producers=("shop-acme", "shop-bravo")
    )
    rights = _topic_rights(grants_of(roles))
    assert rights["shop-acme"] == rights["shop-bravo"] == TOPIC_MATRIX["shop-producer"]
    assert "shop-producer" not in rights


def test_an_unsafe_principal_name_is_rejected() -> None:
    with pytest.raises(security.PrincipalNameError, match="lower-case"):
        least_privilege_roles(NAMES, app_id="refstream", shop_producers=("Shop Acme",))


def test_the_table_follows_the_configured_prefixes_and_app_id() -> None:
    settings = Settings(topic_prefix="rs-test", shop_topic_prefix="shop-test", app_id="rs-app")
    grants = grants_of(roles_for(settings))
    topics = {grant.name for grant in grants if grant.resource is Resource.TOPIC}
    assert topics == {*TopicNames("shop-test", "rs-test").shop_topics,
                      *(f"rs-test.{t}" for t in ("log", "dlq", "attributions", "fraud-flags",
                                                 "reward-due", "rewards"))}
    assert Grant("pipeline", Resource.GROUP, "rs-app", Pattern.LITERAL, R) in grants


def test_show_prints_one_row_per_principal_and_resource() -> None:
    roles = _roles()
    rows = table_rows(roles)
    assert ("replay", "TOPIC", "LITERAL", NAMES.log, "READ, DESCRIBE") in rows
    assert ("pipeline", "TOPIC", "LITERAL", NAMES.log, "READ, WRITE, DESCRIBE") in rows
    assert len(rows) == len({(r[0], r[1], r[3]) for r in rows})
    text = render_table(roles)
    assert "Everything else is denied" in text
    assert "analysts" in text and "no Kafka access" in text


# --------------------------------------------------------------------------- applying


class FakeAdmin:
    """Just enough of KafkaAdminClient: an ACL set behind describe/create/delete."""

    def __init__(self, acls: list[ACL] | None = None) -> None:
        self.acls: list[ACL] = list(acls or [])
        self.create_calls = 0

    def describe_acls(self, acl_filter: ACLFilter) -> tuple[list[ACL], Any]:
        return list(self.acls), None

    def create_acls(self, acls: list[ACL]) -> dict[str, list[Any]]:
        self.create_calls += 1
        self.acls.extend(acl for acl in acls if acl not in self.acls)
        return {"succeeded": acls, "failed": []}

    def delete_acls(self, filters: list[ACL]) -> list[tuple[Any, list[ACL], Any]]:
        class NoError:
            errno = 0

        removed = [acl for acl in self.acls if acl in filters]
        self.acls = [acl for acl in self.acls if acl not in filters]
        return [(f, removed, NoError) for f in filters]


def test_apply_creates_the_table_once_and_then_nothing() -> None:
    admin = FakeAdmin()
    first = apply_acls(admin, _roles(), settle_timeout_s=0)
    second = apply_acls(admin, _roles(), settle_timeout_s=0)
    assert len(first.created) == len(grants_of(_roles())) and first.present == ()
    assert second.created == () and len(second.present) == len(first.created)
    assert admin.create_calls == 1


class LaggingAdmin(FakeAdmin):
    """Created ACLs show up in describe only after `lag` more describe calls (or never)."""

    def __init__(self, lag: int | None) -> None:
        super().__init__()
        self.lag = lag
        self.describes = 0
        self.shown = 0

    def describe_acls(self, acl_filter: ACLFilter) -> tuple[list[ACL], Any]:
        self.describes += 1
        if self.lag is not None and self.describes > self.lag:
            self.shown = len(self.acls)
        return list(self.acls[: self.shown]), None


def test_apply_waits_until_the_broker_shows_the_new_acls() -> None:
    admin = LaggingAdmin(lag=3)  # the first describe is apply's own look at what exists
    apply_acls(admin, _roles(), settle_timeout_s=30)
    assert admin.describes == 4 and admin.shown == len(grants_of(_roles()))


def test_acls_the_broker_never_shows_fail_with_how_many_are_missing() -> None:
    admin = LaggingAdmin(lag=None)
    with pytest.raises(AclError, match=rf"lacks {len(grants_of(_roles()))} of the new ACLs 1s"):
        apply_acls(admin, _roles(), settle_timeout_s=0.6)
    assert admin.describes >= 3  # apply's own look, then the wait's first and at least one more


def _foreign(principal: str, topic: str) -> ACL:
    return _to_kafka(ExistingAcl(principal, "*", "TOPIC", topic, "LITERAL", "READ", "ALLOW"))


def test_prune_removes_stale_rights_of_our_principals_only() -> None:
    stale = _foreign("User:pipeline", NAMES.reward_due)  # pipeline must not read reward-due
    other = _foreign("User:someone-else", NAMES.reward_due)
    admin = FakeAdmin([stale, other])
    dry = apply_acls(admin, _roles(), prune=True, dry_run=True, settle_timeout_s=0)
    assert [str(acl) for acl in dry.removed] == [
        f"User:pipeline ALLOW READ topic {NAMES.reward_due} (literal, host *)"
    ]
    assert stale in admin.acls and admin.create_calls == 0
    apply_acls(admin, _roles(), prune=True, settle_timeout_s=0)
    assert stale not in admin.acls
    assert other in admin.acls


def test_without_prune_extra_acls_stay() -> None:
    stale = _foreign("User:pipeline", NAMES.reward_due)
    admin = FakeAdmin([stale])
    result = apply_acls(admin, _roles(), settle_timeout_s=0)
    assert result.removed == ()
    assert stale in admin.acls


def test_scram_user_arguments_for_the_storage_tool() -> None:
    user = security.ScramUser("pipeline", "Abcdefgh_123-xyz")
    assert user.storage_tool_argument() == (
        "SCRAM-SHA-512=[name=pipeline,password=Abcdefgh_123-xyz]"
    )
    with pytest.raises(security.SecuritySetupError, match="at least 12 characters"):
        security.ScramUser("pipeline", "short,pw]")
