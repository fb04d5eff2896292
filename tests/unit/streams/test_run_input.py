"""Strict input for `refstream run`: what is not money, not UTF-8 or a conflicting repeat goes
to the DLQ file with its line, the run goes on, prints every count and exits 3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.cli.main import main
from refstream.schemas.jsonl import parse_line
from refstream.streams.exit_codes import EXIT_DEAD_LETTERS, EXIT_OK

ORDER: dict[str, Any] = {
    "event_type": "order", "event_id": "e-1", "shop_id": "shop-1",
    "occurred_at": "2026-10-03T12:30:00.000Z", "order_id": "o-1", "customer_id": "c-1",
    "amount_minor": 4599, "currency": "EUR", "ip": "203.0.113.9",
}


@pytest.mark.parametrize("amount", [True, False, "4599", 45.0, 4599.0, "45.99"])
def test_booleans_floats_and_numeric_strings_are_not_money(amount: object) -> None:
    with pytest.raises(ValueError, match="amount_minor"):
        parse_line(json.dumps(ORDER | {"amount_minor": amount}))


def test_an_integer_is_money() -> None:
    assert parse_line(json.dumps(ORDER)).amount_minor == 4599  # type: ignore[attr-defined]


def _orders(db: Path) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        return conn.execute("SELECT order_id, amount_minor FROM orders ORDER BY 1").fetchall()
    finally:
        conn.close()


def test_bad_lines_are_dead_lettered_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        json.dumps(ORDER).encode(),
        json.dumps(ORDER | {"event_id": "e-2", "order_id": "o-2",
                            "amount_minor": True}).encode(),
        b'{"event_type": "order", "note": "caf\xe9"}',  # latin-1, not UTF-8
        json.dumps(ORDER | {"event_id": "e-3", "order_id": "o-3", "amount_minor": 100}).encode(),
        json.dumps(ORDER).encode(),  # a producer retry: same content
        json.dumps(ORDER | {"amount_minor": 5000}).encode(),  # same id, other content
    ]
    events = tmp_path / "in.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "run.duckdb"
    assert main(["run", "--events", str(events), "--db", str(db)]) == EXIT_DEAD_LETTERS
    out = capsys.readouterr().out
    assert "not UTF-8 1" in out and "invalid 1" in out and "conflicting duplicate 1" in out
    assert "rejected by ingest 0" in out and "1 duplicates ignored" in out
    # The run went past the undecodable line: the first copy of e-1 stands.
    assert _orders(db) == [("o-1", 4599), ("o-3", 100)]
    letters = [json.loads(line) for line in
               (tmp_path / "run.dlq.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [letter["line"] for letter in letters] == [2, 3, 6]
    assert "not UTF-8" in letters[1]["error"] and "0xe9" in letters[1]["error"]
    assert "conflicting duplicate" in letters[2]["error"] and "'e-1'" in letters[2]["error"]
    assert f"run.dlq.jsonl (exit {EXIT_DEAD_LETTERS})" in out


def test_a_clean_file_exits_0(tmp_path: Path) -> None:
    events = tmp_path / "in.jsonl"
    events.write_text(json.dumps(ORDER) + "\n" + json.dumps(ORDER) + "\n", encoding="utf-8")
    assert main(["run", "--events", str(events), "--db", str(tmp_path / "r.duckdb")]) == EXIT_OK
    assert not (tmp_path / "r.dlq.jsonl").exists()


def test_help_names_the_dlq_file_and_the_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--help"]) == EXIT_OK
    text = " ".join(capsys.readouterr().out.split())
    assert "out/run.duckdb -> out/run.dlq.jsonl" in text
    assert f"{EXIT_DEAD_LETTERS} the run finished but dead-lettered records" in text
