"""`refstream generate | demo | run | sql`: the embedded commands (no Kafka).
Parses the options and calls one job of `jobs/embedded.py` each."""

from __future__ import annotations

from pathlib import Path

import click

from refstream.cli import options
from refstream.streams.exit_codes import EXIT_DEAD_LETTERS, EXIT_OK, EXIT_USAGE


@click.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the JSON Lines file to write")
@options.synthetic_shops(customers=2000,
                         seed_help="random seed: the same seed writes the same bytes")
@click.option("--days", type=int, default=30, show_default=True,
              help="days of shopping activity (returns trail it by up to 40 days)")
@click.option("--events", type=int, default=0,
              help="about this many events in total (overrides shops/customers/days)")
@click.option("--no-fraud", is_flag=True, help="do not inject fraud patterns")
def generate(out: Path, seed: int, shops: int, customers: int, days: int, events: int,
             no_fraud: bool) -> int:
    """Write a seeded synthetic shop event stream (JSON Lines).

    Realistic shop events (funnel and scorecard bands per docs/benchmarks.md, injected
    fraud), with ground truth beside them in <out>.truth.json. Same seed, same bytes.
    """
    from refstream.jobs.embedded import generate as generate_job

    return generate_job(out, seed=seed, shops=shops, customers=customers, days=days,
                        events=events, fraud=not no_fraud)


@click.command()
@click.option("--out", default="out/demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="output folder (recreated)")
@options.synthetic_shops(customers=3000,
                         seed_help="random seed: the same seed gives the same month")
@options.rules()
def demo(out: Path, shops: int, customers: int, seed: int, rules_path: str | None) -> int:
    """The main job, embedded: a month of shops -> DuckDB, scorecard and HTML report.

    Generates a realistic month for a few shops, runs ingest validation and the whole
    pipeline in-process (no Kafka), writes the DuckDB projections, the log archive and an
    HTML report, and prints the scorecard.
    """
    from refstream.jobs.embedded import demo as demo_job

    return demo_job(out, shops=shops, customers=customers, seed=seed, rules_path=rules_path)


@click.command(epilog=f"Exit codes: {EXIT_OK} every line applied or a byte-identical repeat; "
                      f"{EXIT_DEAD_LETTERS} the run finished but dead-lettered records (counts "
                      f"printed per kind); {EXIT_USAGE} the input or the rules could not be used "
                      "(nothing was written).")
@click.option("--events", required=True, metavar="FILE.jsonl",
              help="JSON Lines file of shop events")
@options.rules()
@options.db("DuckDB file to (re)create")
@click.option("--append", is_flag=True,
              help="continue the log in an existing --db: the same tables as one run over "
                   "all the files in order (same rules version only)")
@click.option("--strict", is_flag=True,
              help=f"kept for older scripts: dead letters always exit {EXIT_DEAD_LETTERS}")
@click.option("--wall-clock", metavar="ISO-TIME",
              help="check event times against this time instead of now (a line dated more "
                   "than REFSTREAM_FUTURE_TOLERANCE_S after it, or "
                   "REFSTREAM_EVENT_HORIZON_DAYS before it, is rejected); give the end of a "
                   "recorded or simulated history, e.g. 2026-12-31T00:00:00Z")
def run(events: str, rules_path: str | None, db: str, append: bool, strict: bool,
        wall_clock: str | None) -> int:
    """Run ingest validation and the core over a JSONL file (embedded, no Kafka) into DuckDB.

    The file's line order is the log order. Writes referrals, rewards, fraud_flags and the
    other projection tables to --db, and the core's state beside them so --append can
    continue the log.

    Dead letters: a line that is not UTF-8, not valid JSON or not a valid event (money must
    be a JSON integer of minor units), or that repeats an event id with other content (a
    conflicting duplicate), is written with its file:line and the error to the DLQ file
    beside --db, its suffix replaced by .dlq.jsonl (out/run.duckdb -> out/run.dlq.jsonl);
    the run goes on.
    """
    from refstream.jobs.embedded import run_file

    return run_file(Path(events), Path(db), rules_path=rules_path, append=append,
                    wall_clock=wall_clock)


@click.command()
@click.argument("query")
@options.db("projection database (opened read-only)")
@options.output_format()
def sql(query: str, db: str, fmt: str) -> int:
    """Run SQL against a projection database (read-only).

    Opens the DuckDB file read-only and prints the result.
    """
    from refstream.jobs.embedded import sql as sql_job

    return sql_job(db, query, fmt)


COMMANDS = (generate, demo, run, sql)
