"""Report results: the analyst reports of `reports/definitions.py` run on a read-only DuckDB
connection, and their rows rendered for a terminal, CSV and JSON.

`explain` prints the SQL and the counts behind a KPI; `write_report` is what `refstream
report` runs (cli/reports.py), and the HTML report (`reports/html_report.py`) builds on this.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from refstream.reports.definitions import (
    ALL_SHOPS,
    KPIS,
    NO_PAYOUTS_NOTE,
    PAYOUTS_TABLE,
    REPORTS,
    SCORECARD,
    Column,
    Kpi,
    ReportSpec,
)
from refstream.reports.tables_output import draw_table
from refstream.schemas.errors import EXIT_USAGE, RefstreamError
from refstream.schemas.status import RewardKind, sql_literal

SCORECARD_REPORT = "scorecard"
REPORT_NAMES: tuple[str, ...] = (SCORECARD_REPORT, *REPORTS)
FORMATS: tuple[str, ...] = ("table", "csv", "json")

# ISO 4217 minor-unit digits for the currencies that do not use two; every other code does.
CURRENCY_MINOR_DIGITS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
    "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}
DEFAULT_MINOR_DIGITS = 2
PERCENT_DECIMALS = 2
COEFFICIENT_DECIMALS = 3
MISSING = "-"
# In CSV a list cell (evidence event ids) is joined with this; ids never contain it.
CSV_LIST_SEPARATOR = ";"

# The tables a refstream read model has; a file without them is not one.
REQUIRED_TABLES = ("referrals", "rewards", "reward_ledger", "orders", "clicks")


class ReportError(RefstreamError):
    """A report that cannot run: unknown name, missing or locked database, wrong file."""

    exit_code: ClassVar[int] = EXIT_USAGE


@dataclass(frozen=True)
class KpiResult:
    """One KPI for one scope (a shop or ALL_SHOPS) and, for money KPIs, one currency."""

    kpi: str
    title: str
    shop_id: str
    currency: str | None
    numerator: float | None
    denominator: float | None
    value: float | None
    status: str
    benchmark: str
    unit: str
    operand: str
    definition: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportResult:
    """A report's rows with the column metadata needed to render them, and notes to print."""

    name: str
    title: str
    description: str
    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]]
    notes: list[str] = field(default_factory=list)
    # Reward "currencies" that count points (amount_minor is a number of points, no decimals).
    points_units: frozenset[str] = frozenset()

    def records(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, row, strict=True)) for row in self.rows]


# ------------------------------------------------------------------------------- running


def _number(value: Any) -> float | None:
    # DuckDB returns HUGEINT sums as int and averages as float; both read as numbers here.
    if value is None:
        return None
    return float(value) if isinstance(value, float | Decimal) else int(value)


def kpi_rows(conn: duckdb.DuckDBPyConnection, kpi: Kpi) -> list[KpiResult]:
    """Run one KPI's statement: a result per shop and for all shops (per currency if money)."""
    cursor = conn.execute(kpi.sql)
    names = [d[0] for d in cursor.description]
    results = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        value = record["value"]
        results.append(KpiResult(
            kpi=kpi.name, title=kpi.title, shop_id=record["shop_id"],
            currency=record["currency"], numerator=_number(record["numerator"]),
            denominator=_number(record["denominator"]),
            value=None if value is None else float(value),
            status=kpi.rating.status(None if value is None else float(value)),
            benchmark=kpi.rating.summary, unit=kpi.unit, operand=kpi.operand,
            definition=kpi.definition,
            detail={k: _number(v) if isinstance(v, int | float | Decimal) else v
                    for k, v in record.items()
                    if k not in {"shop_id", "currency", "numerator", "denominator", "value"}},
        ))
    return results


def scorecard(conn: duckdb.DuckDBPyConnection) -> list[KpiResult]:
    """Every scorecard KPI, in SCORECARD order; within a KPI all shops first, then each shop."""
    return [result for kpi in SCORECARD for result in kpi_rows(conn, kpi)]


def points_units(conn: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The currency codes the rules stamp on points rewards (kind = points), e.g. PTS."""
    rows = conn.execute("SELECT DISTINCT currency FROM rewards "
                        f"WHERE kind = {sql_literal(RewardKind.POINTS)}").fetchall()
    return frozenset(row[0] for row in rows if row[0] is not None)


def payouts_recorded(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether the finance consumer's payouts table exists and holds at least one payout."""
    exists = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
        [PAYOUTS_TABLE]).fetchone()
    if not exists or not exists[0]:
        return False
    rows = conn.execute(f"SELECT count(*) FROM {PAYOUTS_TABLE}").fetchone()
    return bool(rows and rows[0])


_SCORECARD_COLUMNS: tuple[Column, ...] = (
    Column("kpi", "text"), Column("shop_id", "text"), Column("currency", "text"),
    Column("value", "measure"), Column("status", "text"),
    Column("numerator", "operand", "currency"), Column("denominator", "operand", "currency"),
    Column("benchmark", "text"), Column("unit", "text"), Column("operand", "text"),
    Column("definition", "text"),
)
# What the terminal table shows of the scorecard; csv and json carry every column.
_SCORECARD_TABLE_COLUMNS = ("kpi", "shop_id", "currency", "value", "status", "numerator",
                            "denominator", "benchmark")


def _scorecard_report(conn: duckdb.DuckDBPyConnection) -> ReportResult:
    rows = [
        (r.kpi, r.shop_id, r.currency, r.value, r.status, r.numerator, r.denominator,
         r.benchmark, r.unit, r.operand, r.definition)
        for r in scorecard(conn)
    ]
    notes = [
        "status: alert / below median / median / top quartile against the scorecard bands "
        "of docs/benchmarks.md; participation is rated against its healthy band",
        "money KPIs are computed per currency; amounts in different currencies are never "
        "added together",
        "`refstream report explain KPI` prints the SQL and the counts behind a KPI",
    ]
    return ReportResult(SCORECARD_REPORT, "Referral programme scorecard",
                        "the six scorecard KPIs of docs/benchmarks.md plus participation, "
                        "reach, leads and "
                        "first-order revenue share, per shop and for all shops",
                        _SCORECARD_COLUMNS, rows, notes)


def run_report(conn: duckdb.DuckDBPyConnection, name: str) -> ReportResult:
    """Run a named report (see REPORT_NAMES) and return its rows with their column metadata."""
    if name == SCORECARD_REPORT:
        return _scorecard_report(conn)
    spec = REPORTS.get(name)
    if spec is None:
        raise ReportError(f"unknown report {name!r}; choose one of {', '.join(REPORT_NAMES)}")
    payouts = payouts_recorded(conn)
    rows = [tuple(row) for row in conn.execute(spec.sql_for(payouts)).fetchall()]
    return ReportResult(spec.name, spec.title, spec.description, spec.columns, rows,
                        _notes(spec, payouts, rows), points_units(conn))


def _notes(spec: ReportSpec, payouts: bool, rows: list[tuple[Any, ...]]) -> list[str]:
    notes = []
    if spec.name == "funnel" and not payouts:
        notes.append(NO_PAYOUTS_NOTE)
    if spec.name == "cohorts" and any(row[-1] is False for row in rows):
        notes.append("complete = no: the cohort has not been observed that long yet; "
                     "referrals convert late, so these points will still rise")
    if not rows:
        notes.append("no rows: the read model holds nothing for this report yet")
    return notes


def _plain(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return MISSING if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def explain(conn: duckdb.DuckDBPyConnection, kpi_name: str) -> str:
    """The definition, benchmark, SQL and numerator/denominator counts behind one KPI."""
    kpi = KPIS.get(kpi_name)
    if kpi is None:
        raise ReportError(f"unknown KPI {kpi_name!r}; choose one of {', '.join(KPIS)}")
    results = kpi_rows(conn, kpi)
    detail_names = sorted({k for r in results for k in r.detail})
    columns = (Column("shop_id", "text"), Column("currency", "text"),
               Column("numerator", "operand", "currency"),
               Column("denominator", "operand", "currency"), Column("value", "measure"),
               Column("status", "text"),
               *(Column(n, "text") for n in detail_names),
               Column("unit", "text"), Column("operand", "text"))
    rows = [(r.shop_id, r.currency, r.numerator, r.denominator, r.value, r.status,
             *(_plain(r.detail.get(n)) for n in detail_names), r.unit, r.operand)
            for r in results]
    table = render_table(ReportResult(kpi.name, kpi.title, "", columns, rows),
                         show_columns=tuple(c.name for c in columns[:-2]), heading=False)
    lines = [
        f"{kpi.name}: {kpi.title}",
        f"  definition:  {kpi.definition}",
        f"  numerator:   {kpi.numerator}",
        f"  denominator: {kpi.denominator}",
        f"  benchmark:   {kpi.rating.summary} (docs/benchmarks.md)",
        "",
        "SQL:",
        kpi.sql,
        "",
        "Result (raw counts and sums; money in minor units where not formatted):",
        table,
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- formatting


def format_money(amount_minor: float | None, currency: str | None,
                 points: Collection[str] = ()) -> str:
    """Minor units as major units with the currency code: 123456, EUR -> '1,234.56 EUR'.

    Codes in `points` count whole points (the rules' points currency): 800, PTS -> '800 PTS'.
    """
    if amount_minor is None:
        return MISSING
    if currency is None:
        return f"{amount_minor:,.0f} (minor units)"
    digits = 0 if currency in points else CURRENCY_MINOR_DIGITS.get(currency,
                                                                    DEFAULT_MINOR_DIGITS)
    major = Decimal(str(amount_minor)).scaleb(-digits)
    return f"{major:,.{digits}f} {currency}"


def format_percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return MISSING
    sign = "+" if signed else ""
    return f"{value * 100:{sign}.{PERCENT_DECIMALS}f}%"


def format_measure(value: float | None, unit: str) -> str:
    """A KPI value in its unit: percent, premium (signed percent), coefficient or count."""
    if value is None:
        return MISSING
    if unit == "percent":
        return format_percent(value)
    if unit == "premium":
        return format_percent(value, signed=True)
    if unit == "coefficient":
        return f"{value:.{COEFFICIENT_DECIMALS}f}"
    return f"{value:,.0f}"


def _format_cell(column: Column, value: Any, record: dict[str, Any],
                 points: Collection[str] = ()) -> str:
    if value is None:
        return MISSING
    currency = record.get(column.currency_column) if column.currency_column else None
    match column.kind:
        case "money":
            return format_money(value, currency, points)
        case "percent":
            return format_percent(value)
        case "ratio":
            return f"{value:.{COEFFICIENT_DECIMALS}f}"
        case "count":
            return f"{value:,}"
        case "list":
            return ", ".join(str(v) for v in value)
        case "flag":
            return "yes" if value else "no"
        case "measure":
            return format_measure(value, str(record.get("unit", "count")))
        case "operand":
            if record.get("operand") == "money":
                return format_money(value, currency)
            return f"{value:,.0f}" if isinstance(value, int | float) else str(value)
        case _:
            return str(value)


_NUMERIC_KINDS = frozenset({"count", "money", "percent", "ratio", "measure", "operand"})


def render_table(result: ReportResult, show_columns: Sequence[str] | None = None,
                 heading: bool = True) -> str:
    """Aligned columns for a terminal: numbers right-aligned, money in major units."""
    shown = [c for c in result.columns if show_columns is None or c.name in show_columns]
    records = result.records() if result.rows else []
    cells = [[_format_cell(c, rec[c.name], rec, result.points_units) for c in shown]
             for rec in records]
    out = []
    if heading:
        out.append(result.title)
        if result.description:
            out.append(result.description)
        out.append("")
    out.append(draw_table([c.name for c in shown], cells,
                          [c.kind in _NUMERIC_KINDS for c in shown]))
    if not cells:
        out.append("(no rows)")
    if result.notes:
        out.append("")
        out.extend(f"note: {n}" for n in result.notes)
    return "\n".join(out)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return CSV_LIST_SEPARATOR.join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render_csv(result: ReportResult) -> str:
    """Raw values (minor units, ratios as fractions); header row of column names."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.name for c in result.columns])
    for row in result.rows:
        writer.writerow([_csv_cell(v) for v in row])
    return buffer.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def render_json(result: ReportResult) -> str:
    """Raw values with the column kinds, so a reader knows minor units from counts."""
    document = {
        "report": result.name,
        "title": result.title,
        "description": result.description,
        "columns": [{"name": c.name, "kind": c.kind, "currency_column": c.currency_column}
                    for c in result.columns],
        "rows": [{k: _jsonable(v) for k, v in rec.items()} for rec in result.records()],
        "notes": result.notes,
        "points_units": sorted(result.points_units),
    }
    return json.dumps(document, indent=2, ensure_ascii=False)


def render(result: ReportResult, fmt: str) -> str:
    if fmt == "csv":
        return render_csv(result)
    if fmt == "json":
        return render_json(result) + "\n"
    show = _SCORECARD_TABLE_COLUMNS if result.name == SCORECARD_REPORT else None
    return render_table(result, show_columns=show) + "\n"


# ------------------------------------------------------------------------------- opening


def open_read_only(path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open a projection database for reading, with errors that say what to do."""
    db = Path(path)
    if not db.is_file():
        raise ReportError(f"no database at {db}; create one with "
                          "`refstream run --events FILE.jsonl --db FILE.duckdb`")
    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.IOException as exc:
        raise ReportError(f"cannot open {db} read-only ({exc}); a writer may hold it: "
                          "query the published snapshot instead") from exc
    present = {row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    missing = [t for t in REQUIRED_TABLES if t not in present]
    if missing:
        conn.close()
        raise ReportError(f"{db} is not a refstream projection database "
                          f"(missing tables: {', '.join(missing)})")
    return conn


def use_payer_ledger(conn: duckdb.DuckDBPyConnection, ledger_path: str | Path) -> int:
    """Read what the payer paid from its own ledger (`finance-tail --ledger`) instead of the
    database's payouts table, for this connection only (a temporary view shadows the table;
    the database stays read-only). Returns how many payments the ledger holds."""
    import sqlite3

    import pyarrow as pa

    path = Path(ledger_path)
    if not path.is_file():
        raise ReportError(f"no payer ledger at {path}; pass the file `refstream finance-tail "
                          "--ledger` writes")
    ledger = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = ledger.execute(
            "SELECT reward_id, beneficiary_id, amount_minor, currency, "
            "CAST(handled_at * 1000 AS INTEGER) FROM handled WHERE kind = 'payment'").fetchall()
    except sqlite3.Error as exc:
        raise ReportError(f"{path} is not a refstream payer ledger ({exc})") from exc
    finally:
        ledger.close()
    columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 5
    payments = pa.table({
        "reward_id": pa.array(columns[0], pa.string()),
        "shop_id": pa.nulls(len(rows), pa.string()),
        "beneficiary_id": pa.array(columns[1], pa.string()),
        "amount_minor": pa.array(columns[2], pa.int64()),
        "currency": pa.array(columns[3], pa.string()),
        "paid_at": pa.array(columns[4], pa.timestamp("ms", tz="UTC")),
    })
    conn.register("refstream_payer_ledger", payments)
    conn.execute(f"CREATE TEMP VIEW {PAYOUTS_TABLE} AS SELECT * FROM refstream_payer_ledger")
    return len(rows)


def _emit(text: str, out: str | None) -> None:
    if out:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def write_report(db: str | Path, name: str, *, fmt: str = "table", out: str | None = None,
                 kpi: str | None = None, payer_ledger: str | None = None) -> int:
    """Run report `name` (`explain` of `kpi`, `html` into `out`) on `db`; exit 0."""
    conn = open_read_only(db)
    try:
        if payer_ledger:
            use_payer_ledger(conn, payer_ledger)
        if name == "explain":
            _emit(explain(conn, kpi or "") + "\n", out)
        elif name == "html":
            from refstream.reports.html_report import write_html_report

            target = write_html_report(conn, Path(out or "report.html"))
            print(f"wrote {target}", file=sys.stderr)
        else:
            result = run_report(conn, name)
            if fmt == "csv" and result.notes:
                # stdout stays a clean CSV document; the notes still reach the reader
                for note in result.notes:
                    print(f"note: {note}", file=sys.stderr)
            _emit(render(result, fmt), out)
    except duckdb.Error as exc:
        raise ReportError(f"report {name} failed on {db}: {exc}") from exc
    finally:
        conn.close()
    return 0


REPORT_HELP: dict[str, str] = {
    SCORECARD_REPORT: "the six KPIs of docs/benchmarks.md with status vs median/top quartile/alert",
    "funnel": "share -> click -> signup -> first order -> qualified -> due -> paid",
    "cohorts": "referred visitors by ISO week of first click, conversion by weeks since",
    "campaigns": "referred customers and revenue per campaign (first orders and all)",
    "referrers": "top referrers by successful referrals and reward amounts due",
    "fraud-queue": "every referral waiting for a reviewer, once, with its signals and evidence",
    "liability": "reward amounts by status (pending, held, due = owed and not yet paid, paid, "
                 "reversed) and currency",
    "daily": "referrals decided and reward messages sent per day",
    "late": "referrals an event of their shop that arrived late may have changed: decided "
            "or changed after its time, or still open then",
}


__all__ = [
    "ALL_SHOPS", "KpiResult", "ReportError", "ReportResult", "explain",
    "format_money", "kpi_rows", "open_read_only", "render",
    "render_csv", "render_json", "render_table", "run_report", "scorecard", "write_report",
]
