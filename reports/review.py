"""The fraud review queue (`refstream review list`) and the review event of a decision
(`jobs/review.py` records it: `refstream review approve|reject`).

The queue holds every referral that waits for a person (status held) and every referral
with a held reward, once each, with all its flags and their evidence in words. A decision
is a `review` event appended to the canonical log (the JSON Lines file of an embedded run,
or the shop.review topic that ingest appends to refstream.log), so replay decides the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import duckdb

from refstream.reports.definitions import FLAGS_OF_REFERRAL
from refstream.reports.tables_output import render_rows
from refstream.schemas.errors import EXIT_USAGE, RefstreamError
from refstream.schemas.shop import ShopReview
from refstream.schemas.status import (
    AttributionStatus,
    ReviewDecision,
    RewardStatusName,
    sql_literal,
)

MINUTES_PER_HOUR, HOURS_PER_DAY = 60, 24


class ReviewError(RefstreamError):
    """A review command that cannot go ahead; the message says why and what to do."""

    exit_code: ClassVar[int] = EXIT_USAGE


@dataclass
class Flag:
    signal: str
    action: str
    entity_type: str
    entity_key: str
    observed: int
    threshold: int
    window_ms: int
    flagged_at: datetime
    evidence_event_ids: list[str]


@dataclass
class QueueItem:
    """One referral waiting for a reviewer, with everything a person needs to decide."""

    shop_id: str
    referral_id: str
    referee_id: str
    referrer_id: str | None
    status: str
    held_rewards: list[tuple[str, int, str]] = field(default_factory=list)  # side, amount, cur
    flags: list[Flag] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def waiting_since(self) -> datetime | None:
        return min((f.flagged_at for f in self.flags), default=None)


_REFERRAL_HELD = sql_literal(AttributionStatus.HELD)
_REWARD_HELD = sql_literal(RewardStatusName.HELD)
_HELD_SQL = f"""
SELECT r.shop_id, r.referral_id, r.referee_id, r.referrer_id, r.status
FROM referrals r
WHERE r.status = {_REFERRAL_HELD}
   OR EXISTS (SELECT 1 FROM rewards w
              WHERE w.referral_id = r.referral_id AND w.status = {_REWARD_HELD})
ORDER BY r.shop_id, r.referral_id"""


def review_queue(conn: duckdb.DuckDBPyConnection) -> list[QueueItem]:
    """Every held referral and every referral with a held reward, oldest flag first."""
    items = {row[1]: QueueItem(*row) for row in conn.execute(_HELD_SQL).fetchall()}
    if not items:
        return []
    ids = list(items)
    for referral_id, side, amount, currency in conn.execute(
            "SELECT referral_id, side, amount_minor, currency FROM rewards "
            f"WHERE status = {_REWARD_HELD} AND referral_id = ANY(?) ORDER BY reward_id",
            [ids]).fetchall():
        items[referral_id].held_rewards.append((side, int(amount), currency))
    # The same join as the fraud queue's (reports.FLAGS_OF_REFERRAL).
    for row in conn.execute("""
            SELECT DISTINCT r.referral_id, f.signal, f.action, f.entity_type, f.entity_key,
                   f.observed, f.threshold, f.window_ms, f.flagged_at, f.evidence_event_ids,
                   f.flag_id
            FROM referrals r
            """ + FLAGS_OF_REFERRAL + """
            WHERE r.referral_id = ANY(?)
            ORDER BY f.flagged_at, f.flag_id""", [ids]).fetchall():
        (referral_id, signal, action, entity_type, entity_key, observed, threshold,
         window_ms, flagged_at, evidence, _) = row
        items[referral_id].flags.append(Flag(signal, action, entity_type, entity_key,
                                             int(observed), int(threshold), int(window_ms),
                                             flagged_at, list(evidence or [])))
    describe = _EventNames(conn, [e for item in items.values() for f in item.flags
                                  for e in f.evidence_event_ids])
    for item in items.values():
        item.evidence = [_flag_in_words(item, flag, describe) for flag in item.flags]
        if not item.flags:
            item.evidence = ["held without a fraud flag on record (e.g. held by an earlier "
                             "rules version)"]
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(items.values(), key=lambda i: (i.waiting_since or far_future, i.shop_id,
                                                 i.referral_id))


class _EventNames:
    """Event ids as a person reads them: whose click, whose signup."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, event_ids: list[str]) -> None:
        self._names: dict[str, str] = {}
        if not event_ids:
            return
        for event_id, visitor, at in conn.execute(
                "SELECT event_id, visitor_id, occurred_at FROM clicks WHERE event_id = ANY(?)",
                [event_ids]).fetchall():
            self._names[event_id] = f"click by visitor {visitor} at {_when(at)}"
        for event_id, referrer, at in conn.execute(
                "SELECT event_id, referrer_id, occurred_at FROM shares WHERE event_id = ANY(?)",
                [event_ids]).fetchall():
            self._names[event_id] = f"share by {referrer} at {_when(at)}"
        for event_id, order_id, customer, amount, currency in conn.execute(
                "SELECT event_id, order_id, customer_id, amount_minor, currency FROM orders "
                "WHERE event_id = ANY(?)", [event_ids]).fetchall():
            self._names[event_id] = (f"order {order_id} by {customer} "
                                     f"({amount / 100:,.2f} {currency})")
        for event_id, referee in conn.execute(
                "SELECT signup_event_id, referee_id FROM referrals "
                "WHERE signup_event_id = ANY(?)", [event_ids]).fetchall():
            self._names[event_id] = f"signup of {referee}"

    def __call__(self, event_id: str) -> str:
        return self._names.get(event_id, f"event {event_id}")


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at is not None else "?"


def _window(ms: int) -> str:
    minutes = ms // 60_000
    if minutes % (MINUTES_PER_HOUR * HOURS_PER_DAY) == 0:
        return f"{minutes // (MINUTES_PER_HOUR * HOURS_PER_DAY)} days"
    if minutes % MINUTES_PER_HOUR == 0:
        return f"{minutes // MINUTES_PER_HOUR} h"
    return f"{minutes} min"


def _flag_in_words(item: QueueItem, flag: Flag, describe: _EventNames) -> str:
    events = "; ".join(describe(e) for e in flag.evidence_event_ids) or "none recorded"
    window = f" within {_window(flag.window_ms)}" if flag.window_ms else ""
    return (f"{flag.signal} ({flag.action}): observed {flag.observed} against a threshold of "
            f"{flag.threshold} on {flag.entity_type} {flag.entity_key}{window}, flagged "
            f"{_when(flag.flagged_at)}; events: {events}")


def queue_rows(items: list[QueueItem]) -> tuple[list[str], list[tuple[Any, ...]]]:
    header = ["shop_id", "referral_id", "referee", "referrer", "status", "held_rewards",
              "waiting_since", "signals", "evidence"]
    rows = [(
        i.shop_id, i.referral_id, i.referee_id, i.referrer_id or "-", i.status,
        ", ".join(f"{side} {amount} {currency}" for side, amount, currency in i.held_rewards)
        or "-",
        _when(i.waiting_since) if i.waiting_since else "-",
        ", ".join(sorted({f.signal for f in i.flags})) or "-",
        " | ".join(i.evidence),
    ) for i in items]
    return header, rows


# ------------------------------------------------------------------------------ commands


def _open(db: str) -> duckdb.DuckDBPyConnection:
    from refstream.reports.results import open_read_only

    return open_read_only(db)


def list_queue(db: str, fmt: str) -> int:
    """Print every referral waiting for a reviewer with its flags' evidence in words."""
    conn = _open(db)
    try:
        items = review_queue(conn)
    finally:
        conn.close()
    header, rows = queue_rows(items)
    if fmt == "table":
        print(f"{len(items)} referrals wait for a reviewer")
        for item, row in zip(items, rows, strict=True):
            print(f"\n{item.referral_id} ({item.shop_id}): referee {item.referee_id}, referrer "
                  f"{item.referrer_id or '-'}, referral {item.status}, held rewards: {row[5]}")
            for line in item.evidence:
                print(f"  - {line}")
        return 0
    print(render_rows(header, rows, fmt), end="" if fmt == "csv" else "\n")
    return 0


@dataclass(frozen=True)
class Decision:
    """What a reviewer decided about one held referral, as the command line said it."""

    action: ReviewDecision
    referral_id: str
    reviewer: str
    note: str | None = None
    at: datetime | None = None  # None: now


def decision_event(decision: Decision, shop_id: str) -> ShopReview:
    """The review event for a decision; its id is fixed by what was decided, so recording
    the same decision twice is a harmless duplicate."""
    verdict = (ReviewDecision.APPROVE if decision.action == ReviewDecision.APPROVE
               else ReviewDecision.REJECT)
    return ShopReview(event_id=f"review:{decision.referral_id}:{verdict}:{decision.reviewer}",
                      shop_id=shop_id, occurred_at=decision.at or datetime.now(UTC),
                      referral_id=decision.referral_id, decision=verdict,
                      reviewer_id=decision.reviewer, note=decision.note)


def held_referral_shop(db: str, referral_id: str) -> str:
    """The shop of a referral that waits for review in `db`; ReviewError otherwise."""
    conn = _open(db)
    try:
        items = {i.referral_id: i for i in review_queue(conn)}
        row = conn.execute("SELECT shop_id, status FROM referrals WHERE referral_id = ?",
                           [referral_id]).fetchone()
    finally:
        conn.close()
    if row is None:
        raise ReviewError(f"no referral {referral_id!r} in {db}; `refstream review list "
                          f"--db {db}` shows the ones waiting")
    if referral_id not in items:
        raise ReviewError(f"referral {referral_id} is {row[1]}, not waiting for review; "
                          "a decision on it would change nothing")
    return str(row[0])
