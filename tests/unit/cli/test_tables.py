"""Terminal tables come from one renderer (rich): plain aligned text when stdout is a file or
a pipe, colour and box lines only on a terminal; CSV and JSON are for scripts."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from refstream.cli.main import main
from refstream.reports.tables_output import render_rows
from refstream.streams.exit_codes import EXIT_OK

REFSTREAM = str(Path(sys.executable).with_name("refstream"))
ORDER = {"event_type": "order", "event_id": "e-1", "shop_id": "shop-1",
         "occurred_at": "2026-10-03T12:30:00.000Z", "order_id": "o-1", "customer_id": "c-1",
         "amount_minor": 4599, "currency": "EUR", "ip": "203.0.113.9"}
QUERY = "SELECT order_id, amount_minor, currency FROM orders"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(ORDER) + "\n" + json.dumps(
        ORDER | {"event_id": "e-2", "order_id": "o-22", "amount_minor": 12}) + "\n",
        encoding="utf-8")
    db = tmp_path / "run.duckdb"
    assert main(["run", "--events", str(events), "--db", str(db)]) == EXIT_OK
    return db


def test_a_piped_table_is_plain_aligned_text(database: Path) -> None:
    done = subprocess.run([REFSTREAM, "sql", "--db", str(database), QUERY + " ORDER BY 1"],
                          capture_output=True, text=True, check=True, timeout=120)
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout
    assert lines[0].split() == ["order_id", "amount_minor", "currency"]
    assert set(lines[1]) == {"-"}
    assert [line.split() for line in lines[2:]] == [["o-1", "4599", "EUR"],
                                                    ["o-22", "12", "EUR"]]
    # Numbers are right-aligned: both amounts end in the same column.
    ends = {line.index(amount) + len(amount) for line, amount in zip(lines[2:], ("4599", "12"),
                                                                      strict=True)}
    assert len(ends) == 1


def test_a_terminal_gets_colour_and_box_lines(database: Path) -> None:
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([REFSTREAM, "sql", "--db", str(database), QUERY],
                                   stdout=follower, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TERM": "xterm-256color"})
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is done writing
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=120) == EXIT_OK
    finally:
        os.close(leader)
    text = output.decode("utf-8")
    assert "\x1b[" in text and "─" in text and "4599" in text


def test_csv_and_json_carry_the_raw_values() -> None:
    rows = [("o-1", 4599, None), ("o,2", -12, "x\"y")]
    parsed = list(csv.reader(io.StringIO(render_rows(["id", "amount", "note"], rows, "csv"))))
    assert parsed == [["id", "amount", "note"], ["o-1", "4599", ""], ["o,2", "-12", 'x"y']]
    assert json.loads(render_rows(["id", "amount", "note"], rows, "json")) == [
        {"id": "o-1", "amount": 4599, "note": None}, {"id": "o,2", "amount": -12, "note": 'x"y'}]
