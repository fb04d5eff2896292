"""Rendering: explain shows the SQL and the counts, CSV and JSON parse back to the same rows,
terminal tables align columns and print money in major units with the currency.
"""

from __future__ import annotations

import csv
import io
import json

import duckdb
import pytest

from refstream.reports.definitions import ALL_SHOPS, KPIS
from refstream.reports.results import (
    ReportError,
    explain,
    format_money,
    render,
    render_csv,
    render_json,
    render_table,
    run_report,
)
from tests.unit.reports.sample_log import SHOP_A


def test_explain_prints_definition_sql_and_counts(conn: duckdb.DuckDBPyConnection) -> None:
    text = explain(conn, "share-rate")
    assert "customers who shared at least once / customers" in text
    assert KPIS["share-rate"].sql in text
    assert "median ~5%; top quartile 5-15%; alert < 3%" in text
    # The result table under the SQL: shop A 2 of 40 -> 5.00% median.
    line = next(line for line in text.splitlines() if line.startswith(SHOP_A))
    assert line.split() == [SHOP_A, "-", "2", "40", "5.00%", "median"]
    overall = next(line for line in text.splitlines() if line.startswith(ALL_SHOPS))
    assert overall.split()[3:5] == ["3", "51"]


def test_explain_money_kpi_shows_amounts_and_detail(conn: duckdb.DuckDBPyConnection) -> None:
    text = explain(conn, "clv-premium")
    line = next(line for line in text.splitlines()
                if line.startswith(SHOP_A) and "EUR" in line)
    # numerator 54.00 EUR per referred buyer, denominator 97.81 EUR; then the detail columns
    # other_buyers, other_revenue_minor, referred_buyers, referred_revenue_minor.
    assert "54.00 EUR" in line and "97.81 EUR" in line and "-44.79%" in line
    assert line.split()[-4:] == ["32", "313,000", "5", "27,000"]


def test_explain_unknown_kpi(conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ReportError, match="share-rate"):
        explain(conn, "share-rat")


def test_csv_parses_back_to_the_rows(conn: duckdb.DuckDBPyConnection) -> None:
    report = run_report(conn, "liability")
    parsed = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert len(parsed) == len(report.rows)
    first = parsed[0]
    assert first == {"shop_id": ALL_SHOPS, "status": "pending", "standing": "contingent",
                     "currency": "EUR", "rewards": "1", "amount_minor": "1000"}
    queue = list(csv.DictReader(io.StringIO(render_csv(run_report(conn, "fraud-queue")))))
    assert queue[0]["evidence_event_ids"].split(";") == ["e-click-v6", "e-o-n06-1",
                                                         "e-signup-n06"]


def test_scorecard_csv_keeps_raw_values(conn: duckdb.DuckDBPyConnection) -> None:
    parsed = list(csv.DictReader(io.StringIO(render_csv(run_report(conn, "scorecard")))))
    share_a = next(r for r in parsed if r["kpi"] == "share-rate" and r["shop_id"] == SHOP_A)
    assert float(share_a["value"]) == pytest.approx(0.05)
    assert (share_a["numerator"], share_a["denominator"], share_a["status"]) == (
        "2", "40", "median")


def test_json_parses_back_with_column_kinds(conn: duckdb.DuckDBPyConnection) -> None:
    document = json.loads(render_json(run_report(conn, "funnel")))
    assert document["report"] == "funnel"
    assert {"name": "count", "kind": "count", "currency_column": None} in document["columns"]
    shop_a = [r for r in document["rows"] if r["shop_id"] == SHOP_A]
    assert [r["count"] for r in shop_a] == [8, 36, 8, 6, 4, 2, 0]
    assert document["notes"]  # the "no payouts recorded" note travels with the data
    scorecard = json.loads(render(run_report(conn, "scorecard"), "json"))
    k = next(r for r in scorecard["rows"]
             if r["kpi"] == "k-factor" and r["shop_id"] == SHOP_A)
    assert k["value"] == pytest.approx(0.15)


def test_table_aligns_columns_and_formats_money(conn: duckdb.DuckDBPyConnection) -> None:
    text = render_table(run_report(conn, "liability"))
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("shop_id"))
    body = lines[header + 2: header + 7]
    # Right-aligned amounts end in the same column.
    assert len({len(line) for line in body}) == 1
    assert body[3].split() == [ALL_SHOPS.split()[0], ALL_SHOPS.split()[1], "due", "owed",
                               "EUR", "2", "15.00", "EUR"]
    # Points are whole: 1,250 points, not 12.50.
    assert body[1].split()[-2:] == ["1,250", "PTS"]


def test_scorecard_table_shows_percent_and_status(conn: duckdb.DuckDBPyConnection) -> None:
    text = render(run_report(conn, "scorecard"), "table")
    line = next(line for line in text.splitlines()
                if line.startswith("revenue-share ") and SHOP_A in line)
    assert "7.94%" in line and "below median" in line
    assert "270.00 EUR" in line and "3,400.00 EUR" in line


@pytest.mark.parametrize(("minor", "currency", "text"), [
    (123_456, "EUR", "1,234.56 EUR"),
    (-1_000, "EUR", "-10.00 EUR"),
    (5_000, "JPY", "5,000 JPY"),
    (1_234, "KWD", "1.234 KWD"),
    (None, "EUR", "-"),
    (1_250, "PTS", "1,250 PTS"),
])
def test_format_money(minor: int | None, currency: str, text: str) -> None:
    assert format_money(minor, currency, points={"PTS"}) == text
