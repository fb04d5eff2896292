"""`refstream report ...`: analyst reports from a DuckDB projection (read-only).
Parses the options and calls `reports.results.write_report`."""

from __future__ import annotations

import click

from refstream.cli import options
from refstream.cli.options import F
from refstream.reports.definitions import KPIS, REPORTS, SCORECARD
from refstream.reports.results import FORMATS, REPORT_HELP, REPORT_NAMES

_KPI_LINES = "\n".join(f"  {k.name:27} {k.definition}" for k in SCORECARD)


def _db_options(command: F) -> F:
    command = click.option(
        "--payer-ledger", metavar="SQLITE",
        help="the payer's ledger (`finance-tail --ledger`): what it paid is reported as paid "
             "[default: the database's payouts table, which `refstream demo` fills]")(command)
    return options.db("DuckDB projection file (opened read-only; use a published snapshot, "
                      "not the file a writer holds)")(command)


@click.group(help="Query the read model: scorecard, funnel, cohorts, campaigns, top "
                  "referrers, fraud review queue, reward liability; explain any KPI; write a "
                  "self-contained HTML report.\n\n\b\nKPIs:\n" + _KPI_LINES,
             short_help="analyst reports from a DuckDB projection (read-only)")
def report() -> None:
    pass


def _report_command(name: str) -> click.Command:
    spec = REPORTS.get(name)
    description = spec.description if spec else (
        "Every KPI per shop and for all shops, rated against the medians, top quartile and "
        "alert thresholds of docs/benchmarks.md. Money KPIs are per currency.")

    @_db_options
    @options.output_format(FORMATS, help_text="table: aligned, money in major units; csv and "
                                              "json: raw values, money in minor units, ratios "
                                              "as fractions")
    @click.option("--out", help="write to this file instead of stdout")
    def command(db: str, payer_ledger: str | None, fmt: str, out: str | None) -> int:
        from refstream.reports.results import write_report

        return write_report(db, name, fmt=fmt, out=out, payer_ledger=payer_ledger)

    return click.command(name, help=description, short_help=REPORT_HELP[name])(command)


for _name in REPORT_NAMES:
    report.add_command(_report_command(_name))


@report.command(help="Show a KPI's definition, benchmark, the exact SQL it runs and its "
                     "numerator, denominator and value per shop.\n\n\b\nKPIs:\n" + _KPI_LINES,
                short_help="print the SQL and the numerator/denominator behind a KPI")
@click.argument("kpi", type=click.Choice(list(KPIS)), metavar="KPI")
@_db_options
@click.option("--out", help="write to this file instead of stdout")
def explain(kpi: str, db: str, payer_ledger: str | None, out: str | None) -> int:
    from refstream.reports.results import write_report

    return write_report(db, "explain", kpi=kpi, out=out, payer_ledger=payer_ledger)


@report.command()
@_db_options
@click.option("--out", required=True, help="the HTML file to write")
def html(db: str, payer_ledger: str | None, out: str) -> int:
    """Write a self-contained HTML report with charts.

    One HTML file, no external scripts, styles or fonts: scorecard, funnel, cohort curves,
    daily referrals and rewards, liability, top referrers.
    """
    from refstream.reports.results import write_report

    return write_report(db, "html", out=out, payer_ledger=payer_ledger)


COMMANDS = (report,)
