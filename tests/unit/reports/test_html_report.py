"""The HTML report's structure without a browser: charts by id, data in them, nothing external."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from refstream.persistence.store import ProjectionStore
from refstream.reports.html_report import nice_ticks, render_html_report, write_html_report

FIXED = datetime(2026, 4, 1, tzinfo=UTC)


def svg(document: str, chart_id: str) -> str:
    match = re.search(rf'<svg id="{chart_id}" class="chart".*?</svg>', document, re.S)
    assert match, chart_id
    return match.group(0)


def test_charts_carry_ids_and_their_data(conn: duckdb.DuckDBPyConnection) -> None:
    document = render_html_report(conn, FIXED)
    funnel = svg(document, "chart-funnel")
    # Shares head the chart as text (8 shares brought 37 clicks); six bars from clicks to
    # paid, labelled with the all-shops counts, none wider than the one above it.
    assert funnel.count('class="funnel-step"') == 6
    assert funnel.count('<rect class="bar"') == 6
    assert 'data-step="share"' in funnel and "9</tspan> shares brought" in funnel
    assert "referral clicks (4.1 clicks per share)" in funnel
    assert ">37</tspan>" in funnel and "24.32% of previous" in funnel
    widths = [float(w) for w in re.findall(r'<rect class="bar"[^>]*\bwidth="([\d.]+)"', funnel)]
    assert widths == sorted(widths, reverse=True)
    rates = [float(r) for r in re.findall(r"([\d.]+)% of previous", funnel)]
    assert rates and max(rates) <= 100
    cohorts = svg(document, "chart-cohorts")
    assert 'data-cohort="2026-W10"' in cohorts and 'data-cohort="2026-W11"' in cohorts
    assert re.search(r'<path class="line" d="M[\d.]+,[\d.]+ L', cohorts)
    assert "5 of 22" in cohorts  # the W10 cohort's week-0 point tooltip
    daily = svg(document, "chart-daily")
    assert daily.count('<rect class="bar"') == 25  # 3 to 27 March
    assert 'class="line series-rewards_due"' in daily
    liability = svg(document, "chart-liability")
    assert "15.00 EUR" in liability and "20.00 SEK" in liability


def test_scorecard_status_colours_and_tables(conn: duckdb.DuckDBPyConnection) -> None:
    document = render_html_report(conn, FIXED)
    assert 'data-kpi="clv-premium" data-status="alert"' in document
    assert 'class="pill status-top-quartile"' in document
    assert 'id="table-referrers"' in document and ">c01<" in document
    assert 'id="table-fraud-queue"' in document
    queue = document[document.index('id="table-fraud-queue"'):]
    queue = queue[:queue.index("</table>")]
    # People and orders by name, not raw event ids: n06's click, signup and order.
    assert "click by visitor v6" in queue and "signup of n06" in queue
    assert "order o-n06-1 by n06 (40.00 EUR)" in queue
    assert "e-click-v6" not in queue and "e-signup-n06" not in queue
    assert ">n06<" in queue and ">c01<" in queue
    assert "no payouts recorded" in document
    assert "generated 2026-04-01 00:00 UTC" in document


def test_self_contained(conn: duckdb.DuckDBPyConnection) -> None:
    document = render_html_report(conn, FIXED)
    assert "<script" not in document
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', document)
    assert "@import" not in document and "url(" not in document
    # The only URL is the SVG namespace, which browsers never fetch.
    assert set(re.findall(r"https?://[^\s\"'<>]+", document)) == {"http://www.w3.org/2000/svg"}


def test_empty_read_model_still_renders_every_chart(tmp_path: Path) -> None:
    store = ProjectionStore(tmp_path / "empty.duckdb")
    target = write_html_report(store.connection, tmp_path / "out" / "report.html")
    store.close()
    document = target.read_text(encoding="utf-8")
    for chart_id in ("chart-funnel", "chart-cohorts", "chart-daily", "chart-liability"):
        assert f'id="{chart_id}"' in document
    assert "no referred visitors yet" in document


def test_nice_ticks() -> None:
    assert nice_ticks(3) == [0, 1, 2, 3]
    assert nice_ticks(0.304) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert nice_ticks(0) == [0.0, 1.0]
