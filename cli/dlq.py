"""`refstream dlq list | export | redrive`: dead letters, fixed and published once.
Parses the options and calls `streams.dlq`; no logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from refstream.cli import options
from refstream.cli.options import F
from refstream.streams.dlq import LEDGER_FILE
from refstream.streams.exit_codes import EXIT_OK


def _common(command: F) -> F:
    command = click.option("--ledger", type=click.Path(dir_okay=False, path_type=Path),
                           help="SQLite ledger of re-driven dead letters "
                                f"[default: $REFSTREAM_DATA_DIR/{LEDGER_FILE}]")(command)
    return options.bootstrap()(command)


def _reading(command: F) -> F:
    command = click.option("--timeout", type=float, default=60.0, show_default=True,
                           help="give up reading the DLQ after this many seconds")(command)
    return click.option("--shop", help="only dead letters of this shop id")(command)


@click.group()
def dlq() -> None:
    """List, export and re-drive dead letters (records ingest rejected).

    Dead letters are shop records ingest rejected, kept on the DLQ topic with their original
    bytes, the error and their source topic/partition/offset.

    \b
      refstream dlq list                      what is there and why
      refstream dlq export --out fixed.jsonl  one JSON object per dead letter
      (edit the "event" of each line)
      refstream dlq redrive fixed.jsonl       publish the fixed events, once
    """


@dlq.command("list")
@_common
@_reading
@options.output_format()
@click.option("--full", is_flag=True, help="print whole error messages (table format clips them)")
def list_command(bootstrap: str | None, ledger: Path | None, shop: str | None, timeout: float,
                 fmt: str, full: bool) -> int:
    """Print the dead letters: source, shop, size, error.

    Reads the DLQ topic from its start (no consumer group, nothing committed) and prints one
    row per dead letter; `redriven` says whether the ledger has re-driven it.
    """
    from refstream.reports.tables_output import render_rows
    from refstream.streams.dlq import DEAD_LETTER_COLUMNS, dead_letter_rows

    rows, summary = dead_letter_rows(options.settings(bootstrap), shop=shop, timeout_s=timeout,
                                     ledger=ledger, clip=None if (full or fmt != "table") else 100)
    print(render_rows(list(DEAD_LETTER_COLUMNS), rows, fmt))
    print(summary, file=sys.stderr)
    return EXIT_OK


@dlq.command()
@_common
@_reading
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the JSON Lines file to write")
@click.option("--include-redriven", is_flag=True,
              help="also export dead letters that were re-driven already")
def export(bootstrap: str | None, ledger: Path | None, shop: str | None, timeout: float,
           out: Path, include_redriven: bool) -> int:
    """Write the dead letters as JSON Lines for fixing.

    Each line: source coordinates, the error, and the original record decoded into the JSON
    Lines event form under "event" (null, with "original_base64", when the bytes cannot be
    decoded). Dead letters the ledger has re-driven are left out unless --include-redriven.
    """
    from refstream.streams.dlq import export_dead_letters

    return export_dead_letters(options.settings(bootstrap), out, shop=shop, timeout_s=timeout,
                               ledger=ledger, include_redriven=include_redriven)


@dlq.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_common
@click.option("--skip-invalid", is_flag=True,
              help="re-drive the valid lines, report the others, exit 1")
@click.option("--dry-run", is_flag=True,
              help="validate and say what would be published; publish nothing")
def redrive(file: Path, bootstrap: str | None, ledger: Path | None, skip_invalid: bool,
            dry_run: bool) -> int:
    """Publish fixed events to their shop topics, once per dead letter.

    Validates the "event" of every line of FILE (a `dlq export` file) as `refstream
    produce` does, publishes the events Avro-encoded to shop.<event_type> keyed by shop id,
    and records each dead letter (by source topic/partition/offset) in the ledger: running
    it again republishes nothing. Any invalid line stops the run before anything is
    published (exit 3), unless --skip-invalid.
    """
    from refstream.streams.dlq import redrive_file

    return redrive_file(options.settings(bootstrap), file, ledger=ledger,
                        skip_invalid=skip_invalid, dry_run=dry_run)


COMMANDS = (dlq,)
