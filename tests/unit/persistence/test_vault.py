"""The person vault: one stable token per shop customer, shared safely by processes, and
gone for good once the person is erased."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from refstream.persistence.vault import (
    TOKEN_PREFIX,
    PersonNotFound,
    PersonVault,
)
from refstream.schemas.codec import Codec
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import ShopOrder, ShopReturn, ShopShare, ShopSignup
from refstream.streams.ingest import Accepted, Ingestor, pseudonymiser_from_settings
from refstream.streams.settings import Settings

SECRET = b"0123456789abcdef0123456789abcdef"
WHEN = datetime(2026, 10, 3, tzinfo=UTC)


def test_a_customer_keeps_one_token_per_shop(tmp_path: Path) -> None:
    with PersonVault(tmp_path / "vault.sqlite") as vault:
        token = vault.token("shop-a", "cust-1")
        assert token.startswith(TOKEN_PREFIX) and "cust-1" not in token
        assert vault.token("shop-a", "cust-1") == token
        assert vault.token("shop-b", "cust-1") != token  # the same id at another shop
        assert vault.token("shop-a", "cust-2") != token
        assert vault.resolve("shop-a", token) == "cust-1"
        with pytest.raises(PersonNotFound):
            vault.resolve("shop-b", token)


def test_two_vaults_on_one_file_agree_whichever_creates_first(tmp_path: Path) -> None:
    path = tmp_path / "vault.sqlite"
    with PersonVault(path) as first, PersonVault(path) as second:
        made_by_second = second.token("shop-a", "cust-9")
        assert first.token("shop-a", "cust-9") == made_by_second
        assert first.resolve("shop-a", made_by_second) == "cust-9"
        assert first.count() == second.count() == 1


def _tokens_in_a_process(path: str) -> list[str]:
    with PersonVault(path) as vault:
        return [vault.token("shop-a", f"cust-{n}") for n in range(150)]


def test_two_processes_racing_on_new_customers_get_the_same_tokens(tmp_path: Path) -> None:
    path = str(tmp_path / "vault.sqlite")
    PersonVault(path).close()  # the schema exists before the race
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        one, two = pool.map(_tokens_in_a_process, [path, path])
    assert one == two
    assert len(set(one)) == 150
    with PersonVault(path) as vault:
        assert vault.count() == 150


def test_erasure_deletes_the_mapping_and_a_returning_customer_is_a_new_person(
        tmp_path: Path) -> None:
    path = tmp_path / "vault.sqlite"
    with PersonVault(path) as vault:
        token = vault.token("shop-a", "cust-1")
        kept = vault.token("shop-a", "cust-2")
        assert vault.erase("shop-a", "cust-1") == token
        assert vault.lookup("shop-a", "cust-1") is None
        with pytest.raises(PersonNotFound, match="erased"):
            vault.resolve("shop-a", token)
        with pytest.raises(PersonNotFound, match="already erased"):
            vault.erase("shop-a", "cust-1")
        assert vault.resolve("shop-a", kept) == "cust-2"
        assert vault.token("shop-a", "cust-1") != token
    # Nothing of the deleted row is left in the file: not the id, not the token.
    raw = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                               if path.with_name(path.name + "-wal").exists() else b"")
    assert token.encode() not in raw


def test_ingest_writes_tokens_instead_of_customer_ids_when_the_vault_is_set(
        tmp_path: Path) -> None:
    settings = Settings(person_vault=tmp_path / "vault.sqlite")
    ingestor = Ingestor(Codec(), pseudonymiser_from_settings(settings))
    shop_events = [
        ShopShare(event_id="1", shop_id="s", occurred_at=WHEN, referrer_id="alice",
                  referral_code="R-A", channel="email"),
        ShopSignup(event_id="2", shop_id="s", occurred_at=WHEN, customer_id="bob",
                   email="bob@example.org", ip="203.0.113.9"),
        ShopOrder(event_id="3", shop_id="s", occurred_at=WHEN, order_id="o", customer_id="bob",
                  amount_minor=100, currency="EUR", ip="203.0.113.9"),
        ShopReturn(event_id="4", shop_id="s", occurred_at=WHEN, return_id="r", order_id="o",
                   customer_id="bob", amount_minor=100, currency="EUR"),
    ]
    logged = []
    for event in shop_events:
        outcome = ingestor.accept_event(event)
        assert isinstance(outcome, Accepted)
        logged.append(outcome.event)
    with PersonVault(tmp_path / "vault.sqlite") as vault:
        alice, bob = vault.lookup("s", "alice"), vault.lookup("s", "bob")
    assert logged[0].referrer_id == alice  # type: ignore[union-attr]
    assert [e.customer_id for e in logged[1:]] == [bob, bob, bob]  # type: ignore[union-attr]
    assert not any("alice" in repr(e) or "'bob'" in repr(e) for e in logged)


def test_without_the_vault_customer_ids_pass_unchanged() -> None:
    assert Settings().person_vault is None
    event = ShopSignup(event_id="2", shop_id="s", occurred_at=WHEN, customer_id="bob",
                       email="bob@example.org", ip="203.0.113.9")
    assert Pseudonymiser(SECRET).to_log_event(event).customer_id == "bob"  # type: ignore[union-attr]
