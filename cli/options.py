"""Options that several commands share, defined once: Kafka bootstrap, admin security,
rules, database, output format, log level; and the settings they build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from refstream.streams.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


FORMATS = ("table", "csv", "json")


def settings(bootstrap: str | None = None, **overrides: Any) -> Settings:
    """REFSTREAM_* environment settings, with what the command line set on top."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if bootstrap:
        given["kafka_bootstrap"] = bootstrap
    return Settings(**given)


BOOTSTRAP_HELP = ("Kafka bootstrap servers, host:port[,host:port] "
                  "[default: $REFSTREAM_KAFKA_BOOTSTRAP]")
RULES_HELP = "rules YAML [default: $REFSTREAM_RULES_PATH, else the packaged default]"


def bootstrap(help_text: str = BOOTSTRAP_HELP) -> Callable[[F], F]:
    return click.option("--bootstrap", metavar="HOST:PORT", help=help_text)


def rules(help_text: str = RULES_HELP) -> Callable[[F], F]:
    return click.option("--rules", "rules_path", metavar="FILE", help=help_text)


def synthetic_shops(*, customers: int, seed_help: str) -> Callable[[F], F]:
    """--shops, --customers (per shop) and --seed of the synthetic generator's commands."""
    def apply(command: F) -> F:
        for option in reversed((
                click.option("--shops", type=int, default=3, show_default=True,
                             help="how many shops"),
                click.option("--customers", type=int, default=customers, show_default=True,
                             help="customers per shop (existing before the first day)"),
                click.option("--seed", type=int, default=7, show_default=True,
                             help=seed_help))):
            command = option(command)
        return command
    return apply


def db(help_text: str, *, required: bool = True) -> Callable[[F], F]:
    return click.option("--db", required=required, metavar="FILE.duckdb", help=help_text)


def output_format(choices: tuple[str, ...] = FORMATS, default: str = "table",
                  help_text: str | None = None) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(choices), default=default,
                        show_default=True,
                        help=help_text or "table for people; csv and json for scripts")


def loglevel() -> Callable[[F], F]:
    return click.option("--loglevel", default="warning", show_default=True,
                        help="log level of the process (debug, info, warning, error)")


def admin(command: F) -> F:
    """The admin connection's options (acls apply, kafka-users)."""
    from refstream.deploy.acls import ENV_ADMIN_PASSWORD

    for option in reversed((
        click.option("--bootstrap", metavar="HOST:PORT",
                     help="broker host:port [default: $REFSTREAM_KAFKA_BOOTSTRAP]"),
        click.option("--admin-user", metavar="NAME",
                     help=f"SCRAM user to connect as (a super user); password from "
                          f"${ENV_ADMIN_PASSWORD} or a prompt [default: REFSTREAM_SASL_* / "
                          "REFSTREAM_SSL_* settings]"),
        click.option("--local-broker", metavar="DATA_DIR",
                     type=click.Path(file_okay=False, path_type=Path),
                     help="connect as admin to the broker `deploy/kafka.sh start --secure` "
                          "runs from DATA_DIR (address, CA and password from its files)"),
    )):
        command = option(command)
    return command


def path(value: str | None) -> Path | None:
    return Path(value) if value else None
