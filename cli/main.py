"""The `refstream` group: every subcommand under one Click root, and the one place where an
error becomes an exit code (README "Exit codes", streams/exit_codes.py)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from refstream.cli import dlq, embedded, erasure, kafka, replay, reports, review, security, web
from refstream.schemas.errors import RefstreamError
from refstream.streams.exit_codes import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    exit_code_for,
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def refstream() -> None:
    """Event-sourced referral attribution: ingest shop events, attribute referrals, decide
    rewards and fraud flags, project them to DuckDB, replay history under new rules.

    Exit codes: 0 done, 1 problem found or internal error, 2 usage error, 3 input rejected,
    4 dependency (broker) unavailable, 5 refused by the broker, 130 interrupted. Rules, for
    every command that folds events: --rules FILE, else REFSTREAM_RULES_PATH, else the
    packaged default.
    """


for _room in (embedded, kafka, replay, reports, review, dlq, erasure, security, web):
    for _command in _room.COMMANDS:
        refstream.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `refstream` with `argv` (default: the process's arguments); returns the exit code."""
    from refstream.replay.collector import tune_garbage_collector

    tune_garbage_collector()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = refstream.main(args=args, prog_name="refstream", standalone_mode=False)
    except click.ClickException as exc:  # usage errors: unknown option, missing argument
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    except RefstreamError as exc:
        print(f"{_command_path(args)}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except Exception as exc:
        failure = _as_settings_error(exc) or _as_broker_error(args, exc)
        if failure is None:
            raise  # a bug: the traceback (exit 1) is what to report
        print(f"{_command_path(args)}: {failure}", file=sys.stderr)
        return exit_code_for(failure)
    if isinstance(result, int):
        return result
    return EXIT_OK if result is None else EXIT_PROBLEM


def _command_path(args: Sequence[str]) -> str:
    """`refstream links issue` for `links issue --shop ...`: the command that failed."""
    words = ["refstream"]
    group: click.Command = refstream
    for arg in args:
        if not isinstance(group, click.Group) or arg not in group.commands:
            break
        words.append(arg)
        group = group.commands[arg]
    return " ".join(words)


def _as_settings_error(exc: Exception) -> RefstreamError | None:
    """Settings the environment (REFSTREAM_*) or the command line gave that cannot be used."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    if isinstance(exc, SettingsError) or (isinstance(exc, ValidationError)
                                          and exc.title == "Settings"):
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return RefstreamError(f"invalid settings ({exc}{cause}); fix the REFSTREAM_* "
                              "variable or the option it names (README, Configuration)")
    return None


def _as_broker_error(args: Sequence[str], exc: Exception) -> RefstreamError | None:
    """A Kafka client error (kafka-python's or aiokafka's) no command turned into a message
    of its own, as one."""
    from aiokafka.errors import KafkaError as AioKafkaError
    from kafka.errors import KafkaError

    if not isinstance(exc, KafkaError | AioKafkaError):
        return None
    from refstream.cli.options import settings
    from refstream.streams.exit_codes import broker_error

    bootstrap = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--bootstrap"),
                     None)
    current = settings(bootstrap)
    return broker_error(_command_path(args), current.kafka_bootstrap, exc,
                        current.client_timeout_s)


__all__ = ["EXIT_USAGE", "main", "refstream"]


if __name__ == "__main__":
    sys.exit(main())
