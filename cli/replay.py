"""`refstream replay | diff | compare-models`: history under any rules, and what changes.
Parses the options and calls one job of `jobs/replay.py` each."""

from __future__ import annotations

from pathlib import Path

import click

from refstream.cli import options


@click.command()
@click.option("--archive", help="archive directory [default: read the topic]")
@options.bootstrap()
@options.rules()
@options.db("DuckDB file to (re)create")
@click.option("--as-of-time", metavar="ISO-TIME",
              help="only records appended up to this UTC time (ISO-8601): what did we "
                   "believe then")
@click.option("--as-of-offsets", metavar="P:O,P:O",
              help="only offsets below P:O,P:O per partition")
@click.option("--diff-against", type=click.Path(dir_okay=False, path_type=Path),
              help="print the diff from this DuckDB to the replay")
@options.output_format()
def replay(archive: str | None, bootstrap: str | None, rules_path: str | None, db: str,
           as_of_time: str | None, as_of_offsets: str | None, diff_against: Path | None,
           fmt: str) -> int:
    """Run the core over the archived log with any rules.

    Replays the archive (or the refstream.log topic from offset 0 when there is no archive)
    into a fresh DuckDB with the same tables as the live projections.
    """
    from refstream.jobs.replay import replay as replay_job

    return replay_job(options.settings(bootstrap), Path(db), archive=archive,
                      rules_path=rules_path, as_of_time=as_of_time, as_of_offsets=as_of_offsets,
                      diff_against=diff_against, fmt=fmt)


@click.command()
@click.argument("before", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("after", type=click.Path(dir_okay=False, path_type=Path))
@options.output_format()
@click.option("--apply", is_flag=True,
              help="publish reward-due and reversal corrections to Kafka")
@options.bootstrap()
def diff(before: Path, after: Path, fmt: str, apply: bool, bootstrap: str | None) -> int:
    """Compare two projection databases (rules A vs rules B).

    BEFORE is the DuckDB of the current projections, AFTER the proposed one. Prints
    referrals, rewards and fraud flags added / removed / changed, and money per referrer,
    campaign and in total.
    """
    from refstream.jobs.replay import diff as diff_job

    return diff_job(options.settings(bootstrap), before, after, fmt, apply=apply)


@click.command("compare-models")
@click.option("--archive", required=True, help="archive directory")
@options.rules()
@options.output_format()
def compare_models(archive: str, rules_path: str | None, fmt: str) -> int:
    """First vs last touch, code override on/off.

    Replays the same archive under each attribution model and prints referrals, referrers
    and money per model.
    """
    from refstream.jobs.replay import compare_models as compare_job

    return compare_job(archive, rules_path=rules_path, fmt=fmt)


COMMANDS = (replay, diff, compare_models)
