"""`refstream erase` and `refstream vault resolve`: the right to erasure.
Parses the options and calls `tools.erasure` or the person vault."""

from __future__ import annotations

from pathlib import Path

import click

from refstream.cli import options

_FILE = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--shop", required=True, help="the shop the request was made to")
@click.option("--customer", required=True, help="the shop's customer id")
@click.option("--archive", type=click.Path(file_okay=False, path_type=Path),
              help="the Parquet log archive to rewrite (run `refstream archive` first so it "
                   "is up to date)")
@click.option("--vault", type=_FILE, help="person vault file [default: $REFSTREAM_PERSON_VAULT]")
@click.option("--receipt", type=_FILE, help="also write the JSON receipt (no personal data) here")
@click.option("--truncate-topic", is_flag=True,
              help="delete the log topic's records below the archive's committed end, every "
                   "record of refstream.attributions and refstream.fraud-flags (they carry "
                   "referral codes; replay re-derives them) and the shop topics' records "
                   "ingest has consumed (Kafka DeleteRecords; needs an admin principal)")
@click.option("--checkpoints", multiple=True, type=_FILE, metavar="SQLITE",
              help="a worker's checkpoint store (REFSTREAM_DATA_DIR/checkpoints.sqlite) to "
                   "rebuild from the rewritten archive; repeat for every worker's; the "
                   "workers must be stopped")
@options.rules("the workers' rules YAML, for rebuilt checkpoints [default: "
               "$REFSTREAM_RULES_PATH, else the packaged default]")
@options.bootstrap()
def erase(shop: str, customer: str, archive: Path | None, vault: Path | None,
          receipt: Path | None, truncate_topic: bool, checkpoints: tuple[Path, ...],
          rules_path: str | None, bootstrap: str | None) -> int:
    """Right to erasure: make one person's data unrecoverable.

    Erases one customer of one shop (needs REFSTREAM_PERSON_VAULT, on since the person's
    events were ingested):

    \b
      1. rewrites the person's identifier values (email/IP/payment/address hashes, device,
         visitor, their referral codes) in the archive to one-time hashes, the same value
         everywhere, payloads re-encoded; offsets and markers unchanged;
      2. deletes the person's vault entry (key and token -> customer id);
      3. with --checkpoints, rebuilds those checkpoint stores from the rewritten archive;
      4. with --truncate-topic, deletes the log topic's records below the archive's end,
         the derived topics that carry codes, and the consumed shop topic records.

    Then rebuild the projections: refstream replay --archive DIR --db NEW.duckdb.
    Referrals, rewards and money totals replay unchanged. See docs/security.md, "Right to
    erasure".
    """
    from refstream.jobs.rules import resolve_rules_path
    from refstream.rewards.rules import load_rules
    from refstream.tools.erasure import erase as erase_job

    return erase_job(options.settings(bootstrap), load_rules(resolve_rules_path(rules_path)[0]),
                     shop=shop, customer=customer, vault=vault, archive=archive,
                     receipt_path=receipt, truncate_topic=truncate_topic,
                     checkpoints=list(checkpoints))


@click.group()
def vault() -> None:
    """The person vault: resolve a token to a customer id.

    The person vault (REFSTREAM_PERSON_VAULT) maps each shop customer to the token the log
    uses. Erased people cannot be resolved.
    """


@vault.command()
@click.argument("token")
@click.option("--shop", required=True, help="the shop of the customer")
@click.option("--vault", "vault_path", type=_FILE,
              help="person vault file [default: $REFSTREAM_PERSON_VAULT]")
def resolve(token: str, shop: str, vault_path: Path | None) -> int:
    """Print the customer id behind a token.

    For finance: the shop's customer id of a reward beneficiary. Exits 2 if the token is
    unknown or the person was erased.
    """
    from refstream.tools.erasure import resolve_token

    return resolve_token(options.settings(), shop=shop, token=token, vault=vault_path)


COMMANDS = (erase, vault)
