"""The analyst read model: DuckDB table definitions and the pure mapping from events to rows.

Each table has a primary key; a row is the current state of its entity (the latest derived
event wins), so re-applying the same events is an idempotent upsert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from refstream.schemas.events import (
    Attribution,
    Click,
    FraudFlag,
    LateArrival,
    OrderPlaced,
    OrderReturned,
    RewardDue,
    RewardReversal,
    RewardStatus,
    Share,
    Signup,
)
from refstream.schemas.status import (
    ACTIVE_REFERRAL_STATUSES,
    NEVER_DUE_REWARD_STATUSES,
    AttributionStatus,
    LedgerEntry,
    RewardStatusName,
    sql_list,
    sql_literal,
)

# Rows hold timestamps as epoch milliseconds; the store types them as TIMESTAMPTZ.
Row = tuple[Any, ...]

# A reward in these statuses fell due (finance was told): a fraud action no longer reaches it.
FELL_DUE_REWARD_STATUSES: tuple[RewardStatusName, ...] = (
    RewardStatusName.DUE, RewardStatusName.REVERSED)


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    # Columns DuckDB stores without compression: event ids, visitor ids and hashes, nearly
    # all distinct. Dictionary+FSST packs them only ~1.4x and was half of the time a replay
    # spends inserting the fact tables (clicks: 1.7 s -> 0.9 s for 724k rows; a replayed
    # database of 1M events 134 MB -> 180 MB). Storage only: queries see the same values.
    plain: frozenset[str] = frozenset()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def ddl(self, with_key: bool = True) -> str:
        cols = ",\n  ".join(
            f"{c} {t} USING COMPRESSION uncompressed" if c in self.plain else f"{c} {t}"
            for c, t in self.columns)
        key = f",\n  PRIMARY KEY ({', '.join(self.key)})" if with_key else ""
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}{key}\n)"

    def add_key(self) -> str:
        """The primary key for a table created `with_key=False` and filled since."""
        return f"ALTER TABLE {self.name} ADD PRIMARY KEY ({', '.join(self.key)})"


TS = "TIMESTAMPTZ"

REFERRALS = Table("referrals", (
    ("referral_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("referee_id", "VARCHAR"),
    ("referrer_id", "VARCHAR"), ("referral_code", "VARCHAR"), ("campaign_id", "VARCHAR"),
    ("touch", "VARCHAR"), ("status", "VARCHAR"), ("reason", "VARCHAR"),
    ("touch_event_id", "VARCHAR"), ("signup_event_id", "VARCHAR"),
    ("qualifying_order_id", "VARCHAR"), ("decided_at", TS), ("revision", "BIGINT"),
    ("rules_version", "VARCHAR"),
), ("referral_id",))

REWARDS = Table("rewards", (
    ("reward_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("referral_id", "VARCHAR"),
    ("beneficiary_id", "VARCHAR"), ("side", "VARCHAR"), ("kind", "VARCHAR"),
    ("amount_minor", "BIGINT"), ("currency", "VARCHAR"), ("status", "VARCHAR"),
    ("due_at", TS), ("reason", "VARCHAR"), ("order_id", "VARCHAR"), ("updated_at", TS),
    ("revision", "BIGINT"), ("rules_version", "VARCHAR"),
), ("reward_id",))

# What finance was told: one row per reward-due or reversal message (ids are deterministic).
REWARD_LEDGER = Table("reward_ledger", (
    ("entry_id", "VARCHAR"), ("entry_type", "VARCHAR"), ("reward_id", "VARCHAR"),
    ("shop_id", "VARCHAR"), ("beneficiary_id", "VARCHAR"), ("amount_minor", "BIGINT"),
    ("currency", "VARCHAR"), ("occurred_at", TS), ("reason", "VARCHAR"),
    ("rules_version", "VARCHAR"),
), ("entry_id",))

FRAUD_FLAGS = Table("fraud_flags", (
    ("flag_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("signal", "VARCHAR"),
    ("entity_type", "VARCHAR"), ("entity_key", "VARCHAR"), ("threshold", "BIGINT"),
    ("observed", "BIGINT"), ("window_ms", "BIGINT"), ("action", "VARCHAR"),
    ("evidence_event_ids", "VARCHAR[]"), ("referral_id", "VARCHAR"), ("flagged_at", TS),
    ("rules_version", "VARCHAR"),
), ("flag_id",))

SHARES = Table("shares", (
    ("event_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("occurred_at", TS),
    ("referrer_id", "VARCHAR"), ("referral_code", "VARCHAR"), ("channel", "VARCHAR"),
    ("campaign_id", "VARCHAR"),
), ("shop_id", "event_id"), frozenset({"event_id"}))

CLICKS = Table("clicks", (
    ("event_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("occurred_at", TS),
    ("visitor_id", "VARCHAR"), ("referral_code", "VARCHAR"), ("campaign_id", "VARCHAR"),
    ("utm_source", "VARCHAR"), ("utm_medium", "VARCHAR"), ("utm_campaign", "VARCHAR"),
    ("device_id", "VARCHAR"), ("ip_hash", "VARCHAR"),
), ("shop_id", "event_id"), frozenset({"event_id", "visitor_id", "device_id", "ip_hash"}))

CUSTOMERS = Table("customers", (
    ("shop_id", "VARCHAR"), ("customer_id", "VARCHAR"), ("signed_up_at", TS),
    ("visitor_id", "VARCHAR"), ("typed_code", "VARCHAR"), ("email_hash", "VARCHAR"),
    ("device_id", "VARCHAR"),
), ("shop_id", "customer_id"), frozenset({"visitor_id", "email_hash", "device_id"}))

ORDERS = Table("orders", (
    ("shop_id", "VARCHAR"), ("order_id", "VARCHAR"), ("customer_id", "VARCHAR"),
    ("occurred_at", TS), ("amount_minor", "BIGINT"), ("currency", "VARCHAR"),
    ("discount_code", "VARCHAR"), ("visitor_id", "VARCHAR"),
    # The order's event id: fraud evidence cites events, a reviewer reads order ids.
    ("event_id", "VARCHAR"),
), ("shop_id", "order_id"), frozenset({"order_id", "visitor_id", "event_id"}))

RETURNS = Table("returns", (
    ("shop_id", "VARCHAR"), ("return_id", "VARCHAR"), ("order_id", "VARCHAR"),
    ("customer_id", "VARCHAR"), ("occurred_at", TS), ("amount_minor", "BIGINT"),
    ("currency", "VARCHAR"),
), ("shop_id", "return_id"), frozenset({"return_id", "order_id"}))

# What the finance reference payer paid (each reward id once); the funnel's last step.
PAYOUTS = Table("payouts", (
    ("reward_id", "VARCHAR"), ("shop_id", "VARCHAR"), ("beneficiary_id", "VARCHAR"),
    ("amount_minor", "BIGINT"), ("currency", "VARCHAR"), ("paid_at", TS),
), ("reward_id",))

CAMPAIGNS = Table("campaigns", (
    ("campaign_id", "VARCHAR"), ("campaign_type", "VARCHAR"), ("utm_campaign", "VARCHAR"),
    ("starts_at", TS), ("ends_at", TS), ("rules_version", "VARCHAR"),
), ("campaign_id",))

# Log events appended after their shop's watermark had passed them (README "Event time"):
# applied all the same, but decisions taken before they arrived did not see them.
LATE_EVENTS = Table("late_events", (
    ("shop_id", "VARCHAR"), ("event_id", "VARCHAR"), ("event_type", "VARCHAR"),
    ("event_occurred_at", TS), ("applied_at_watermark", TS), ("lateness_ms", "BIGINT"),
    ("rules_version", "VARCHAR"),
), ("shop_id", "event_id"))

ALL_TABLES: tuple[Table, ...] = (
    REFERRALS, REWARDS, REWARD_LEDGER, FRAUD_FLAGS, SHARES, CLICKS, CUSTOMERS, ORDERS,
    RETURNS, CAMPAIGNS, PAYOUTS, LATE_EVENTS,
)

# Analysts read these instead of joining by hand; they are part of the read model.
VIEWS: tuple[tuple[str, str], ...] = (
    ("orders_attributed", f"""
        SELECT o.*,
               r.referral_id, r.referrer_id, r.campaign_id, r.status AS referral_status,
               row_number() OVER (PARTITION BY o.shop_id, o.customer_id
                                  ORDER BY o.occurred_at, o.order_id) AS order_number
        FROM orders o
        LEFT JOIN referrals r
          ON r.shop_id = o.shop_id AND r.referee_id = o.customer_id
         AND r.status IN {sql_list(ACTIVE_REFERRAL_STATUSES)}
    """),
    # README "Event time": before the earliest late event of a shop, every decision is the
    # one the time-ordered log gives; from its time on, a decision may have missed it. So a
    # referral is marked late when its latest decision or any change of its rewards came at
    # or after that time, or when it was still open then: a decision the late event would
    # have led to in time order (a fraud block through a referral its code would have made,
    # a qualification) may be missing, and a missing decision leaves no row behind. Open:
    # not rejected (only that status is final) and no reward fell due (then only a return,
    # itself a log event, reaches it). The rows of a referral with no change since that time
    # are its state then. (tests/property/test_event_time_properties.py holds the claim.)
    ("referrals_marked_late", f"""
        WITH since AS (
            SELECT shop_id, min(event_occurred_at) AS late_since, count(*) AS late_events
            FROM late_events GROUP BY shop_id
        ),
        changed AS (
            SELECT referral_id, max(updated_at) AS last_reward_change,
                   bool_or(status IN {sql_list(FELL_DUE_REWARD_STATUSES)}) AS fell_due
            FROM rewards GROUP BY referral_id
        )
        SELECT r.shop_id, r.referral_id, r.referee_id, r.referrer_id,
               r.status AS referral_status, r.decided_at, c.last_reward_change,
               s.late_since, s.late_events
        FROM referrals r
        JOIN since s ON s.shop_id = r.shop_id
        LEFT JOIN changed c ON c.referral_id = r.referral_id
        WHERE r.decided_at >= s.late_since OR c.last_reward_change >= s.late_since
           OR (r.status <> {sql_literal(AttributionStatus.REJECTED)}
               AND NOT coalesce(c.fell_due, false))
    """),
)


def _attribution(e: Attribution) -> Row:
    return (e.referral_id, e.shop_id, e.referee_id, e.referrer_id, e.referral_code,
            e.campaign_id, e.touch, e.status, e.reason, e.touch_event_id, e.signup_event_id,
            e.qualifying_order_id, e.occurred_at, e.revision, e.rules_version)


def _reward_status(e: RewardStatus) -> Row:
    # A reward that will never fall due shows no due date in the read model (the event keeps
    # the date it would have had, for the audit trail).
    due_at = None if e.status in NEVER_DUE_REWARD_STATUSES else e.due_at
    return (e.reward_id, e.shop_id, e.referral_id, e.beneficiary_id, e.side, e.kind,
            e.amount_minor, e.currency, e.status, due_at, e.reason, e.order_id,
            e.occurred_at, e.revision, e.rules_version)


def _reward_due(e: RewardDue) -> Row:
    return (e.reward_id, LedgerEntry.DUE, e.reward_id, e.shop_id, e.beneficiary_id, e.amount_minor,
            e.currency, e.occurred_at, e.reason, e.rules_version)


def _reward_reversal(e: RewardReversal) -> Row:
    return (e.reversal_id, LedgerEntry.REVERSAL, e.reward_id, e.shop_id, e.beneficiary_id,
            -e.amount_minor, e.currency, e.occurred_at, e.reason, e.rules_version)


def _fraud_flag(e: FraudFlag) -> Row:
    return (e.flag_id, e.shop_id, e.signal, e.entity_type, e.entity_key, e.threshold,
            e.observed, e.window_ms, e.action, list(e.evidence_event_ids), e.referral_id,
            e.occurred_at, e.rules_version)


def _late_arrival(e: LateArrival) -> Row:
    return (e.shop_id, e.event_id, e.late_event_type, e.event_occurred_at, e.occurred_at,
            e.lateness_ms, e.rules_version)


def _share(e: Share) -> Row:
    return (e.event_id, e.shop_id, e.occurred_at, e.referrer_id, e.referral_code,
            e.channel, e.campaign_id)


def _click(e: Click) -> Row:
    return (e.event_id, e.shop_id, e.occurred_at, e.visitor_id, e.referral_code,
            e.campaign_id, e.utm_source, e.utm_medium, e.utm_campaign, e.device_id, e.ip_hash)


def _signup(e: Signup) -> Row:
    return (e.shop_id, e.customer_id, e.occurred_at, e.visitor_id, e.referral_code,
            e.email_hash, e.device_id)


def _order(e: OrderPlaced) -> Row:
    return (e.shop_id, e.order_id, e.customer_id, e.occurred_at, e.amount_minor,
            e.currency, e.discount_code, e.visitor_id, e.event_id)


def _return(e: OrderReturned) -> Row:
    return (e.shop_id, e.return_id, e.order_id, e.customer_id, e.occurred_at,
            e.amount_minor, e.currency)


# event type -> (table, row builder). First write wins for facts from the log (a duplicate
# event id or natural key is the same fact); last write wins for derived state.
ROW_MAPPERS: dict[type[Any], tuple[Table, Callable[[Any], Row]]] = {
    Attribution: (REFERRALS, _attribution),
    RewardStatus: (REWARDS, _reward_status),
    RewardDue: (REWARD_LEDGER, _reward_due),
    RewardReversal: (REWARD_LEDGER, _reward_reversal),
    FraudFlag: (FRAUD_FLAGS, _fraud_flag),
    LateArrival: (LATE_EVENTS, _late_arrival),
    Share: (SHARES, _share),
    Click: (CLICKS, _click),
    Signup: (CUSTOMERS, _signup),
    OrderPlaced: (ORDERS, _order),
    OrderReturned: (RETURNS, _return),
}

# The fact tables as columns of the log: (event type, {table column: event field} where the
# names differ). The same rows as the mappers above build; replay inserts them set-wise from
# the archive's Parquet columns (tests/unit/replay/test_columnar_replay.py checks they agree).
FACT_COLUMNS: dict[str, tuple[str, dict[str, str]]] = {
    SHARES.name: (Share.event_type, {}),
    CLICKS.name: (Click.event_type, {}),
    CUSTOMERS.name: (Signup.event_type, {"signed_up_at": "occurred_at",
                                         "typed_code": "referral_code"}),
    ORDERS.name: (OrderPlaced.event_type, {}),
    RETURNS.name: (OrderReturned.event_type, {}),
}

FACT_TABLES = frozenset({SHARES.name, CLICKS.name, CUSTOMERS.name, ORDERS.name, RETURNS.name,
                         PAYOUTS.name})


def row_for(event: Any) -> tuple[Table, Row] | None:
    """The table and row an event updates, or None for events with no row (ticks, reviews)."""
    mapper = ROW_MAPPERS.get(type(event))
    if mapper is None:
        return None
    table, build = mapper
    return table, build(event)
