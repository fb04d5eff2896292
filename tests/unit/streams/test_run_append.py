"""`refstream run --append` is a continuation: part 1 then part 2 gives the tables of one run
over both, at any split point; the core's state (hold timers, caps, dedupe) carries over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.cli.main import main
from refstream.streams.embedded import RUN_STATE_TABLE
from refstream.streams.exit_codes import EXIT_OK, EXIT_USAGE
from refstream.tools.synthetic import SyntheticConfig, write_jsonl


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    path = tmp_path_factory.mktemp("log") / "month.jsonl"
    write_jsonl(SyntheticConfig(seed=11, shops=2, customers_per_shop=250, days=30), path)
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _tables(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        names = [row[0] for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
            "AND table_name <> ? ORDER BY 1", [RUN_STATE_TABLE]).fetchall()]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=repr)
                for name in names}
    finally:
        conn.close()


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_one_run_over_the_month_has_reversals_to_carry(month: list[str], tmp_path: Path) -> None:
    # The split points below only prove something if the log holds decisions that wait:
    # rewards that fall due after the hold and returns that reverse them.
    assert main(["run", "--events", str(_write(tmp_path / "all.jsonl", month)),
                 "--db", str(tmp_path / "all.duckdb")]) == EXIT_OK
    tables = _tables(tmp_path / "all.duckdb")
    statuses = {row[8] for row in tables["rewards"]}
    assert {"due", "voided"} <= statuses or {"due", "reversed"} <= statuses


@pytest.mark.slow
@pytest.mark.parametrize("fraction", [0.1, 0.37, 0.5, 0.81, 0.97])
def test_append_equals_one_run(month: list[str], tmp_path: Path, fraction: float) -> None:
    cut = int(len(month) * fraction)
    whole = _write(tmp_path / "all.jsonl", month)
    first = _write(tmp_path / "part1.jsonl", month[:cut])
    second = _write(tmp_path / "part2.jsonl", month[cut:])
    assert main(["run", "--events", str(whole), "--db", str(tmp_path / "one.duckdb")]) == EXIT_OK
    assert main(["run", "--events", str(first), "--db", str(tmp_path / "two.duckdb")]) == EXIT_OK
    assert main(["run", "--events", str(second), "--db", str(tmp_path / "two.duckdb"),
                 "--append"]) == EXIT_OK
    assert _tables(tmp_path / "two.duckdb") == _tables(tmp_path / "one.duckdb")


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


def test_a_return_after_the_reward_fell_due_reverses_it_across_runs(tmp_path: Path) -> None:
    """The issue's case: part 1 lets the reward fall due, part 2 brings the late return."""
    base = {"shop_id": "shop-x"}
    part1 = [
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
        # Another shopper, 40 days later: stream time passes the hold period.
        {"event_type": "signup", "event_id": "u2", "occurred_at": "2026-11-10T09:00:00Z",
         "customer_id": "carol", "email": "carol@example.org", "ip": "203.0.113.5"},
    ]
    part2 = [
        {"event_type": "return", "event_id": "r1", "occurred_at": "2026-11-12T09:00:00Z",
         "return_id": "ret-1", "order_id": "order-1", "customer_id": "bob",
         "amount_minor": 6000, "currency": "EUR"},
    ]
    first = _write(tmp_path / "p1.jsonl", [_line(base | r) for r in part1])
    second = _write(tmp_path / "p2.jsonl", [_line(base | r) for r in part2])
    whole = _write(tmp_path / "all.jsonl", [_line(base | r) for r in part1 + part2])
    db = tmp_path / "inc.duckdb"
    assert main(["run", "--events", str(first), "--db", str(db)]) == EXIT_OK
    assert {row[8] for row in _tables(db)["rewards"]} == {"due"}
    assert main(["run", "--events", str(second), "--db", str(db), "--append"]) == EXIT_OK
    assert main(["run", "--events", str(whole), "--db", str(tmp_path / "one.duckdb")]) == EXIT_OK
    assert {row[8] for row in _tables(db)["rewards"]} == {"reversed"}
    assert _tables(db) == _tables(tmp_path / "one.duckdb")


def test_append_under_other_rules_is_refused(month: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from refstream.rewards.rules import default_rules_path

    other = tmp_path / "other.yaml"
    text = default_rules_path().read_text(encoding="utf-8")
    other.write_text(text.replace("2026.11-default", "2026.11-other", 1), encoding="utf-8")
    part = _write(tmp_path / "p.jsonl", month[:200])
    db = tmp_path / "x.duckdb"
    assert main(["run", "--events", str(part), "--db", str(db)]) == EXIT_OK
    assert main(["run", "--events", str(part), "--db", str(db), "--append",
                 "--rules", str(other)]) == EXIT_USAGE
    assert "same rules" in capsys.readouterr().err


def test_repeating_a_part_with_append_changes_nothing(month: list[str], tmp_path: Path) -> None:
    part = _write(tmp_path / "p.jsonl", month[:3000])
    db = tmp_path / "x.duckdb"
    assert main(["run", "--events", str(part), "--db", str(db)]) == EXIT_OK
    before = _tables(db)
    assert main(["run", "--events", str(part), "--db", str(db), "--append"]) == EXIT_OK
    assert _tables(db) == before
