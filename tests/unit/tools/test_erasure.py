"""Right to erasure: given a shop's log ingested with the person vault, when one referred
customer is erased, then replay gives the same referrals, rewards, money and fraud counts,
the vault no longer resolves their token, and none of their values is left in the archive."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from refstream.cli.main import main as refstream
from refstream.persistence.archive import ArchiveReader, ArchiveWriter
from refstream.persistence.store import ProjectionStore
from refstream.persistence.vault import PersonNotFound, PersonVault
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import Click, LogEvent, OrderPlaced, ReviewDecided, Share, Signup
from refstream.streams.embedded import EmbeddedLog, EmbeddedRunner
from refstream.streams.settings import Settings
from refstream.tools.erasure import ErasureError, erase_person
from refstream.tools.synthetic import SyntheticConfig, write_jsonl

CODEC = Codec()
# Not the user agent: a browser string shared by a crowd (see tools/erasure.py).
PERSONAL_COLUMNS = ("email_hash", "ip_hash", "device_id", "payment_hash", "shipping_hash",
                    "visitor_id")


# ---------------------------------------------------------------------------- helpers


def archive_rows(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(root.glob("shop_id=*/date=*/*.parquet")):
        rows += pq.ParquetFile(path).read().to_pylist()
    return rows


def personal_values(root: Path, token: str) -> set[str]:
    """What the test itself (not the code under test) calls the person's data."""
    rows = archive_rows(root)
    mine = [r for r in rows if token in (r["customer_id"], r["referrer_id"])]
    values = {r[c] for r in mine for c in PERSONAL_COLUMNS if r[c]}
    visitors = {r["visitor_id"] for r in mine if r["visitor_id"]}
    values |= {r[c] for r in rows if r["event_type"] == "click" and r["visitor_id"] in visitors
               for c in ("ip_hash", "device_id") if r[c]}
    values |= {r["referral_code"] for r in mine if r["event_type"] == "share"}
    return values


def archive_bytes_containing(root: Path, needles: set[str]) -> list[str]:
    """Every needle found anywhere in the archive: any column of any file, payload bytes."""
    found: list[str] = []
    for path in sorted(root.rglob("*.parquet")):
        for row in pq.ParquetFile(path).read().to_pylist():
            cells = [str(v).encode() for k, v in row.items() if k != "payload" and v is not None]
            cells.append(row["payload"])
            found += [n for n in needles if any(n.encode() in cell for cell in cells)]
    return sorted(set(found))


def table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def replay(archive: Path, db: Path) -> Path:
    assert refstream(["replay", "--archive", str(archive), "--db", str(db)]) == 0
    return db


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("erasure")
    write_jsonl(SyntheticConfig(seed=11, shops=1, customers_per_shop=300, days=30),
                out / "events.jsonl")
    settings = Settings(person_vault=out / "vault.sqlite")
    store = ProjectionStore(out / "live.duckdb")
    log = EmbeddedLog(ArchiveWriter(out / "archive"), CODEC, settings.partitions)
    EmbeddedRunner(settings, load_rules(Path(default_rules_path())), store,
                   log.append).run_file(out / "events.jsonl")
    log.close()
    store.close()
    return out


def pick_referee(db: Path, raw_ids: dict[str, str], held: bool) -> tuple[str, str]:
    """(shop, raw customer id) of a referee with rewards; one who also referred others,
    when there is one, so their own referral code is erased too."""
    rows = table(db, f"""
        SELECT r.shop_id, r.referee_id,
               EXISTS (SELECT 1 FROM referrals o WHERE o.referrer_id = r.referee_id) AS refers
        FROM referrals r JOIN rewards w USING (referral_id)
        WHERE r.status {"=" if held else "<>"} 'held'
        GROUP BY ALL ORDER BY refers DESC, r.referee_id""")
    assert rows, "the synthetic month has no referee with rewards"
    shop, token, _ = rows[0]
    return shop, raw_ids[token]


@pytest.mark.slow
def test_erasing_referees_keeps_every_total_and_leaves_nothing_of_them(
        ingested: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(ingested / "archive", archive)
    vault_path = tmp_path / "vault.sqlite"
    with sqlite3.connect(ingested / "vault.sqlite") as source, \
            sqlite3.connect(vault_path) as copy:
        source.backup(copy)  # the file alone may lack what is still in its WAL
    with PersonVault(vault_path) as vault:
        raw_ids = {row[1]: row[0] for row in vault._db.execute(
            "SELECT customer_id, token FROM persons").fetchall()}
    p1 = replay(archive, tmp_path / "p1.duckdb")
    markers = {p.name: p.read_bytes() for p in (archive / "_commits").iterdir()}
    files = sorted(str(p.relative_to(archive)) for p in archive.rglob("*.parquet"))
    offsets = sorted((r["partition"], r["offset"]) for r in archive_rows(archive))

    # A qualified referee (who also refers, if any does) and one held by fraud controls.
    people = [pick_referee(p1, raw_ids, held=False), pick_referee(p1, raw_ids, held=True)]
    erased: list[tuple[str, str, set[str]]] = []
    for shop, customer in people:
        with PersonVault(vault_path) as vault:
            token = vault.lookup(shop, customer)
        assert token is not None
        values = personal_values(archive, token)
        assert any(v.startswith("email:") for v in values)  # the test sees their data
        assert archive_bytes_containing(archive, values) == sorted(values)
        receipt_path = tmp_path / f"receipt-{customer}.json"
        assert refstream(["erase", "--shop", shop, "--customer", customer, "--archive",
                          str(archive), "--vault", str(vault_path),
                          "--receipt", str(receipt_path)]) == 0
        receipt = json.loads(receipt_path.read_text())
        assert receipt["vault_entry_deleted"] and receipt["records_rewritten"] > 0
        assert receipt["person_records"] >= 2  # signup and order at least
        receipt_text = receipt_path.read_text()
        assert not [v for v in values | {customer, token} if v in receipt_text]
        erased.append((shop, customer, values | {token}))

    p2 = replay(archive, tmp_path / "p2.duckdb")

    # Same records at the same offsets in the same files under the same commit markers.
    assert {p.name: p.read_bytes() for p in (archive / "_commits").iterdir()} == markers
    assert sorted(str(p.relative_to(archive)) for p in archive.rglob("*.parquet")) == files
    assert sorted((r["partition"], r["offset"]) for r in archive_rows(archive)) == offsets
    assert ArchiveReader(archive).record_count == len(offsets)

    # Referrals and rewards row by row. Rewritten on purpose: an erased referrer's code, and
    # the fraud flag ids a reason names (a flag id is built from the rewritten entity key).
    same_reason = r"regexp_replace(reason, '\(flag [0-9a-f-]{36}\)', '(flag)') AS reason"
    referrals = f"""SELECT * EXCLUDE (referral_code, reason), {same_reason}
                    FROM referrals ORDER BY referral_id"""
    assert table(p2, referrals) == table(p1, referrals)
    assert len(table(p1, referrals)) > 10
    assert table(p1, "SELECT count(*) FROM referrals WHERE reason LIKE '%(flag %'")[0][0] > 0
    rewards = f"SELECT * EXCLUDE (reason), {same_reason} FROM rewards ORDER BY reward_id"
    assert table(p2, rewards) == table(p1, rewards)
    money = """SELECT status, currency, count(*), sum(amount_minor) FROM rewards
               GROUP BY ALL ORDER BY ALL"""
    assert table(p2, money) == table(p1, money)
    flags = "SELECT signal, action, count(*) FROM fraud_flags GROUP BY ALL ORDER BY ALL"
    assert table(p2, flags) == table(p1, flags)
    assert table(p1, "SELECT count(*) FROM fraud_flags")[0][0] > 0

    for shop, customer, values in erased:
        token = next(v for v in values if v.startswith("cus_"))
        with PersonVault(vault_path) as vault, pytest.raises(PersonNotFound):
            vault.resolve(shop, token)
        assert refstream(["vault", "resolve", "--shop", shop, "--vault", str(vault_path),
                          token]) == 2
        # Their token stays (it names nobody now); nothing else of them is anywhere.
        assert archive_bytes_containing(archive, values - {token} | {customer}) == []
        assert archive_bytes_containing(archive, {token}) == [token]

    # Everyone else still resolves.
    with PersonVault(vault_path) as vault:
        assert vault.count() == len(raw_ids) - 2


# ---------------------------------------------------------------------------- small logs


SHOP = "shop-a"


def write_archive(root: Path, events: list[LogEvent]) -> None:
    writer = ArchiveWriter(root)
    for offset, event in enumerate(events):
        writer.append(0, offset, event.occurred_at, event, CODEC.encode(event))
    writer.flush()


def small_log(note: str | None = None) -> list[LogEvent]:
    t = 1_790_000_000_000
    return [
        Share("e1", SHOP, t, "cus_alice", "R-cust-1", "email"),
        Click("e2", SHOP, t + 1, "v-bob", "https://shop/?ref=R-cust-1&x=R-cust-12", "ip:bob",
              "UA-bob", "R-cust-1", device_id="d-bob"),
        Signup("e3", SHOP, t + 2, "cus_bob", "email:bob", "ip:bob", "v-bob", "R-cust-1"),
        OrderPlaced("e4", SHOP, t + 3, "o1", "cus_bob", 5000, "EUR", "ip:bob", "v-bob",
                    "R-cust-12", payment_hash="payment:bob"),
        Share("e5", SHOP, t + 4, "cus_carol", "R-cust-12", "email"),
        ReviewDecided("e6", SHOP, t + 5, "ref-1", "approve", "staff-1", note),
    ]


def vault_with(path: Path, customers: dict[str, str]) -> None:
    with PersonVault(path) as vault:
        for customer, token in customers.items():
            vault._db.execute("INSERT INTO persons VALUES (?, ?, x'00', ?, 0)",
                              (SHOP, customer, token))


def test_a_referrer_s_code_is_rewritten_everywhere_and_only_as_a_whole(tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", small_log())
    vault_with(tmp_path / "vault.sqlite", {"cust-1": "cus_alice", "cust-12": "cus_carol"})
    receipt = erase_person(SHOP, "cust-1", tmp_path / "vault.sqlite", tmp_path / "archive")
    events = list(ArchiveReader(tmp_path / "archive").iter_records(with_payload=True))
    share, click, signup = events[0].event, events[1].event, events[2].event
    assert isinstance(share, Share) and isinstance(click, Click) and isinstance(signup, Signup)
    code = share.referral_code
    assert code.startswith("erased:")
    assert click.referral_code == signup.referral_code == code  # equal stays equal
    assert click.landing_url == f"https://shop/?ref={code}&x=R-cust-12"  # carol's code kept
    assert events[4].event == small_log()[4]  # carol's share untouched
    assert [CODEC.decode(r.payload) for r in events] == [r.event for r in events]
    assert receipt.occurrences_replaced == {"landing_url": 1, "referral_code": 3}
    # bob's values are not alice's: only her share was hers.
    assert signup.email_hash == "email:bob"


def test_a_value_erasure_cannot_rewrite_stops_it_before_anything_changes(
        tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", small_log(note="called cust-1 about it"))
    vault_with(tmp_path / "vault.sqlite", {"cust-1": "cus_alice"})
    before = {p: p.read_bytes() for p in (tmp_path / "archive").rglob("*") if p.is_file()}
    with pytest.raises(ErasureError, match="note"):
        erase_person(SHOP, "cust-1", tmp_path / "vault.sqlite", tmp_path / "archive")
    after = {p: p.read_bytes() for p in (tmp_path / "archive").rglob("*") if p.is_file()}
    assert after == before  # no staged file left, nothing replaced
    with PersonVault(tmp_path / "vault.sqlite") as vault:
        assert vault.lookup(SHOP, "cust-1") == "cus_alice"  # not shredded either


def test_erasing_an_unknown_or_erased_person_says_so(tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", small_log())
    vault_with(tmp_path / "vault.sqlite", {"cust-1": "cus_alice"})
    with pytest.raises(PersonNotFound, match="already erased"):
        erase_person(SHOP, "cust-404", tmp_path / "vault.sqlite", tmp_path / "archive")
    erase_person(SHOP, "cust-1", tmp_path / "vault.sqlite", tmp_path / "archive")
    assert refstream(["erase", "--shop", SHOP, "--customer", "cust-1", "--archive",
                      str(tmp_path / "archive"), "--vault", str(tmp_path / "vault.sqlite")]) == 2
