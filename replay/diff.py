"""Diffs of two projection sets (e.g. live rules vs proposed rules) and the corrections that
would settle them with finance.

Entities are matched by their deterministic ids (which do not include the rules version),
so a rule change shows up as rows added, removed or changed, and as money per referrer,
per campaign and in total.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from refstream.schemas.epoch import epoch_ms
from refstream.schemas.events import RewardDue, RewardReversal
from refstream.schemas.ids import correction_id
from refstream.schemas.status import (
    OWED_REWARD_STATUSES,
    RewardStatusName,
    sql_list,
    sql_literal,
)

# What makes two versions of an entity different for a person; stamps (rules version,
# revision, decision time) differ by construction and are not compared.
COMPARED = {
    "referrals": ("referral_id", ("status", "referrer_id", "campaign_id", "touch", "reason",
                                  "qualifying_order_id")),
    "rewards": ("reward_id", ("status", "beneficiary_id", "side", "kind", "amount_minor",
                              "currency", "due_at")),
    "fraud_flags": ("flag_id", ("signal", "entity_key", "action", "threshold", "observed")),
}
# A reward is money owed (or on its way to being owed) in these statuses.
_OWED = sql_list(OWED_REWARD_STATUSES)
_DUE = sql_literal(RewardStatusName.DUE)


@dataclass
class EntityDiff:
    table: str
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class MoneyDelta:
    dimension: str  # "referrer", "campaign" or "total"
    key: str
    currency: str
    before_minor: int
    after_minor: int

    @property
    def delta_minor(self) -> int:
        return self.after_minor - self.before_minor


@dataclass
class ProjectionDiff:
    before: str
    after: str
    before_version: str | None
    after_version: str | None
    entities: dict[str, EntityDiff]
    money: list[MoneyDelta]

    @property
    def is_empty(self) -> bool:
        return all(not (e.added or e.removed or e.changed) for e in self.entities.values())

    def summary_rows(self) -> list[tuple[str, int, int, int]]:
        return [(name, len(e.added), len(e.removed), len(e.changed))
                for name, e in self.entities.items()]


def _connect(before: Path, after: Path) -> duckdb.DuckDBPyConnection:
    for path in (before, after):
        if not path.is_file():
            raise FileNotFoundError(f"no projection database at {path}")
    conn = duckdb.connect()
    conn.execute(f"ATTACH '{before}' AS before_db (READ_ONLY)")
    conn.execute(f"ATTACH '{after}' AS after_db (READ_ONLY)")
    return conn


def _rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = conn.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _entity_diff(conn: duckdb.DuckDBPyConnection, table: str) -> EntityDiff:
    key, columns = COMPARED[table]
    cols = ", ".join(columns)
    diff = EntityDiff(table)
    diff.added = _rows(conn, f"""
        SELECT {key}, {cols} FROM after_db.{table}
        WHERE {key} NOT IN (SELECT {key} FROM before_db.{table}) ORDER BY {key}""")
    diff.removed = _rows(conn, f"""
        SELECT {key}, {cols} FROM before_db.{table}
        WHERE {key} NOT IN (SELECT {key} FROM after_db.{table}) ORDER BY {key}""")
    differs = " OR ".join(f"b.{c} IS DISTINCT FROM a.{c}" for c in columns)
    pairs = ", ".join(f"b.{c} AS before_{c}, a.{c} AS after_{c}" for c in columns)
    diff.changed = _rows(conn, f"""
        SELECT b.{key} AS {key}, {pairs}
        FROM before_db.{table} b JOIN after_db.{table} a USING ({key})
        WHERE {differs} ORDER BY {key}""")
    return diff


def _money(conn: duckdb.DuckDBPyConnection) -> list[MoneyDelta]:
    deltas: list[MoneyDelta] = []
    dimensions = {
        "referrer": "w.beneficiary_id",
        "campaign": "coalesce(r.campaign_id, '(none)')",
        "total": "'all'",
    }
    for dimension, expr in dimensions.items():
        sides = []
        for side in ("before_db", "after_db"):
            sides.append(f"""
                SELECT {expr} AS key, w.currency,
                       sum(CASE WHEN w.status IN {_OWED} THEN w.amount_minor ELSE 0 END) AS owed
                FROM {side}.rewards w LEFT JOIN {side}.referrals r USING (referral_id)
                GROUP BY ALL""")
        rows = conn.execute(f"""
            WITH b AS ({sides[0]}), a AS ({sides[1]})
            SELECT coalesce(a.key, b.key), coalesce(a.currency, b.currency),
                   coalesce(b.owed, 0)::BIGINT, coalesce(a.owed, 0)::BIGINT
            FROM b FULL OUTER JOIN a ON a.key = b.key AND a.currency = b.currency
            ORDER BY 1, 2""").fetchall()
        deltas += [MoneyDelta(dimension, str(k), str(c), int(bm), int(am))
                   for k, c, bm, am in rows if dimension == "total" or bm != am]
    return deltas


def _version(conn: duckdb.DuckDBPyConnection, db: str) -> str | None:
    row = conn.execute(
        f"SELECT max(rules_version) FROM (SELECT rules_version FROM {db}.referrals "
        f"UNION ALL SELECT rules_version FROM {db}.campaigns)").fetchone()
    return None if row is None or row[0] is None else str(row[0])


def diff_projections(before: str | Path, after: str | Path) -> ProjectionDiff:
    """What changes from the `before` projection set to the `after` one."""
    conn = _connect(Path(before), Path(after))
    try:
        return ProjectionDiff(
            str(before), str(after), _version(conn, "before_db"), _version(conn, "after_db"),
            {table: _entity_diff(conn, table) for table in COMPARED},
            _money(conn),
        )
    finally:
        conn.close()


def corrections(before: str | Path, after: str | Path, occurred_at: int | None = None
                ) -> list[RewardDue | RewardReversal]:
    """Messages for finance that turn what was due under `before` into what is due under
    `after`: reversals for due money that is no longer owed (or owed differently), new
    reward-due messages for money newly due. Ids and bytes are deterministic: the messages
    are stamped with the projections' own event time (`correction_time`), never the clock,
    so publishing the same corrections again gives finance byte-identical duplicates."""
    conn = _connect(Path(before), Path(after))
    try:
        after_version = _version(conn, "after_db") or "unknown"
        if occurred_at is None:
            occurred_at = _correction_time(conn)
        rows = _rows(conn, f"""
            SELECT coalesce(a.reward_id, b.reward_id) AS reward_id,
                   b.status AS b_status, b.amount_minor AS b_amount, b.currency AS b_currency,
                   b.beneficiary_id AS b_beneficiary,
                   a.status AS a_status, a.amount_minor AS a_amount, a.currency AS a_currency,
                   a.beneficiary_id AS a_beneficiary, a.shop_id AS a_shop, b.shop_id AS b_shop,
                   a.referral_id AS a_referral, a.side, a.kind, a.due_at, a.reason, a.order_id
            FROM before_db.rewards b FULL OUTER JOIN after_db.rewards a USING (reward_id)
            WHERE (b.status = {_DUE}) IS DISTINCT FROM (a.status = {_DUE})
               OR (b.status = {_DUE} AND a.status = {_DUE}
                   AND (b.amount_minor, b.currency, b.beneficiary_id)
                       IS DISTINCT FROM (a.amount_minor, a.currency, a.beneficiary_id))
            ORDER BY reward_id""")
    finally:
        conn.close()
    messages: list[RewardDue | RewardReversal] = []
    for row in rows:
        was_due = row["b_status"] == RewardStatusName.DUE
        is_due = row["a_status"] == RewardStatusName.DUE
        if was_due:
            messages.append(RewardReversal(
                correction_id(row["reward_id"], "reverse", after_version, row["b_amount"]),
                row["reward_id"], row["b_shop"], occurred_at, after_version,
                row["b_beneficiary"], row["b_amount"], row["b_currency"],
                f"rules change to {after_version}", None))
        if is_due:
            # Newly due under the new rules: the reward's own id if finance never saw it,
            # a correction id if it replaces a due reward that was just reversed.
            reward_id = (correction_id(row["reward_id"], "repay", after_version, row["a_amount"])
                         if was_due else row["reward_id"])
            due_at = row["due_at"]
            messages.append(RewardDue(
                reward_id, row["a_shop"], occurred_at, after_version, row["a_referral"],
                row["a_beneficiary"], row["side"], row["kind"], row["a_amount"],
                row["a_currency"], epoch_ms(due_at) if due_at else occurred_at,
                f"rules change to {after_version}: {row['reason']}", row["order_id"]))
    return messages


def _correction_time(conn: duckdb.DuckDBPyConnection) -> int:
    """The latest event time either projection set has decided a reward at (epoch ms): the
    moment the corrections settle, fixed by the data, so a rerun stamps the same time."""
    row = conn.execute("""
        SELECT max(t) FROM (SELECT max(updated_at) AS t FROM before_db.rewards
                            UNION ALL SELECT max(updated_at) FROM after_db.rewards)""").fetchone()
    latest = row[0] if row is not None else None
    return epoch_ms(latest) if latest is not None else 0
