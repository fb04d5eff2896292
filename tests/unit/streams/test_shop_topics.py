"""Shops with credentials of their own: their topics, and the ACLs that let only them write
there (the broker enforces it in tests/integration/test_shop_credentials.py)."""

from __future__ import annotations

import pytest

from refstream.deploy.acls import AclError, Grant, Operation, Pattern, least_privilege_roles
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, topic_specs

NAMES = TopicNames("shop", "refstream")
OWN = {"shop-acme": "acme", "shop-beta": "beta"}


def rights(principal: str, shop_principals: dict[str, str]) -> set[tuple[str, str]]:
    roles = least_privilege_roles(NAMES, app_id="refstream", shop_principals=shop_principals)
    return {(g.name, g.operation.value) for role in roles for g in role.grants
            if g.principal == principal}


def test_a_shop_principal_writes_only_its_own_topics() -> None:
    acme = rights("shop-acme", OWN)
    assert acme == {(f"shop.acme.{t}", op) for t in ("share", "click", "signup", "order",
                                                        "return", "review", "code_issued")
                    for op in ("WRITE", "DESCRIBE")}
    assert not any(topic.startswith(("shop.beta.", "refstream.")) for topic, _ in acme)
    assert not any(topic in NAMES.shop_topics for topic, _ in acme)


def test_the_grants_are_literal_so_a_shop_id_prefix_matches_no_other_shop() -> None:
    roles = least_privilege_roles(NAMES, app_id="refstream",
                                  shop_principals={"shop-acme": "acme", "shop-eu": "acme.eu"})
    grants: list[Grant] = [g for role in roles for g in role.grants]
    assert all(g.pattern is Pattern.LITERAL for g in grants)
    acme_writes = {g.name for g in grants
                   if g.principal == "shop-acme" and g.operation is Operation.WRITE}
    assert not any(name.startswith("shop.acme.eu.") for name in acme_writes)


def test_the_pipeline_reads_every_shops_own_topics() -> None:
    pipeline = rights("pipeline", OWN)
    assert {(t, "READ") for t in NAMES.own_shop_topics(OWN.values())} <= pipeline
    assert not any(op == "WRITE" and t.startswith("shop.") for t, op in pipeline)


def test_a_shop_principal_may_not_also_write_the_shared_topics() -> None:
    with pytest.raises(AclError, match="shop-acme would write the shared shop topics"):
        least_privilege_roles(NAMES, app_id="refstream", shop_producers=("shop-acme",),
                              shop_principals=OWN)


def test_own_topics_are_created_with_the_shared_ones_and_producers_use_them() -> None:
    specs = {s.name for s in topic_specs(NAMES, 3, own_topic_shops=OWN.values())}
    assert set(NAMES.own_shop_topics(["acme", "beta"])) | set(NAMES.shop_topics) <= specs
    assert NAMES.topic_for("acme", "order", {"acme"}) == "shop.acme.order"
    assert NAMES.topic_for("gamma", "order", {"acme"}) == "shop.order"


def test_the_mapping_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFSTREAM_SHOP_PRINCIPALS", '{"shop-acme": "acme"}')
    assert Settings().shop_principals == {"shop-acme": "acme"}
