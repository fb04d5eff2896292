"""`refstream report ...` through the CLI's entry point: outputs, files, help and errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest

from refstream.cli.main import main
from refstream.reports.results import ReportError, open_read_only
from refstream.streams.exit_codes import EXIT_OK, EXIT_USAGE


def run(argv: list[str]) -> int:
    return main(argv)


def test_scorecard_json_on_stdout(sample_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "scorecard", "--db", str(sample_db), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    share = next(r for r in document["rows"]
                 if r["kpi"] == "share-rate" and r["shop_id"] == "shop-a")
    assert (share["numerator"], share["denominator"]) == (2, 40)


def test_csv_to_a_file_with_notes_on_stderr(sample_db: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "funnel.csv"
    assert run(["report", "funnel", "--db", str(sample_db), "--format", "csv",
                "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert [r["count"] for r in rows if r["shop_id"] == "shop-b"] == [
        "1", "1", "1", "1", "1", "1", "0"]
    assert "no payouts recorded" in capsys.readouterr().err


def test_explain_command(sample_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "explain", "k-factor", "--db", str(sample_db)]) == 0
    out = capsys.readouterr().out
    assert "SELECT" in out and "invites_per_customer" in out
    assert "0.150" in out  # shop A's K


def test_html_command_writes_the_file(sample_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    assert run(["report", "html", "--db", str(sample_db), "--out", str(target)]) == 0
    assert 'id="chart-funnel"' in target.read_text(encoding="utf-8")


def test_table_is_the_default_format(sample_db: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "liability", "--db", str(sample_db)]) == 0
    assert "15.00 EUR" in capsys.readouterr().out


def test_help_lists_reports_and_kpis(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    for name in ("scorecard", "funnel", "cohorts", "campaigns", "referrers", "fraud-queue",
                 "liability", "explain", "html", "referral-conversion"):
        assert name in text


def test_unknown_kpi_is_a_usage_error(sample_db: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "explain", "nope", "--db", str(sample_db)]) == EXIT_USAGE
    assert "'nope' is not one of" in capsys.readouterr().err


def test_missing_database_says_how_to_make_one(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "scorecard", "--db", str(tmp_path / "missing.duckdb")]) == EXIT_USAGE
    assert "refstream run" in capsys.readouterr().err


def test_a_database_that_is_not_a_read_model_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(ReportError, match="missing tables"):
        open_read_only(other)


def test_reports_open_the_database_read_only(sample_db: Path) -> None:
    conn = open_read_only(sample_db)
    try:
        with pytest.raises(duckdb.Error, match="read-only"):
            conn.execute("CREATE TABLE scratch (a INTEGER)")
    finally:
        conn.close()
