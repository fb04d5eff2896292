"""`--help` on every `refstream` command explains it: a description and every option's help."""

from __future__ import annotations

import click
import pytest

from refstream.cli.main import main, refstream


def _commands(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found.extend(_commands(sub, (*path, name)))
    return found


COMMANDS = _commands(refstream, ())


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "refstream" for p in COMMANDS])
def test_help_explains_the_command_and_each_option(path: tuple[str, ...],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Usage: refstream {' '.join(path)}".rstrip())
    command: click.Command = refstream
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert (command.help or "").strip(), f"{path}: no description"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"{path}: {param.opts} has no help"
            assert param.opts[0] in text


def test_every_subcommand_of_the_old_parser_is_still_there() -> None:
    # The subcommands scripts call (README "The CLI"); none may disappear.
    names = {" ".join(p) for p in COMMANDS}
    for expected in ("generate", "demo", "run", "sql", "produce", "topics", "worker",
                     "projector", "archive", "replay", "diff", "compare-models", "finance-tail",
                     "report scorecard", "report funnel", "report explain", "report html",
                     "review list", "review approve", "review reject", "dlq list",
                     "dlq export", "dlq redrive", "erase", "vault resolve", "acls show",
                     "acls apply", "kafka-users create", "kafka-users list", "serve",
                     "links issue", "links revoke", "webhooks run", "webhooks log"):
        assert expected in names
