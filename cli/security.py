"""`refstream acls show | apply` and `refstream kafka-users create | list`: Kafka security.
Parses the options and calls `deploy.acls` / `deploy.security`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click

from refstream.cli import options
from refstream.cli.options import F


def _shop_producer_option() -> Callable[[F], F]:
    from refstream.deploy.security import SHOP_PRODUCER_PRINCIPAL

    return click.option("--shop-producer", "shop_producers", multiple=True, metavar="NAME",
                        help="a principal with the shop producers' rights, repeatable, e.g. "
                             f"one per shop [default: {SHOP_PRODUCER_PRINCIPAL}]")


@click.group()
def acls() -> None:
    """Least-privilege Kafka ACLs: show the table, apply it to a broker.

    Who may do what on Kafka, as code (refstream.deploy.acls). Topic names follow
    REFSTREAM_TOPIC_PREFIX / REFSTREAM_SHOP_TOPIC_PREFIX, the worker's groups
    REFSTREAM_APP_ID and REFSTREAM_APP_ID.<stage>.
    """


@acls.command()
@_shop_producer_option()
@options.output_format()
def show(shop_producers: tuple[str, ...], fmt: str) -> int:
    """Print the ACL table."""
    from refstream.deploy.acls import show_acls

    return show_acls(shop_producers, fmt)


@acls.command()
@options.admin
@_shop_producer_option()
@click.option("--prune", is_flag=True,
              help="also delete ACLs of refstream's principals that the table does not list")
@click.option("--dry-run", is_flag=True, help="print the changes only")
def apply(bootstrap: str | None, admin_user: str | None, local_broker: Path | None,
          shop_producers: tuple[str, ...], prune: bool, dry_run: bool) -> int:
    """Create the missing ACLs (idempotent).

    Creates every ACL of the table that the broker lacks; existing ones are left alone, so
    running it again changes nothing.
    """
    from refstream.deploy.acls import admin_settings, apply_acls_to_broker

    settings = admin_settings(bootstrap=bootstrap, admin_user=admin_user,
                              local_broker=local_broker)
    return apply_acls_to_broker(settings, shop_producers, prune=prune, dry_run=dry_run)


@click.group("kafka-users")
def kafka_users() -> None:
    """SCRAM-SHA-512 users on the broker (create, list).

    Manage SCRAM users through the admin API; the admin itself is created when the secure
    broker is formatted.
    """


@kafka_users.command()
@click.argument("name")
@options.admin
@click.option("--password-stdin", is_flag=True, help="read the password from stdin")
def create(name: str, bootstrap: str | None, admin_user: str | None,
           local_broker: Path | None, password_stdin: bool) -> int:
    """Create a user or change its password.

    NAME is the user name, e.g. shop-acme. Without --password-stdin a password is generated:
    saved in the credentials file with --local-broker, printed once otherwise.
    """
    from refstream.deploy.acls import admin_settings, create_user

    settings = admin_settings(bootstrap=bootstrap, admin_user=admin_user,
                              local_broker=local_broker)
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    return create_user(settings, name, password=password, local_broker=local_broker)


@kafka_users.command("list")
@options.admin
def list_command(bootstrap: str | None, admin_user: str | None,
                 local_broker: Path | None) -> int:
    """List SCRAM users."""
    from refstream.deploy.acls import admin_settings, list_users

    return list_users(admin_settings(bootstrap=bootstrap, admin_user=admin_user,
                                     local_broker=local_broker))


COMMANDS = (acls, kafka_users)
