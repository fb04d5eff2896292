"""A referrer's own numbers, read from the analysts' published snapshot (never the writer's
database), with the same definitions as `refstream report referrers`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import duckdb

from refstream.schemas.errors import EXIT_UNAVAILABLE, RefstreamError
from refstream.schemas.status import (
    PAID,
    AttributionStatus,
    LedgerEntry,
    RewardSide,
    RewardStatusName,
    sql_literal,
)

# Referral statuses as a referrer reads them.
REFERRAL_WORDS: dict[str, str] = {
    AttributionStatus.ATTRIBUTED: "signed up; not qualified yet",
    AttributionStatus.QUALIFIED: "qualified",
    AttributionStatus.HELD: "held for review",
    AttributionStatus.REJECTED: "rejected",
    AttributionStatus.INVALID: "not counted",
}
REWARD_WORDS: dict[str, str] = {
    RewardStatusName.PENDING: "pending",
    RewardStatusName.HELD: "held for review",
    RewardStatusName.DUE: "due",
    RewardStatusName.VOIDED: "voided",
    RewardStatusName.REVERSED: "reversed",
    RewardStatusName.REJECTED: "rejected",
}
_QUALIFIED = sql_literal(AttributionStatus.QUALIFIED)
_HELD = sql_literal(AttributionStatus.HELD)
_REJECTED = sql_literal(AttributionStatus.REJECTED)
_REFERRER = sql_literal(RewardSide.REFERRER)
_DUE = sql_literal(LedgerEntry.DUE)


class SnapshotUnavailable(RefstreamError):
    """The published snapshot cannot be read (not published yet, or being replaced)."""

    exit_code: ClassVar[int] = EXIT_UNAVAILABLE


@dataclass(frozen=True)
class ReferralLine:
    signed_up: str  # no referee identity: only when, and what became of it
    status: str
    status_words: str
    reason: str | None


@dataclass(frozen=True)
class RewardLine:
    reward_id: str
    status: str
    status_words: str
    amount_minor: int
    currency: str
    kind: str
    due_at: str
    paid_at: str | None
    reason: str


@dataclass
class ReferrerStatus:
    shop_id: str
    referrer_id: str
    clicks: int = 0
    signups: int = 0
    orders: int = 0
    qualified: int = 0
    held: int = 0
    rejected: int = 0
    rewards_due: int = 0  # reward-due messages finance was told (as `report referrers`)
    referrals: list[ReferralLine] = field(default_factory=list)
    rewards: list[RewardLine] = field(default_factory=list)
    snapshot_as_of: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def read_status(snapshot: Path, shop_id: str, referrer_id: str,
                codes: list[str]) -> ReferrerStatus:
    if not snapshot.is_file():
        raise SnapshotUnavailable(
            f"no published snapshot at {snapshot} yet; the projector publishes it "
            "(`refstream projector --snapshot`), or `refstream run` writes one embedded")
    try:
        conn = duckdb.connect(str(snapshot), read_only=True)
    except duckdb.Error as exc:
        raise SnapshotUnavailable(f"cannot open the snapshot {snapshot}: {exc}") from exc
    try:
        conn.execute("SET TimeZone = 'UTC'")
        return _read(conn, shop_id, referrer_id, codes)
    finally:
        conn.close()


def _read(conn: duckdb.DuckDBPyConnection, shop_id: str, referrer_id: str,
          codes: list[str]) -> ReferrerStatus:
    status = ReferrerStatus(shop_id, referrer_id)
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    if codes:
        row = conn.execute("SELECT count(*) FROM clicks WHERE shop_id = ? AND "
                           "list_contains(?, referral_code)", [shop_id, codes]).fetchone()
        status.clicks = int(row[0]) if row else 0
    row = conn.execute(f"""
        SELECT count(*), count(*) FILTER (WHERE status = {_QUALIFIED}),
               count(*) FILTER (WHERE status = {_HELD}),
               count(*) FILTER (WHERE status = {_REJECTED})
        FROM referrals WHERE shop_id = ? AND referrer_id = ?""",
        [shop_id, referrer_id]).fetchone()
    if row:
        status.signups, status.qualified, status.held, status.rejected = map(int, row)
    row = conn.execute("""
        SELECT count(*) FROM orders o JOIN referrals r
          ON r.shop_id = o.shop_id AND r.referee_id = o.customer_id
        WHERE r.shop_id = ? AND r.referrer_id = ?""", [shop_id, referrer_id]).fetchone()
    status.orders = int(row[0]) if row else 0
    row = conn.execute(f"""
        SELECT count(*) FROM reward_ledger l
        JOIN rewards w ON w.reward_id = l.reward_id AND w.side = {_REFERRER}
        WHERE l.shop_id = ? AND l.beneficiary_id = ? AND l.entry_type = {_DUE}""",
        [shop_id, referrer_id]).fetchone()
    status.rewards_due = int(row[0]) if row else 0
    for signed_up, state, reason in conn.execute("""
            SELECT c.signed_up_at, r.status, r.reason FROM referrals r
            LEFT JOIN customers c ON c.shop_id = r.shop_id AND c.customer_id = r.referee_id
            WHERE r.shop_id = ? AND r.referrer_id = ?
            ORDER BY c.signed_up_at NULLS LAST, r.referral_id""",
            [shop_id, referrer_id]).fetchall():
        status.referrals.append(ReferralLine(_iso(signed_up) or "", state,
                                             REFERRAL_WORDS.get(state, state), reason))
    paid = ("(SELECT reward_id, paid_at FROM payouts)" if "payouts" in tables
            else "(SELECT NULL::VARCHAR AS reward_id, NULL::TIMESTAMPTZ AS paid_at LIMIT 0)")
    for (reward_id, state, amount, currency, kind, due_at, paid_at,
         reason) in conn.execute(f"""
            SELECT w.reward_id, w.status, w.amount_minor, w.currency, w.kind, w.due_at,
                   p.paid_at, w.reason
            FROM rewards w LEFT JOIN {paid} p ON p.reward_id = w.reward_id
            WHERE w.shop_id = ? AND w.beneficiary_id = ? AND w.side = {_REFERRER}
            ORDER BY w.due_at, w.reward_id""", [shop_id, referrer_id]).fetchall():
        shown, words = state, REWARD_WORDS.get(state, state)
        if state == RewardStatusName.PENDING:
            words = f"pending until {_iso(due_at)}"
        if state == RewardStatusName.DUE and paid_at is not None:
            shown, words = PAID, f"paid {_iso(paid_at)}"
        status.rewards.append(RewardLine(reward_id, shown, words, int(amount), currency, kind,
                                         _iso(due_at) or "", _iso(paid_at), reason))
    return status
