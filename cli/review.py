"""`refstream review list | approve | reject`: the fraud review queue and its decisions.
Parses the options and calls `reports.review` (the queue) or `jobs/review.py` (a decision)."""

from __future__ import annotations

import click

from refstream.cli import options
from refstream.schemas.status import ReviewDecision


@click.group()
def review() -> None:
    """The fraud review queue: list held referrals, approve or reject them.

    Lists every referral that waits for a reviewer (held, or with a held reward) with its
    flags and their evidence in words, and records a decision as a review event appended to
    the canonical log, so replay decides the same.
    """


@review.command("list")
@options.db("projection database (read-only)")
@options.output_format()
def list_command(db: str, fmt: str) -> int:
    """Every referral waiting for a reviewer.

    One entry per referral: referee, referrer, held rewards, and per flag the signal,
    observed value against its threshold, and the events behind it.
    """
    from refstream.reports.review import list_queue

    return list_queue(db, fmt)


def _decision_command(action: ReviewDecision, verb: str) -> click.Command:
    @click.argument("referral_id")
    @click.option("--reviewer", required=True, help="who decided (kept in the log)")
    @click.option("--note", help="why, in a few words")
    @click.option("--at", metavar="ISO-TIME",
                  help="when the decision was made, ISO-8601 UTC [default: now]")
    @click.option("--events", metavar="FILE.jsonl", help="embedded: the JSON Lines log of the run")
    @options.db("embedded: the run's database; Kafka: a snapshot to check the referral against",
                required=False)
    @click.option("--archive", help="embedded: also append the decision to this log archive "
                                    "(the demo's out/demo/archive)")
    @options.rules()
    @options.bootstrap("Kafka bootstrap servers: publish to shop.review instead")
    @click.option("--shop", help="Kafka: the referral's shop (when no --db)")
    def command(referral_id: str, reviewer: str, note: str | None, at: str | None,
                events: str | None, db: str | None, archive: str | None,
                rules_path: str | None, bootstrap: str | None, shop: str | None) -> int:
        from refstream.jobs.common import parse_moment
        from refstream.jobs.review import decide
        from refstream.reports.review import Decision

        when = parse_moment(at, "--at", zone_required=True) if at else None
        return decide(Decision(action, referral_id, reviewer, note, when), events=events, db=db,
                      archive=archive, rules_path=rules_path, bootstrap=bootstrap, shop=shop)

    return click.command(
        action, short_help=f"decide a held referral: {verb}",
        help=f"Decide a held referral: {verb}.\n\nRecords that a person decided to {verb}. "
             "Embedded: appends a review line to --events and applies it to --db (the "
             "database of a `refstream run` or `demo` over that file). Kafka: publishes the "
             "review to shop.review.")(command)


review.add_command(_decision_command(ReviewDecision.APPROVE, "release its held rewards"))
review.add_command(_decision_command(ReviewDecision.REJECT, "reject it and its held rewards"))

COMMANDS = (review,)
