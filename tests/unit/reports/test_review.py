"""`refstream review list|approve|reject` embedded: every held referral is listed once with its
evidence in words; a decision is appended to the log and applied; replaying the log with
the decision gives the same tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.cli.main import main
from refstream.reports.review import review_queue
from refstream.streams.embedded import RUN_STATE_TABLE
from refstream.streams.exit_codes import EXIT_OK, EXIT_USAGE
from refstream.tools.synthetic import SyntheticConfig, write_jsonl


@pytest.fixture
def month(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.jsonl"
    write_jsonl(SyntheticConfig(seed=3, shops=1, customers_per_shop=600, days=30), events)
    db = tmp_path / "run.duckdb"
    assert main(["run", "--events", str(events), "--db", str(db)]) == EXIT_OK
    return events, db


def _query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return conn.execute(sql, list(params)).fetchall()
    finally:
        conn.close()


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    names = [r[0] for r in _query(db, "SELECT table_name FROM information_schema.tables "
                                      "WHERE table_type = 'BASE TABLE' AND table_name <> ?",
                                  RUN_STATE_TABLE)]
    return {n: sorted(_query(db, f"SELECT * FROM {n}"), key=repr) for n in names}


def test_the_queue_lists_every_held_referral_once_with_evidence_in_words(
        month: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, db = month
    waiting = {r[0] for r in _query(db, """
        SELECT referral_id FROM referrals WHERE status = 'held'
        UNION SELECT referral_id FROM rewards WHERE status = 'held'""")}
    assert len(waiting) >= 3, "the synthetic month's fraud must hold several referrals"
    capsys.readouterr()
    assert main(["review", "list", "--db", str(db), "--format", "json"]) == EXIT_OK
    listed = json.loads(capsys.readouterr().out)
    assert sorted(r["referral_id"] for r in listed) == sorted(waiting)
    for row in listed:
        assert row["referee"] and row["referrer"]
        assert "observed" in row["evidence"] and "threshold" in row["evidence"]
        # Events are named: whose signup, which order, whose click, not bare ids.
        assert "signup of " in row["evidence"] or "order " in row["evidence"] \
            or "click by " in row["evidence"]


def test_approve_and_reject_append_to_the_log_and_replay_identically(
        month: tuple[Path, Path], tmp_path: Path) -> None:
    events, db = month
    conn = duckdb.connect(str(db), read_only=True)
    try:
        queue = review_queue(conn)
    finally:
        conn.close()
    first, second = queue[0].referral_id, queue[1].referral_id
    lines_before = events.read_text(encoding="utf-8").count("\n")
    assert main(["review", "approve", first, "--reviewer", "ana", "--note", "known couple",
                 "--at", "2026-11-05T10:00:00Z", "--events", str(events),
                 "--db", str(db)]) == EXIT_OK
    assert main(["review", "reject", second, "--reviewer", "ana", "--at",
                 "2026-11-05T10:05:00Z", "--events", str(events), "--db", str(db)]) == EXIT_OK
    appended = [json.loads(line) for line in
                events.read_text(encoding="utf-8").splitlines()[lines_before:]]
    assert [(e["event_type"], e["referral_id"], e["decision"]) for e in appended] == [
        ("review", first, "approve"), ("review", second, "reject")]
    [(status_first,)] = _query(db, "SELECT status FROM referrals WHERE referral_id = ?", first)
    [(status_second,)] = _query(db, "SELECT status FROM referrals WHERE referral_id = ?", second)
    assert status_first != "held" and status_second == "rejected"
    assert _query(db, "SELECT count(*) FROM rewards WHERE referral_id = ? AND status = 'held'",
                  first) == [(0,)]
    # The log now holds the decisions: one run over it gives the same tables.
    replayed = tmp_path / "replayed.duckdb"
    assert main(["run", "--events", str(events), "--db", str(replayed)]) == EXIT_OK
    assert _tables(replayed) == _tables(db)


def test_a_decision_on_a_referral_not_waiting_is_refused(
        month: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    events, db = month
    [(qualified,)] = _query(db, "SELECT referral_id FROM referrals WHERE status = 'qualified' "
                                "ORDER BY referral_id LIMIT 1")
    assert main(["review", "approve", qualified, "--reviewer", "ana", "--events", str(events),
                 "--db", str(db)]) == EXIT_USAGE
    assert "not waiting for review" in capsys.readouterr().err


def test_a_decision_in_the_demo_archive_replays_identically(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REFSTREAM_RULES_PATH", raising=False)
        assert main(["demo", "--out", str(out), "--shops", "1", "--customers", "600"]) == EXIT_OK
    db = out / "refstream.duckdb"
    conn = duckdb.connect(str(db), read_only=True)
    try:
        referral = review_queue(conn)[0].referral_id
    finally:
        conn.close()
    assert main(["review", "approve", referral, "--reviewer", "ana", "--at",
                 "2026-11-20T09:00:00Z", "--events", str(out / "events.jsonl"), "--db", str(db),
                 "--archive", str(out / "archive")]) == EXIT_OK
    replayed = tmp_path / "replayed.duckdb"
    assert main(["replay", "--archive", str(out / "archive"), "--db", str(replayed)]) == EXIT_OK
    for table in ("referrals", "rewards", "reward_ledger", "fraud_flags"):
        assert sorted(_query(replayed, f"SELECT * FROM {table}"), key=repr) == sorted(
            _query(db, f"SELECT * FROM {table}"), key=repr), table
    assert _query(replayed, "SELECT status FROM referrals WHERE referral_id = ?",
                  referral) != [("held",)]
