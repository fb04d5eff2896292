"""The `refstream report ...` command: parses the report subcommands and writes what
`reports/results.py` runs and renders (or the HTML report) to stdout or a file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import duckdb

from refstream.reports.definitions import KPIS, REPORTS, SCORECARD
from refstream.reports.results import (
    FORMATS,
    REPORT_NAMES,
    SCORECARD_REPORT,
    ReportError,
    explain,
    open_read_only,
    render,
    run_report,
    use_payer_ledger,
)


def _emit(text: str, out: str | None) -> None:
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    else:
        sys.stdout.write(text)



def cmd_report(args: argparse.Namespace) -> int:
    """Entry point of `refstream report ...`; exit 0 on success."""
    conn = open_read_only(args.db)
    try:
        if getattr(args, "payer_ledger", None):
            use_payer_ledger(conn, args.payer_ledger)
        if args.report == "explain":
            _emit(explain(conn, args.kpi) + "\n", args.out)
        elif args.report == "html":
            from refstream.reports.html_report import write_html_report

            target = write_html_report(conn, Path(args.out))
            print(f"wrote {target}", file=sys.stderr)
        else:
            result = run_report(conn, args.report)
            if args.format == "csv" and result.notes:
                # stdout stays a clean CSV document; the notes still reach the reader
                for note in result.notes:
                    print(f"note: {note}", file=sys.stderr)
            _emit(render(result, args.format), args.out)
    except duckdb.Error as exc:
        raise ReportError(f"report {args.report} failed on {args.db}: {exc}") from exc
    finally:
        conn.close()
    return 0


_REPORT_HELP: dict[str, str] = {
    SCORECARD_REPORT: "the six KPIs of docs/benchmarks.md with status vs median/top quartile/alert",
    "funnel": "share -> click -> signup -> first order -> qualified -> due -> paid",
    "cohorts": "referred visitors by ISO week of first click, conversion by weeks since",
    "campaigns": "referred customers and revenue per campaign (first orders and all)",
    "referrers": "top referrers by successful referrals and reward amounts due",
    "fraud-queue": "every referral waiting for a reviewer, once, with its signals and evidence",
    "liability": "reward amounts by status (pending, held, due = owed and not yet paid, paid, "
                 "reversed) and currency",
    "daily": "referrals decided and reward messages sent per day",
    "late": "referrals decided or changed after an event of their shop arrived late",
}


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True,
                        help="DuckDB projection file (opened read-only; use a published "
                             "snapshot, not the file a writer holds)")
    parser.add_argument("--payer-ledger", metavar="SQLITE",
                        help="the payer's ledger (`finance-tail --ledger`): what it paid is "
                             "reported as paid (default: the database's payouts table, which "
                             "`refstream demo` fills)")


def register_report_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `report` and its subcommands to an argparse subparsers object; returns `report`."""
    kpi_lines = "\n".join(f"  {k.name:27} {k.definition}" for k in SCORECARD)
    report: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="analyst reports from a DuckDB projection (read-only)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Query the read model: scorecard, funnel, cohorts, campaigns, top "
                    "referrers, fraud review queue, reward liability; explain any KPI; "
                    "write a self-contained HTML report.\n\nKPIs:\n" + kpi_lines)
    sub = report.add_subparsers(dest="report", required=True, metavar="REPORT")
    for name in REPORT_NAMES:
        spec = REPORTS.get(name)
        description = spec.description if spec else (
            "Every KPI per shop and for all shops, rated against the medians, top "
            "quartile and alert thresholds of docs/benchmarks.md. Money KPIs are per "
            "currency.")
        parser = sub.add_parser(name, help=_REPORT_HELP[name], description=description)
        _add_db(parser)
        parser.add_argument("--format", choices=FORMATS, default="table",
                            help="table: aligned, money in major units (default); csv and "
                                 "json: raw values, money in minor units, ratios as fractions")
        parser.add_argument("--out", help="write to this file instead of stdout")
        parser.set_defaults(func=cmd_report)

    explain_parser = sub.add_parser(
        "explain", help="print the SQL and the numerator/denominator behind a KPI",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show a KPI's definition, benchmark, the exact SQL it runs and its "
                    "numerator, denominator and value per shop.\n\nKPIs:\n" + kpi_lines)
    explain_parser.add_argument("kpi", choices=list(KPIS), metavar="KPI",
                                help=f"one of: {', '.join(KPIS)}")
    _add_db(explain_parser)
    explain_parser.add_argument("--out", help="write to this file instead of stdout")
    explain_parser.set_defaults(func=cmd_report)

    html = sub.add_parser(
        "html", help="write a self-contained HTML report with charts",
        description="One HTML file, no external scripts, styles or fonts: scorecard, funnel, "
                    "cohort curves, daily referrals and rewards, liability, top referrers.")
    _add_db(html)
    html.add_argument("--out", required=True, help="the HTML file to write")
    html.set_defaults(func=cmd_report)
    return report


__all__ = ["cmd_report", "register_report_commands"]
