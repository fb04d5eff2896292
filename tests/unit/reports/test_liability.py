"""Liability tells the truth about money: what the payer paid is `paid`, `due` is what is owed
and not yet paid, per currency, whether payments come from the payouts table or from the
payer's own ledger; a voided reward has no due date."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.cli.main import main
from refstream.persistence.store import ProjectionStore
from refstream.reports.definitions import ALL_SHOPS
from refstream.reports.results import render_table, run_report
from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue
from refstream.streams.exit_codes import EXIT_OK
from refstream.streams.finance import FinanceLedger

from .sample_log import RULES, SHOP_A, at, build_sample_db


def _overall(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], tuple[Any, ...]]:
    return {(r["status"], r["currency"]): (r["standing"], r["rewards"], r["amount_minor"])
            for r in run_report(conn, "liability").records() if r["shop_id"] == ALL_SHOPS}


def _n01_referrer_due() -> RewardDue:
    return RewardDue(reward_id="rw-n01-ref", shop_id=SHOP_A, occurred_at=at(16),
                     rules_version=RULES, referral_id="ref-n01", beneficiary_id="c01",
                     side="referrer", kind="credit", amount_minor=1_000, currency="EUR",
                     due_at=at(16), reason="hold period passed")


def test_a_paid_reward_is_paid_not_owed(tmp_path: Path) -> None:
    db = build_sample_db(tmp_path / "sample.duckdb")
    store = ProjectionStore(db)
    store.add_row("payouts", ("rw-n01-ref", SHOP_A, "c01", 1_000, "EUR", at(16)))
    store.close()
    conn = duckdb.connect(str(db), read_only=True)
    try:
        overall = _overall(conn)
        text = render_table(run_report(conn, "liability"))
    finally:
        conn.close()
    # Of n01's two due rewards (10.00 + 5.00 EUR) the payer paid the referrer's 10.00.
    assert overall[("due", "EUR")] == ("owed", 1, 500)
    assert overall[("paid", "EUR")] == ("settled", 1, 1_000)
    assert overall[("due", "SEK")] == ("owed", 1, 2_000)
    assert overall[("pending", "EUR")][0] == overall[("held", "EUR")][0] == "contingent"
    assert "paid" in text and "owed" in text


def test_without_payments_every_due_reward_is_owed(tmp_path: Path) -> None:
    db = build_sample_db(tmp_path / "sample.duckdb")
    conn = duckdb.connect(str(db), read_only=True)
    try:
        overall = _overall(conn)
    finally:
        conn.close()
    assert overall[("due", "EUR")] == ("owed", 2, 1_500)
    assert not any(status == "paid" for status, _ in overall)


def test_the_payers_own_ledger_marks_rewards_paid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = build_sample_db(tmp_path / "sample.duckdb")
    ledger = FinanceLedger(tmp_path / "ledger.sqlite")
    codec = Codec()
    assert ledger.handle(codec.encode(_n01_referrer_due()), codec).action == "paid"
    ledger.close()
    assert main(["report", "liability", "--db", str(db), "--format", "json",
                 "--payer-ledger", str(tmp_path / "ledger.sqlite")]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)["rows"]
    overall = {(r["status"], r["currency"]): (r["rewards"], r["amount_minor"])
               for r in rows if r["shop_id"] == ALL_SHOPS}
    assert overall[("paid", "EUR")] == (1, 1_000)
    assert overall[("due", "EUR")] == (1, 500)
    # The funnel's paid step reads the same ledger.
    assert main(["report", "funnel", "--db", str(db), "--format", "json",
                 "--payer-ledger", str(tmp_path / "ledger.sqlite")]) == EXIT_OK
    funnel = json.loads(capsys.readouterr().out)["rows"]
    assert [r["count"] for r in funnel
            if r["shop_id"] == ALL_SHOPS and r["step"] == "paid"] == [1]


def test_html_liability_shows_paid(tmp_path: Path) -> None:
    db = build_sample_db(tmp_path / "sample.duckdb")
    store = ProjectionStore(db)
    store.add_row("payouts", ("rw-n01-ref", SHOP_A, "c01", 1_000, "EUR", at(16)))
    store.close()
    out = tmp_path / "report.html"
    assert main(["report", "html", "--db", str(db), "--out", str(out)]) == EXIT_OK
    html = out.read_text(encoding="utf-8")
    section = html[html.index('id="table-liability"'):]
    section = section[:section.index("</table>")]
    assert ">paid<" in section and ">owed<" in section and ">settled<" in section


def _line(record: dict[str, Any]) -> str:
    return json.dumps({"shop_id": "shop-x"} | record) + "\n"


def test_a_voided_reward_has_no_due_date(tmp_path: Path) -> None:
    events = [
        {"event_type": "share", "event_id": "s1", "occurred_at": "2026-10-01T10:00:00Z",
         "referrer_id": "alice", "referral_code": "ALICE", "channel": "email"},
        {"event_type": "click", "event_id": "c1", "occurred_at": "2026-10-01T11:00:00Z",
         "visitor_id": "v-bob", "landing_url": "https://shop.example/?ref=ALICE",
         "ip": "198.51.100.7", "user_agent": "ua", "referral_code": "ALICE"},
        {"event_type": "signup", "event_id": "u1", "occurred_at": "2026-10-01T11:05:00Z",
         "customer_id": "bob", "email": "bob@example.org", "ip": "198.51.100.7",
         "visitor_id": "v-bob"},
        {"event_type": "order", "event_id": "o1", "occurred_at": "2026-10-01T11:10:00Z",
         "order_id": "order-1", "customer_id": "bob", "amount_minor": 6000,
         "currency": "EUR", "ip": "198.51.100.7", "visitor_id": "v-bob"},
        # Returned inside the hold period: the pending rewards are voided.
        {"event_type": "return", "event_id": "r1", "occurred_at": "2026-10-05T09:00:00Z",
         "return_id": "ret-1", "order_id": "order-1", "customer_id": "bob",
         "amount_minor": 6000, "currency": "EUR"},
        {"event_type": "signup", "event_id": "u2", "occurred_at": "2026-11-20T09:00:00Z",
         "customer_id": "carol", "email": "carol@example.org", "ip": "203.0.113.5"},
    ]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(_line(e) for e in events), encoding="utf-8")
    db = tmp_path / "run.duckdb"
    assert main(["run", "--events", str(path), "--db", str(db)]) == EXIT_OK
    conn = duckdb.connect(str(db), read_only=True)
    try:
        rewards = conn.execute("SELECT status, due_at FROM rewards").fetchall()
    finally:
        conn.close()
    assert rewards and all(status == "voided" and due_at is None for status, due_at in rewards)
