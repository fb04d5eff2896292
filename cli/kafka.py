"""`refstream produce | topics | worker | projector | archive | finance-tail`: the commands
that run on Kafka."""

from __future__ import annotations

from pathlib import Path

import click

from refstream.cli import options


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@options.bootstrap()
@click.option("--skip-invalid", is_flag=True,
              help="report and skip invalid lines instead of stopping at the first")
def produce(file: Path, bootstrap: str | None, skip_invalid: bool) -> int:
    """Publish a JSONL file to the shop topics on Kafka.

    Validates each line and publishes it Avro-encoded to shop.<event_type>, keyed by shop
    id. An invalid line stops the command (exit 3) unless --skip-invalid.
    """
    from refstream.jobs.kafka import produce as produce_job

    return produce_job(options.settings(bootstrap), file, skip_invalid=skip_invalid)


@click.command()
@click.argument("action", type=click.Choice(["list", "create"]))
@options.bootstrap()
def topics(action: str, bootstrap: str | None) -> int:
    """List or create the Kafka topics.

    Topic specs (partitions, retention, cleanup) as code; `create` adds the missing ones.
    """
    from refstream.jobs.kafka import create_topics, list_topics

    settings = options.settings(bootstrap)
    return list_topics(settings) if action == "list" else create_topics(settings)


@click.command()
@options.bootstrap()
@options.rules()
@click.option("--no-ingest", is_flag=True, help="run only the pipeline")
@click.option("--no-pipeline", is_flag=True, help="run only ingest")
@click.option("--archive", type=click.Path(file_okay=False, path_type=Path),
              help="also archive the canonical log to this directory")
@options.loglevel()
def worker(bootstrap: str | None, rules_path: str | None, no_ingest: bool, no_pipeline: bool,
           archive: Path | None, loglevel: str) -> int:
    """Run a live worker (ingest + pipeline) on Kafka.

    Joins the consumer group; stop it with SIGTERM or Ctrl-C (it drains and commits first).
    Exit 1 when an agent crashed (a supervisor should restart it), 4 when the shutdown could
    not finish within REFSTREAM_SHUTDOWN_TIMEOUT_S because the broker is away.
    """
    from refstream.jobs.kafka import worker as worker_job

    return worker_job(options.settings(bootstrap), rules_path=rules_path,
                      ingest=not no_ingest, pipeline=not no_pipeline, archive=archive,
                      loglevel=loglevel)


@click.command()
@options.db("the projector's own DuckDB file")
@click.option("--snapshot", type=click.Path(dir_okay=False, path_type=Path),
              help="published read-only copy for analysts")
@click.option("--publish-every", type=float, default=2.0, show_default=True,
              help="seconds between published snapshots")
@options.rules("rules YAML (for the campaigns table) [default: $REFSTREAM_RULES_PATH, else "
               "the packaged default]")
@options.bootstrap()
@options.loglevel()
def projector(db: str, snapshot: Path | None, publish_every: float, rules_path: str | None,
              bootstrap: str | None, loglevel: str) -> int:
    """Keep a DuckDB read model of the live topics.

    Consumes refstream.log and the derived topics into --db (its own consumer group, the
    only writer) and publishes a read-only copy to --snapshot for analysts every
    --publish-every seconds.
    """
    from refstream.jobs.kafka import projector as projector_job

    return projector_job(options.settings(bootstrap), Path(db), snapshot, publish_every,
                         rules_path=rules_path, loglevel=loglevel)


@click.command()
@click.option("--archive", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="archive directory")
@options.bootstrap()
def archive(archive: Path, bootstrap: str | None) -> int:
    """Copy the canonical log topic to the Parquet archive.

    Appends refstream.log to the archive from where it ends (resumable; never skips or
    repeats an offset).
    """
    from refstream.jobs.kafka import archive_log

    return archive_log(options.settings(bootstrap), archive)


@click.command("finance-tail")
@options.bootstrap()
@click.option("--group", default="refstream-finance", show_default=True,
              help="consumer group of the payer")
@click.option("--ledger", default="out/finance-ledger.sqlite", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="the payer's SQLite ledger")
@click.option("--idle-exit", type=float, default=None,
              help="exit after this many seconds without messages")
@click.option("--quiet", is_flag=True, help="print payments only")
def finance_tail(bootstrap: str | None, group: str, ledger: Path, idle_exit: float | None,
                 quiet: bool) -> int:
    """Reference finance consumer: pay each reward id once.

    Reads refstream.reward-due, pays each reward id once (ledger in SQLite), skips
    byte-identical repeats, exits 1 on a conflicting repeat.
    """
    from refstream.jobs.kafka import finance_tail as finance_tail_job

    return finance_tail_job(options.settings(bootstrap), group=group, ledger_path=ledger,
                            idle_exit=idle_exit, quiet=quiet)


COMMANDS = (produce, topics, worker, projector, archive, finance_tail)
