"""The embedded jobs (no Kafka): generate a shop stream, fold a file into DuckDB (`run`),
the demo's month end to end, and read-only SQL over a projection database."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from refstream.jobs.common import as_jsonable, count_lines, fixed_clock, progress_bar
from refstream.jobs.rules import announced_rules
from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import EXIT_DEAD_LETTERS, EXIT_OK
from refstream.streams.settings import Settings


def generate(out: Path, *, seed: int, shops: int, customers: int, days: int, events: int,
             fraud: bool) -> int:
    """Write a seeded synthetic shop stream to `out` and print its summary as JSON."""
    from dataclasses import replace

    from refstream.tools.synthetic import SyntheticConfig, events_for_target, write_jsonl

    if events:
        config = replace(events_for_target(events, seed=seed), fraud=fraud)
    else:
        config = SyntheticConfig(seed=seed, shops=shops, customers_per_shop=customers,
                                 days=days, fraud=fraud)
    summary = write_jsonl(config, out)
    print(json.dumps(as_jsonable(summary), indent=2))
    return EXIT_OK


def dead_letter_path(db_path: Path) -> Path:
    """Where `run` writes the lines it rejected: beside the database, `.dlq.jsonl` in
    place of its suffix (out/run.duckdb -> out/run.dlq.jsonl)."""
    return db_path.with_suffix(".dlq.jsonl")


def run_file(events_path: Path, db_path: Path, *, rules_path: str | None, append: bool,
             wall_clock: str | None) -> int:
    """Fold a JSON Lines file into `db_path` in-process; exit 3 when lines were dead-lettered."""
    from refstream.persistence.store import ProjectionStore
    from refstream.streams.embedded import DEAD_LETTER_KINDS, EmbeddedRunner

    if not events_path.is_file():
        raise RefstreamError(f"no events file at {events_path}; create one with "
                             "`refstream generate --out FILE.jsonl`")
    rules = announced_rules(rules_path)
    if db_path.exists() and not append:
        db_path.unlink()
    continuing = append and db_path.exists()
    store = ProjectionStore(db_path)
    runner = EmbeddedRunner(Settings(), rules, store,
                            wall_clock_ms=fixed_clock(wall_clock) if wall_clock else None)
    try:
        if continuing:
            runner.restore_state()
        with progress_bar(count_lines(events_path), "ev", "run") as advance:
            summary = runner.run_file(events_path, advance)
        runner.save_state()
    except BaseException:
        store.close()
        raise
    dlq_path = _write_dead_letters(db_path, summary.dead_letters, append=continuing)
    counts = {
        name: store.connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        for name in ("referrals", "rewards", "fraud_flags")
    }
    store.close()
    print(f"read {summary.lines} lines: {summary.accepted} events applied, "
          f"{summary.duplicates} duplicates ignored, {len(summary.dead_letters)} dead letters "
          f"({summary.events_per_second:,.0f} events/s)")
    print(f"rules {rules.version}; {'continued' if continuing else 'wrote'} {db_path}: " +
          ", ".join(f"{n} {c}" for n, c in counts.items()))
    print("dead letters: " + ", ".join(f"{kind} {summary.dead_letter_kinds[kind]}"
                                       for kind in DEAD_LETTER_KINDS))
    if summary.dead_letters:
        print(f"dead letters written to {dlq_path} (exit {EXIT_DEAD_LETTERS})")
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def _write_dead_letters(db_path: Path, letters: list[Any], append: bool = False) -> Path:
    target = dead_letter_path(db_path)
    if not letters:
        if not append:
            target.unlink(missing_ok=True)
        return target
    with target.open("a" if append else "w", encoding="utf-8") as out:
        for letter in letters:
            out.write(json.dumps({
                "source": letter.source_topic, "line": letter.source_offset,
                "shop_id": letter.shop_id, "error": letter.error,
                "original": letter.original.decode("utf-8", "replace"),
            }) + "\n")
    return target


def demo(out: Path, *, shops: int, customers: int, seed: int, rules_path: str | None) -> int:
    """Generate a month of shops, run the whole pipeline embedded, report."""
    import shutil
    import time as _time
    from dataclasses import replace

    from refstream.persistence.archive import ArchiveWriter
    from refstream.persistence.store import ProjectionStore
    from refstream.reports.html_report import write_html_report
    from refstream.reports.results import open_read_only, render_table, run_report
    from refstream.schemas.codec import Codec
    from refstream.streams.embedded import EmbeddedLog, EmbeddedRunner
    from refstream.streams.finance import EmbeddedPayer, FinanceLedger
    from refstream.tools.synthetic import SyntheticConfig, write_jsonl

    started = _time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    settings, rules, codec = Settings(), announced_rules(rules_path), Codec()
    config = SyntheticConfig(seed=seed, shops=shops, customers_per_shop=customers, days=30)
    print(f"1/4 generating {shops} shops x {customers} customers, 30 days (seed {seed})",
          file=sys.stderr)
    events_path = out / "events.jsonl"
    generated = write_jsonl(config, events_path)
    store = ProjectionStore(out / "refstream.duckdb")
    log = EmbeddedLog(ArchiveWriter(out / "archive"), codec, settings.partitions)
    ledger = FinanceLedger(out / "finance-ledger.sqlite")
    payer = EmbeddedPayer(ledger, codec, lambda row: store.add_row("payouts", row))
    # The demo's month ends now: event times are checked against the end of its history.
    runner = EmbeddedRunner(settings, rules, store, log.append, payer.offer,
                            wall_clock_ms=fixed_clock(generated.last_occurred_at))
    print("2/4 ingest validation + attribution -> fraud -> rewards -> DuckDB", file=sys.stderr)
    with progress_bar(count_lines(events_path), "ev", "pipeline") as advance:
        summary = runner.run_file(events_path, advance)
    runner.save_state()  # so `refstream review approve|reject` can continue this log
    log.close()
    store.close()
    ledger.close()
    print("3/4 reports", file=sys.stderr)
    conn = open_read_only(out / "refstream.duckdb")
    try:
        for name, columns in (("scorecard", ("kpi", "currency", "value", "status", "numerator",
                                             "denominator", "benchmark")),
                              ("funnel", ("step", "count", "from_previous", "drop_off"))):
            report = run_report(conn, name)
            overall = replace(report, rows=[r for r in report.rows if r[0 if name == "funnel"
                                                                         else 1] == "(all shops)"])
            print()
            print(render_table(overall, columns))
        html = write_html_report(conn, out / "report.html")
    finally:
        conn.close()
    seconds = _time.perf_counter() - started
    print(f"""
4/4 done in {seconds:.1f}s: {summary.accepted} events ({as_jsonable(generated).get("events",
    summary.lines)} generated), {len(summary.dead_letters)} dead letters, rules {rules.version}
  HTML report : {html}
  DuckDB      : {out / "refstream.duckdb"}   (tables: referrals, rewards, fraud_flags, orders, ...)
  log archive : {out / "archive"}   (replay it: refstream replay --archive {out / "archive"} \
--rules NEW.yaml --db out/new.duckdb --diff-against {out / "refstream.duckdb"})
  per shop    : refstream report scorecard --db {out / "refstream.duckdb"}
  explain     : refstream report explain referral-rate --db {out / "refstream.duckdb"}
  plain SQL   : refstream sql --db {out / "refstream.duckdb"} "SELECT status, count(*) \
FROM referrals GROUP BY ALL ORDER BY 2 DESC\"""")
    _print_front_door(out, settings)
    return EXIT_OK


def _print_front_door(out: Path, settings: Settings) -> None:
    """The busiest referrer's status link and share page, to open under `refstream serve`."""
    from refstream.web.demo import demo_links

    links = demo_links(out / "refstream.duckdb", out / "registry.sqlite",
                       settings.web_public_url)
    if links is None:
        return
    print(f"""  front door  : refstream serve --registry {out / "registry.sqlite"} \
--snapshot {out / "refstream.duckdb"}
                then open {links.status_url}
                (status page of {links.referrer_id} at {links.shop_id}) and the share page
                {links.share_url}""")


def sql(db: str, query: str, fmt: str) -> int:
    """Any SQL against a projection database, read-only (analysts never lock the writer)."""
    import duckdb

    from refstream.reports.results import open_read_only
    from refstream.reports.tables_output import render_rows

    conn = open_read_only(db)
    try:
        try:
            cursor = conn.execute(query)
            header = [d[0] for d in cursor.description or []]
            rows = cursor.fetchall()
        except duckdb.Error as exc:
            raise RefstreamError(f"the query failed on {db}: {exc}") from exc
        print(render_rows(header, rows, fmt))
    finally:
        conn.close()
    return EXIT_OK
