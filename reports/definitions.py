"""The analyst reports as text: KPI definitions with their benchmarks, and report SQL.

Pure (no DuckDB here): `reports/results.py` runs these statements on a read-only connection,
so every number a report prints traces back to one statement below (`refstream report explain`).

Definitions used throughout (each statement spells them out again in its own SQL):

- *customers* of a shop: every customer id the read model knows there, i.e. the union of
  `customers.customer_id` (signed up), `orders.customer_id` (ordered, including customers
  who existed before the log began), `shares.referrer_id` and `referrals.referrer_id`.
- *active referral*: a `referrals` row with status attributed, qualified or held (not
  rejected, not invalid) -- the same set `orders_attributed` joins.
- *referred customer*: the referee of an active referral.
- *referral click* (a link view): a click carrying a referral code or a campaign id.
  *Referred visitors*: distinct visitor ids with at least one referral click.
- *a referred visitor orders* when an order placed at or after their first referral click
  carries their visitor id, or was placed by the customer who signed up with that visitor id.
- *orders attributable to referral*: rows of the view `orders_attributed` with a referral
  (every order of a referred customer, first and later ones).
- *revenue*: order amounts net of the returns recorded against them, in minor units, per
  currency (amounts in different currencies are never added together).
- *referral revenue*: revenue of orders attributable to referral; *first-order referral
  revenue* counts only each referred customer's first order (`order_number = 1`), i.e.
  revenue from new referrals only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from refstream.schemas.status import (
    ACTIVE_REFERRAL_STATUSES,
    PAID,
    AttributionStatus,
    LedgerEntry,
    RewardSide,
    RewardStatusName,
    sql_list,
    sql_literal,
)

# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

# Referral and reward statuses are `schemas/status.py`'s, and so is `paid`: a due reward the
# payer's ledger recorded as paid (the payouts table). `due` is then what is owed and not yet
# paid: the liability.
LIABILITY_STATUSES: tuple[str, ...] = (
    RewardStatusName.PENDING, RewardStatusName.HELD, RewardStatusName.DUE, PAID,
    RewardStatusName.REVERSED)
# What each liability status means for the money: owed now, perhaps owed later, or settled.
LIABILITY_STANDING: dict[str, str] = {
    RewardStatusName.PENDING: "contingent", RewardStatusName.HELD: "contingent",
    RewardStatusName.DUE: "owed", PAID: "settled", RewardStatusName.REVERSED: "settled",
}

# The scope label of a row that aggregates every shop (or every shop's rows in a currency).
ALL_SHOPS = "(all shops)"

# How many referrers the top-referrers report lists.
TOP_REFERRERS_LIMIT = 20
# Cohort curves stop here: beyond a quarter the synthetic and real logs hold few visitors.
COHORT_MAX_WEEKS = 12
MS_PER_WEEK = 7 * 24 * 60 * 60 * 1000

# The optional table the finance reference consumer writes when it pays a reward. The funnel's
# "paid" step reads it when it exists; otherwise paid is reported as 0 with a note.
PAYOUTS_TABLE = "payouts"
NO_PAYOUTS_NOTE = "no payouts recorded: the paid step is 0 until finance records payouts"

STATUS_ALERT = "alert"
STATUS_BELOW_MEDIAN = "below median"
STATUS_MEDIAN = "median"
STATUS_TOP_QUARTILE = "top quartile"
STATUS_HEALTHY = "healthy"
STATUS_BELOW_HEALTHY = "below healthy"
STATUS_ABOVE_HEALTHY = "above healthy"
STATUS_INFO = "info"
STATUS_NO_DATA = "no data"

# --------------------------------------------------------------------------------------
# Benchmarks, as the scorecard in docs/benchmarks.md states them (medians / top quartile / alert)
# --------------------------------------------------------------------------------------

SHARE_RATE_MEDIAN = 0.05                      # ~5%
SHARE_RATE_TOP_QUARTILE = (0.05, 0.15)        # 5-15%, i.e. above the median
SHARE_RATE_ALERT_BELOW = 0.03                 # < 3%

REFERRAL_CONVERSION_MEDIAN = (0.03, 0.05)     # 3-5%
REFERRAL_CONVERSION_TOP_QUARTILE_FROM = 0.08  # 8%+
REFERRAL_CONVERSION_ALERT_BELOW = 0.02        # < 2%

REFERRAL_RATE_MEDIAN = 0.0235                 # ~2.35%
REFERRAL_RATE_TOP_QUARTILE_FROM = 0.20        # 20%+
REFERRAL_RATE_ALERT_BELOW = 0.01              # < 1%

CLV_PREMIUM_MEDIAN = (0.16, 0.25)             # +16-25%
CLV_PREMIUM_TOP_QUARTILE_ABOVE = 0.25         # "higher" than the median band
CLV_PREMIUM_ALERT_AT_OR_BELOW = 0.0           # <= parity

REVENUE_SHARE_MEDIAN = (0.10, 0.30)           # 10-30%
REVENUE_SHARE_TOP_QUARTILE_FROM = 0.30        # "upper end": read as the band's 30% and up
REVENUE_SHARE_ALERT_BELOW = 0.05              # < 5%

K_FACTOR_MEDIAN = (0.04, 0.45)                # 0.04-0.45
K_FACTOR_TOP_QUARTILE_ABOVE = 0.5             # > 0.5
# The scorecard says "near zero" without a figure; we read it as fewer than one new referred
# customer per hundred customers.
K_FACTOR_ALERT_BELOW = 0.01

PARTICIPATION_HEALTHY = (0.05, 0.15)          # 5-15% healthy


@dataclass(frozen=True)
class Benchmark:
    """Where a KPI value sits against the scorecard's median, top quartile and alert figures.

    Checked in this order: alert, below median (under the median band), top quartile,
    otherwise median (inside the median band or between it and the top quartile).
    """

    summary: str
    median_low: float
    median_high: float
    top_quartile_from: float
    top_quartile_inclusive: bool
    alert_limit: float
    alert_inclusive: bool

    def status(self, value: float | None) -> str:
        if value is None:
            return STATUS_NO_DATA
        if value < self.alert_limit or (self.alert_inclusive and value == self.alert_limit):
            return STATUS_ALERT
        if value < self.median_low:
            return STATUS_BELOW_MEDIAN
        above_top = (value >= self.top_quartile_from if self.top_quartile_inclusive
                     else value > self.top_quartile_from)
        return STATUS_TOP_QUARTILE if above_top else STATUS_MEDIAN


@dataclass(frozen=True)
class HealthyBand:
    """A KPI the scorecard gives only a healthy range for (participation rate)."""

    summary: str
    low: float
    high: float

    def status(self, value: float | None) -> str:
        if value is None:
            return STATUS_NO_DATA
        if value < self.low:
            return STATUS_BELOW_HEALTHY
        if value > self.high:
            return STATUS_ABOVE_HEALTHY
        return STATUS_HEALTHY


@dataclass(frozen=True)
class Informational:
    """A figure reported without a benchmark (reach, leads, first-order revenue share)."""

    summary: str = "no benchmark in docs/benchmarks.md"

    def status(self, value: float | None) -> str:
        return STATUS_NO_DATA if value is None else STATUS_INFO


Rating = Benchmark | HealthyBand | Informational

SHARE_RATE_BENCHMARK = Benchmark(
    "median ~5%; top quartile 5-15%; alert < 3%",
    median_low=SHARE_RATE_MEDIAN, median_high=SHARE_RATE_MEDIAN,
    top_quartile_from=SHARE_RATE_TOP_QUARTILE[0], top_quartile_inclusive=False,
    alert_limit=SHARE_RATE_ALERT_BELOW, alert_inclusive=False)
REFERRAL_CONVERSION_BENCHMARK = Benchmark(
    "median 3-5%; top quartile 8%+; alert < 2%",
    median_low=REFERRAL_CONVERSION_MEDIAN[0], median_high=REFERRAL_CONVERSION_MEDIAN[1],
    top_quartile_from=REFERRAL_CONVERSION_TOP_QUARTILE_FROM, top_quartile_inclusive=True,
    alert_limit=REFERRAL_CONVERSION_ALERT_BELOW, alert_inclusive=False)
REFERRAL_RATE_BENCHMARK = Benchmark(
    "median ~2.35%; top quartile 20%+; alert < 1%",
    median_low=REFERRAL_RATE_MEDIAN, median_high=REFERRAL_RATE_MEDIAN,
    top_quartile_from=REFERRAL_RATE_TOP_QUARTILE_FROM, top_quartile_inclusive=True,
    alert_limit=REFERRAL_RATE_ALERT_BELOW, alert_inclusive=False)
CLV_PREMIUM_BENCHMARK = Benchmark(
    "median +16-25%; top quartile higher; alert at or below parity",
    median_low=CLV_PREMIUM_MEDIAN[0], median_high=CLV_PREMIUM_MEDIAN[1],
    top_quartile_from=CLV_PREMIUM_TOP_QUARTILE_ABOVE, top_quartile_inclusive=False,
    alert_limit=CLV_PREMIUM_ALERT_AT_OR_BELOW, alert_inclusive=True)
REVENUE_SHARE_BENCHMARK = Benchmark(
    "median 10-30%; top quartile the upper end (30%+); alert < 5%",
    median_low=REVENUE_SHARE_MEDIAN[0], median_high=REVENUE_SHARE_MEDIAN[1],
    top_quartile_from=REVENUE_SHARE_TOP_QUARTILE_FROM, top_quartile_inclusive=True,
    alert_limit=REVENUE_SHARE_ALERT_BELOW, alert_inclusive=False)
K_FACTOR_BENCHMARK = Benchmark(
    "median 0.04-0.45; top quartile > 0.5; alert near zero (< 0.01)",
    median_low=K_FACTOR_MEDIAN[0], median_high=K_FACTOR_MEDIAN[1],
    top_quartile_from=K_FACTOR_TOP_QUARTILE_ABOVE, top_quartile_inclusive=False,
    alert_limit=K_FACTOR_ALERT_BELOW, alert_inclusive=False)
PARTICIPATION_BAND = HealthyBand("5-15% healthy", *PARTICIPATION_HEALTHY)

# --------------------------------------------------------------------------------------
# SQL building blocks. Each statement below is complete on its own (explain prints it), so
# the blocks are pasted in as text rather than kept as views in the database.
# --------------------------------------------------------------------------------------


ACTIVE = sql_list(ACTIVE_REFERRAL_STATUSES)
# The statuses and ledger entries the statements name, as SQL literals.
_QUALIFIED = sql_literal(AttributionStatus.QUALIFIED)
_REFERRAL_HELD = sql_literal(AttributionStatus.HELD)
_REFERRAL_REJECTED = sql_literal(AttributionStatus.REJECTED)
_INVALID = sql_literal(AttributionStatus.INVALID)
_HELD_OR_REJECTED = sql_list((AttributionStatus.HELD, AttributionStatus.REJECTED))
_REWARD_HELD = sql_literal(RewardStatusName.HELD)
_REWARD_DUE = sql_literal(RewardStatusName.DUE)
_DUE = sql_literal(LedgerEntry.DUE)
_REVERSAL = sql_literal(LedgerEntry.REVERSAL)
_REFERRER_SIDE = sql_literal(RewardSide.REFERRER)
_ALL = f"'{ALL_SHOPS}'"
_ISO = "'%Y-%m-%dT%H:%M:%SZ'"  # a TIMESTAMPTZ as UTC ISO 8601 text

_CUSTOMER_BASE = """customer_base AS (
    -- customers: every customer id the read model knows in a shop
    SELECT shop_id, customer_id FROM customers
    UNION SELECT shop_id, customer_id FROM orders
    UNION SELECT shop_id, referrer_id FROM shares
    UNION SELECT shop_id, referrer_id FROM referrals WHERE referrer_id IS NOT NULL
)"""

_SHARERS = """sharers AS (
    SELECT DISTINCT shop_id, referrer_id AS customer_id FROM shares
)"""

_REFERRED_CUSTOMERS = f"""referred_customers AS (
    -- referees of active referrals (not rejected, not invalid)
    SELECT DISTINCT shop_id, referee_id AS customer_id
    FROM referrals WHERE status IN {ACTIVE}
)"""

_REFERRAL_CLICK = "(referral_code IS NOT NULL OR campaign_id IS NOT NULL)"

_REFERRED_VISITORS = f"""referral_clickers AS (
    -- visitors with at least one referral click (referral code or campaign link)
    SELECT shop_id, visitor_id, min(occurred_at) AS first_click_at
    FROM clicks WHERE {_REFERRAL_CLICK}
    GROUP BY shop_id, visitor_id
),
visitor_customers AS (
    -- the customers a visitor id is known to belong to (by an order or a signup)
    SELECT shop_id, visitor_id, customer_id FROM orders WHERE visitor_id IS NOT NULL
    UNION
    SELECT shop_id, visitor_id, customer_id FROM customers WHERE visitor_id IS NOT NULL
),
existing_customers AS (
    -- a clicker who was already a customer is tracked as a click, never as a referred
    -- visitor who could convert: a customer with no signup in the log (from before it, as
    -- the core reads them), or who signed up or ordered before the first referral click
    SELECT DISTINCT v.shop_id, v.visitor_id
    FROM referral_clickers v
    JOIN visitor_customers vc ON vc.shop_id = v.shop_id AND vc.visitor_id = v.visitor_id
    WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.shop_id = vc.shop_id
                        AND c.customer_id = vc.customer_id AND c.signed_up_at >= v.first_click_at)
       OR EXISTS (SELECT 1 FROM orders o WHERE o.shop_id = vc.shop_id
                    AND o.customer_id = vc.customer_id AND o.occurred_at < v.first_click_at)
),
referred_visitors AS (
    -- referred visitors: referral clickers who were not customers yet
    SELECT v.* FROM referral_clickers v
    WHERE NOT EXISTS (SELECT 1 FROM existing_customers e
                      WHERE e.shop_id = v.shop_id AND e.visitor_id = v.visitor_id)
),
visitor_orders AS (
    -- an order belongs to a visitor when it carries the visitor id, or when its customer
    -- signed up with that visitor id
    SELECT shop_id, visitor_id, occurred_at FROM orders WHERE visitor_id IS NOT NULL
    UNION ALL
    SELECT o.shop_id, c.visitor_id, o.occurred_at
    FROM orders o
    JOIN customers c ON c.shop_id = o.shop_id AND c.customer_id = o.customer_id
    WHERE c.visitor_id IS NOT NULL
),
converted_visitors AS (
    -- a referred visitor converts with their first order at or after their first click
    SELECT v.shop_id, v.visitor_id, min(o.occurred_at) AS first_order_at
    FROM referred_visitors v
    JOIN visitor_orders o
      ON o.shop_id = v.shop_id AND o.visitor_id = v.visitor_id
     AND o.occurred_at >= v.first_click_at
    GROUP BY v.shop_id, v.visitor_id
)"""

_ORDER_NET = """returned AS (
    SELECT shop_id, order_id, sum(amount_minor) AS returned_minor
    FROM returns GROUP BY shop_id, order_id
),
order_net AS (
    -- revenue: order amount net of the returns recorded against it
    SELECT o.shop_id, o.order_id, o.customer_id, o.currency,
           o.amount_minor - coalesce(r.returned_minor, 0) AS net_minor
    FROM orders o
    LEFT JOIN returned r ON r.shop_id = o.shop_id AND r.order_id = o.order_id
)"""

_REFERRAL_ORDERS = """referral_orders AS (
    -- orders attributable to referral: the view joins active referrals only
    SELECT shop_id, order_id, min(order_number) AS order_number
    FROM orders_attributed
    WHERE referral_id IS NOT NULL
    GROUP BY shop_id, order_id
)"""


def _scope(column: str = "shop_id") -> str:
    """The scope label: the shop, or ALL_SHOPS on the grand-total grouping set."""
    return f"CASE WHEN grouping({column}) = 1 THEN {_ALL} ELSE {column} END"


def _ratio_select(extra: str = "", currency: str = "NULL::VARCHAR") -> str:
    extra_sql = f",\n       {extra}" if extra else ""
    return (f"SELECT shop_id, {currency} AS currency, numerator, denominator,\n"
            f"       CAST(numerator AS DOUBLE) / NULLIF(denominator, 0) AS value{extra_sql}\n"
            "FROM totals\n"
            f"ORDER BY shop_id = {_ALL} DESC, shop_id, currency")


# --------------------------------------------------------------------------------------
# KPIs: every statement returns shop_id (ALL_SHOPS for the total), currency (NULL unless
# money), numerator, denominator, value, then optional detail columns.
# --------------------------------------------------------------------------------------

Unit = Literal["percent", "premium", "coefficient", "count"]
Operand = Literal["count", "money", "none"]


@dataclass(frozen=True)
class Kpi:
    """One scorecard figure: what it means, how it is computed, what it is rated against."""

    name: str
    title: str
    definition: str
    numerator: str
    denominator: str
    unit: Unit
    operand: Operand
    sql: str
    rating: Rating


SHARE_RATE_SQL = f"""WITH {_CUSTOMER_BASE},
{_SHARERS},
totals AS (
    SELECT {_scope("b.shop_id")} AS shop_id,
           count(s.customer_id) AS numerator,
           count(*) AS denominator
    FROM customer_base b
    LEFT JOIN sharers s ON s.shop_id = b.shop_id AND s.customer_id = b.customer_id
    GROUP BY GROUPING SETS ((b.shop_id), ())
)
{_ratio_select()}"""

REFERRAL_CONVERSION_SQL = f"""WITH {_REFERRED_VISITORS},
totals AS (
    SELECT {_scope("v.shop_id")} AS shop_id,
           count(c.visitor_id) AS numerator,
           count(*) AS denominator
    FROM referred_visitors v
    LEFT JOIN converted_visitors c ON c.shop_id = v.shop_id AND c.visitor_id = v.visitor_id
    GROUP BY GROUPING SETS ((v.shop_id), ())
)
{_ratio_select()}"""

REFERRAL_RATE_SQL = f"""WITH {_REFERRAL_ORDERS},
totals AS (
    SELECT {_scope("o.shop_id")} AS shop_id,
           count(a.order_id) AS numerator,
           count(*) AS denominator,
           count(a.order_id) FILTER (WHERE a.order_number = 1) AS first_orders
    FROM orders o
    LEFT JOIN referral_orders a ON a.shop_id = o.shop_id AND a.order_id = o.order_id
    GROUP BY GROUPING SETS ((o.shop_id), ())
)
{_ratio_select("first_orders")}"""


def _revenue_share_sql(first_order_only: bool) -> str:
    which = ("a.order_number = 1" if first_order_only else "a.order_id IS NOT NULL")
    return f"""WITH {_ORDER_NET},
{_REFERRAL_ORDERS},
totals AS (
    SELECT {_scope("n.shop_id")} AS shop_id, n.currency,
           coalesce(sum(n.net_minor) FILTER (WHERE {which}), 0) AS numerator,
           sum(n.net_minor) AS denominator,
           count(*) FILTER (WHERE {which}) AS referral_orders,
           count(*) AS orders
    FROM order_net n
    LEFT JOIN referral_orders a ON a.shop_id = n.shop_id AND a.order_id = n.order_id
    GROUP BY GROUPING SETS ((n.shop_id, n.currency), (n.currency))
)
{_ratio_select("referral_orders, orders", currency="currency")}"""


REVENUE_SHARE_SQL = _revenue_share_sql(first_order_only=False)
REVENUE_SHARE_FIRST_ORDER_SQL = _revenue_share_sql(first_order_only=True)

CLV_PREMIUM_SQL = f"""WITH {_ORDER_NET},
{_REFERRED_CUSTOMERS},
customer_value AS (
    -- value of a buying customer: their revenue over the whole log, per currency
    SELECT shop_id, customer_id, currency, sum(net_minor) AS value_minor
    FROM order_net GROUP BY shop_id, customer_id, currency
),
totals AS (
    SELECT {_scope("v.shop_id")} AS shop_id, v.currency,
           count(r.customer_id) AS referred_buyers,
           coalesce(sum(v.value_minor) FILTER (WHERE r.customer_id IS NOT NULL), 0)
               AS referred_revenue_minor,
           count(*) FILTER (WHERE r.customer_id IS NULL) AS other_buyers,
           coalesce(sum(v.value_minor) FILTER (WHERE r.customer_id IS NULL), 0)
               AS other_revenue_minor
    FROM customer_value v
    LEFT JOIN referred_customers r ON r.shop_id = v.shop_id AND r.customer_id = v.customer_id
    GROUP BY GROUPING SETS ((v.shop_id, v.currency), (v.currency))
),
averages AS (
    SELECT *,
           CAST(referred_revenue_minor AS DOUBLE) / NULLIF(referred_buyers, 0) AS numerator,
           CAST(other_revenue_minor AS DOUBLE) / NULLIF(other_buyers, 0) AS denominator
    FROM totals
)
SELECT shop_id, currency, numerator, denominator,
       numerator / NULLIF(denominator, 0) - 1 AS value,
       referred_buyers, referred_revenue_minor, other_buyers, other_revenue_minor
FROM averages
ORDER BY shop_id = {_ALL} DESC, shop_id, currency"""

K_FACTOR_SQL = f"""WITH {_CUSTOMER_BASE},
per_shop AS (
    SELECT b.shop_id, count(*) AS customers,
           (SELECT count(*) FROM shares s WHERE s.shop_id = b.shop_id) AS invites,
           -- invites that converted: new customers referred by a customer (active referral)
           (SELECT count(DISTINCT r.referee_id) FROM referrals r
             WHERE r.shop_id = b.shop_id AND r.status IN {ACTIVE}
               AND r.referrer_id IS NOT NULL) AS referred
    FROM customer_base b GROUP BY b.shop_id
),
totals AS (
    SELECT {_scope()} AS shop_id, coalesce(sum(customers), 0) AS customers,
           coalesce(sum(invites), 0) AS invites, coalesce(sum(referred), 0) AS referred
    FROM per_shop GROUP BY GROUPING SETS ((shop_id), ())
),
factors AS (
    SELECT *,
           CAST(invites AS DOUBLE) / NULLIF(customers, 0) AS invites_per_customer,
           CAST(referred AS DOUBLE) / NULLIF(invites, 0) AS invite_conversion
    FROM totals
)
SELECT shop_id, NULL::VARCHAR AS currency, referred AS numerator, customers AS denominator,
       invites_per_customer * invite_conversion AS value,
       invites, invites_per_customer, invite_conversion
FROM factors
ORDER BY shop_id = {_ALL} DESC, shop_id, currency"""

PARTICIPATION_RATE_SQL = f"""WITH {_CUSTOMER_BASE},
{_SHARERS},
{_REFERRED_CUSTOMERS},
totals AS (
    SELECT {_scope("b.shop_id")} AS shop_id,
           count(*) FILTER (WHERE s.customer_id IS NOT NULL OR r.customer_id IS NOT NULL)
               AS numerator,
           count(*) AS denominator,
           count(s.customer_id) AS sharers,
           count(r.customer_id) AS referred_customers
    FROM customer_base b
    LEFT JOIN sharers s ON s.shop_id = b.shop_id AND s.customer_id = b.customer_id
    LEFT JOIN referred_customers r ON r.shop_id = b.shop_id AND r.customer_id = b.customer_id
    GROUP BY GROUPING SETS ((b.shop_id), ())
)
{_ratio_select("sharers, referred_customers")}"""

REACH_SQL = f"""WITH per_shop AS (
    SELECT shop_id, count(*) AS link_views, count(DISTINCT visitor_id) AS visitors
    FROM clicks WHERE {_REFERRAL_CLICK}
    GROUP BY shop_id
),
totals AS (
    SELECT {_scope()} AS shop_id, coalesce(sum(link_views), 0) AS link_views,
           coalesce(sum(visitors), 0) AS visitors
    FROM per_shop GROUP BY GROUPING SETS ((shop_id), ())
)
SELECT shop_id, NULL::VARCHAR AS currency, link_views AS numerator,
       NULL::BIGINT AS denominator, CAST(link_views AS DOUBLE) AS value,
       visitors AS referred_visitors
FROM totals
ORDER BY shop_id = {_ALL} DESC, shop_id, currency"""

LEADS_SQL = f"""WITH totals AS (
    SELECT {_scope()} AS shop_id,
           count(*) FILTER (WHERE status IN {ACTIVE}) AS leads,
           count(*) FILTER (WHERE status = {_REFERRAL_REJECTED}) AS rejected,
           count(*) FILTER (WHERE status = {_INVALID}) AS invalid
    FROM referrals GROUP BY GROUPING SETS ((shop_id), ())
)
SELECT shop_id, NULL::VARCHAR AS currency, leads AS numerator,
       NULL::BIGINT AS denominator, CAST(leads AS DOUBLE) AS value, rejected, invalid
FROM totals
ORDER BY shop_id = {_ALL} DESC, shop_id, currency"""

SHARE_RATE = Kpi(
    "share-rate", "Share rate",
    "customers who shared at least once / customers",
    "customers with at least one share (distinct shares.referrer_id)",
    "customers (signed up, ordered, shared or referred someone)",
    "percent", "count", SHARE_RATE_SQL, SHARE_RATE_BENCHMARK)
REFERRAL_CONVERSION = Kpi(
    "referral-conversion", "Referral conversion",
    "referred visitors who order / referred visitors (new customers only)",
    "referred visitors with an order at or after their first referral click",
    "referred visitors (distinct visitors with a referral-code or campaign click who were "
    "not customers yet: they sign up in the log at or after that click, with no order before "
    "it)",
    "percent", "count", REFERRAL_CONVERSION_SQL, REFERRAL_CONVERSION_BENCHMARK)
REFERRAL_RATE = Kpi(
    "referral-rate", "Referral rate",
    "orders attributable to referral / all orders",
    "orders of referred customers (orders_attributed with an active referral)",
    "all orders",
    "percent", "count", REFERRAL_RATE_SQL, REFERRAL_RATE_BENCHMARK)
CLV_PREMIUM = Kpi(
    "clv-premium", "CLV premium",
    "average revenue per referred buying customer / per other buying customer - 1",
    "average net revenue of a referred customer with at least one order",
    "average net revenue of a non-referred customer with at least one order",
    "premium", "money", CLV_PREMIUM_SQL, CLV_PREMIUM_BENCHMARK)
REVENUE_SHARE = Kpi(
    "revenue-share", "Revenue share",
    "referral revenue (all orders of referred customers) / store revenue, net of returns",
    "net revenue of orders attributable to referral (first and later orders)",
    "net revenue of all orders",
    "percent", "money", REVENUE_SHARE_SQL, REVENUE_SHARE_BENCHMARK)
REVENUE_SHARE_FIRST_ORDER = Kpi(
    "revenue-share-first-order", "Revenue share, new referrals only",
    "first orders of referred customers / store revenue, net of returns",
    "net revenue of referred customers' first orders",
    "net revenue of all orders",
    "percent", "money", REVENUE_SHARE_FIRST_ORDER_SQL, Informational())
K_FACTOR = Kpi(
    "k-factor", "K-factor",
    "invites per customer x invite conversion (invites = shares)",
    "customers referred by a customer (active referrals with a referrer)",
    "customers; value = (shares / customers) x (referred / shares)",
    "coefficient", "count", K_FACTOR_SQL, K_FACTOR_BENCHMARK)
PARTICIPATION_RATE = Kpi(
    "participation-rate", "Participation rate",
    "customers who shared or were referred / customers",
    "customers who shared at least once or are referees of an active referral",
    "customers (signed up, ordered, shared or referred someone)",
    "percent", "count", PARTICIPATION_RATE_SQL, PARTICIPATION_BAND)
REACH = Kpi(
    "reach", "Reach (link views)",
    "referral clicks: clicks carrying a referral code or campaign id",
    "referral clicks", "(none: a count)",
    "count", "count", REACH_SQL, Informational())
LEADS = Kpi(
    "leads", "Leads generated",
    "referred signups: referrals with status attributed, qualified or held",
    "active referrals", "(none: a count)",
    "count", "count", LEADS_SQL, Informational())

# The scorecard in the order it is printed: the six headline KPIs, then the supporting figures.
SCORECARD: tuple[Kpi, ...] = (
    SHARE_RATE, REFERRAL_CONVERSION, REFERRAL_RATE, CLV_PREMIUM, REVENUE_SHARE, K_FACTOR,
    PARTICIPATION_RATE, REACH, LEADS, REVENUE_SHARE_FIRST_ORDER,
)
KPIS: dict[str, Kpi] = {kpi.name: kpi for kpi in SCORECARD}

# --------------------------------------------------------------------------------------
# Reports other than the scorecard
# --------------------------------------------------------------------------------------

# "measure" and "operand" are the scorecard's value and numerator/denominator columns: their
# unit varies by row and is read from the row's `unit` / `operand` column.
ColumnKind = Literal["text", "count", "money", "percent", "ratio", "list", "flag", "measure",
                     "operand"]


@dataclass(frozen=True)
class Column:
    """How a report column is read: money columns name the column holding their currency."""

    name: str
    kind: ColumnKind
    currency_column: str | None = None


@dataclass(frozen=True)
class ReportSpec:
    name: str
    title: str
    description: str
    sql: str
    columns: tuple[Column, ...]
    # A variant used when the payouts table holds payments (funnel and liability).
    sql_with_payouts: str | None = None

    def sql_for(self, payouts_present: bool) -> str:
        if payouts_present and self.sql_with_payouts is not None:
            return self.sql_with_payouts
        return self.sql


FUNNEL_STEPS: tuple[tuple[str, str], ...] = (
    ("share", "share events (invites sent)"),
    ("click", "referral clicks (link views)"),
    ("signup", "referred signups: referrals not invalid (any status but invalid)"),
    ("first order", "referred signups whose referee placed an order"),
    ("qualified", "referrals with status qualified"),
    ("due", "referrals with a reward-due message in reward_ledger"),
    ("paid", "referrals with a reward in payouts"),
)
_PAID_FROM_PAYOUTS = f"""
    UNION ALL
    SELECT w.shop_id, 7, w.referral_id FROM {PAYOUTS_TABLE} p
    JOIN rewards w ON w.reward_id = p.reward_id"""


def _funnel_sql(with_payouts: bool) -> str:
    steps = ", ".join(f"({i}, '{name}')" for i, (name, _) in enumerate(FUNNEL_STEPS, 1))
    paid = _PAID_FROM_PAYOUTS if with_payouts else ""
    return f"""WITH steps(step_no, step) AS (VALUES {steps}),
entities AS (
    -- one row per (shop, step, entity); entities are unique within a shop
    SELECT shop_id, 1 AS step_no, event_id AS entity FROM shares
    UNION ALL
    SELECT shop_id, 2, event_id FROM clicks WHERE {_REFERRAL_CLICK}
    UNION ALL
    SELECT shop_id, 3, referral_id FROM referrals WHERE status <> {_INVALID}
    UNION ALL
    SELECT r.shop_id, 4, r.referral_id FROM referrals r
    WHERE r.status <> {_INVALID}
      AND EXISTS (SELECT 1 FROM orders o
                  WHERE o.shop_id = r.shop_id AND o.customer_id = r.referee_id)
    UNION ALL
    SELECT shop_id, 5, referral_id FROM referrals WHERE status = {_QUALIFIED}
    UNION ALL
    SELECT w.shop_id, 6, w.referral_id FROM reward_ledger l
    JOIN rewards w ON w.reward_id = l.reward_id
    WHERE l.entry_type = {_DUE}{paid}
),
shops AS (SELECT DISTINCT shop_id FROM entities),
per_shop AS (
    SELECT s.shop_id, st.step_no, st.step, count(DISTINCT e.entity) AS entities
    FROM shops s CROSS JOIN steps st
    LEFT JOIN entities e ON e.shop_id = s.shop_id AND e.step_no = st.step_no
    GROUP BY s.shop_id, st.step_no, st.step
),
counts AS (
    SELECT {_scope()} AS shop_id, step_no, step, sum(entities) AS count
    FROM per_shop GROUP BY GROUPING SETS ((shop_id, step_no, step), (step_no, step))
    UNION ALL
    -- an empty read model still shows every step, at zero
    SELECT {_ALL}, step_no, step, 0 FROM steps WHERE NOT EXISTS (SELECT 1 FROM shops)
),
flow AS (
    SELECT *, lag(count) OVER (PARTITION BY shop_id ORDER BY step_no) AS previous
    FROM counts
)
SELECT shop_id, step_no, step, count,
       CAST(count AS DOUBLE) / NULLIF(previous, 0) AS from_previous,
       -- no drop-off where a step grows: a share brings several clicks
       CASE WHEN count <= previous THEN 1 - CAST(count AS DOUBLE) / NULLIF(previous, 0)
       END AS drop_off
FROM flow
ORDER BY shop_id = {_ALL} DESC, shop_id, step_no"""


FUNNEL = ReportSpec(
    "funnel", "Referral funnel",
    "share -> click -> signup -> first order -> qualified -> due -> paid, per shop and in "
    "total; from_previous = count / previous step's count, drop_off = 1 - from_previous "
    "(a share can bring several clicks, so the first ratio can exceed 1; a step that "
    "grows has no drop_off)",
    _funnel_sql(with_payouts=False),
    (Column("shop_id", "text"), Column("step_no", "count"), Column("step", "text"),
     Column("count", "count"), Column("from_previous", "percent"),
     Column("drop_off", "percent")),
    sql_with_payouts=_funnel_sql(with_payouts=True),
)

COHORTS = ReportSpec(
    "cohorts", "Cohorts by ISO week of first referral click",
    "referred visitors grouped by the ISO week (UTC) of their first referral click, per "
    "shop and for all shops; "
    "converted = visitors whose first order came within weeks_since_first_click full weeks "
    "(cumulative); complete = every visitor of the cohort has been observed that long",
    f"""WITH {_REFERRED_VISITORS},
visitors AS (
    SELECT v.shop_id, v.visitor_id,
           strftime(timezone('UTC', v.first_click_at), '%G-W%V') AS cohort_week,
           date_trunc('week', timezone('UTC', v.first_click_at)) AS cohort_start,
           floor((epoch_ms(c.first_order_at) - epoch_ms(v.first_click_at)) / {MS_PER_WEEK})
               AS weeks_to_order
    FROM referred_visitors v
    LEFT JOIN converted_visitors c ON c.shop_id = v.shop_id AND c.visitor_id = v.visitor_id
),
log_end AS (
    -- the newest event time in the read model: how far every cohort has been observed
    SELECT timezone('UTC', max(t)) AS end_at FROM (
        SELECT max(occurred_at) AS t FROM clicks
        UNION ALL SELECT max(occurred_at) FROM orders
        UNION ALL SELECT max(signed_up_at) FROM customers
        UNION ALL SELECT max(occurred_at) FROM shares
        UNION ALL SELECT max(occurred_at) FROM returns
    )
),
cohorts AS (
    SELECT {_scope()} AS shop_id, cohort_week, cohort_start, count(*) AS visitors
    FROM visitors
    GROUP BY GROUPING SETS ((shop_id, cohort_week, cohort_start), (cohort_week, cohort_start))
),
grid AS (
    SELECT c.shop_id, c.cohort_week, c.cohort_start, c.visitors,
           k.week AS weeks_since_first_click
    FROM cohorts c, log_end e,
         range(0, {COHORT_MAX_WEEKS} + 1) AS k(week)
    WHERE c.cohort_start + to_weeks(CAST(k.week AS INTEGER)) <= e.end_at
),
conversions AS (
    SELECT {_scope()} AS shop_id, cohort_week, weeks_to_order, count(*) AS visitors
    FROM visitors WHERE weeks_to_order IS NOT NULL
    GROUP BY GROUPING SETS ((shop_id, cohort_week, weeks_to_order),
                            (cohort_week, weeks_to_order))
),
curve AS (
    SELECT g.*,
           coalesce((SELECT sum(c.visitors) FROM conversions c
                      WHERE c.shop_id = g.shop_id AND c.cohort_week = g.cohort_week
                        AND c.weeks_to_order <= g.weeks_since_first_click), 0) AS converted
    FROM grid g
)
SELECT u.shop_id, u.cohort_week, u.weeks_since_first_click, u.visitors, u.converted,
       CAST(u.converted AS DOUBLE) / u.visitors AS conversion,
       -- first clicks span the cohort's week, conversions count within k + 1 weeks
       u.cohort_start + to_weeks(CAST(u.weeks_since_first_click + 2 AS INTEGER)) <= e.end_at
           AS complete
FROM curve u, log_end e
ORDER BY u.shop_id = {_ALL} DESC, u.shop_id, u.cohort_week, u.weeks_since_first_click""",
    (Column("shop_id", "text"), Column("cohort_week", "text"),
     Column("weeks_since_first_click", "count"), Column("visitors", "count"),
     Column("converted", "count"), Column("conversion", "percent"),
     Column("complete", "flag")),
)

CAMPAIGNS = ReportSpec(
    "campaigns", "Revenue per campaign",
    "referred customers and their net revenue per campaign (active referrals; "
    "'(no campaign)' for referrals without one): first orders only (new referrals) and "
    "including their later orders",
    f"""WITH {_ORDER_NET},
referral_orders AS (
    SELECT DISTINCT shop_id, order_id, referral_id, campaign_id, order_number
    FROM orders_attributed WHERE referral_id IS NOT NULL
),
referred AS (
    SELECT shop_id, coalesce(campaign_id, '(no campaign)') AS campaign_id,
           count(*) AS referrals
    FROM referrals WHERE status IN {ACTIVE}
    GROUP BY ALL
),
revenue AS (
    SELECT a.shop_id, coalesce(a.campaign_id, '(no campaign)') AS campaign_id, n.currency,
           count(DISTINCT a.referral_id) AS buyers,
           count(*) AS orders,
           sum(n.net_minor) FILTER (WHERE a.order_number = 1) AS first_order_minor,
           sum(n.net_minor) AS all_orders_minor
    FROM referral_orders a
    JOIN order_net n ON n.shop_id = a.shop_id AND n.order_id = a.order_id
    GROUP BY ALL
)
SELECT r.shop_id, r.campaign_id, c.campaign_type, r.referrals,
       coalesce(v.buyers, 0) AS buyers, coalesce(v.orders, 0) AS orders, v.currency,
       coalesce(v.first_order_minor, 0) AS first_order_minor,
       coalesce(v.all_orders_minor, 0) AS all_orders_minor,
       coalesce(v.all_orders_minor, 0) - coalesce(v.first_order_minor, 0) AS later_orders_minor
FROM referred r
LEFT JOIN revenue v ON v.shop_id = r.shop_id AND v.campaign_id = r.campaign_id
LEFT JOIN campaigns c ON c.campaign_id = r.campaign_id
ORDER BY r.shop_id, all_orders_minor DESC, r.campaign_id, v.currency""",
    (Column("shop_id", "text"), Column("campaign_id", "text"),
     Column("campaign_type", "text"), Column("referrals", "count"),
     Column("buyers", "count"), Column("orders", "count"), Column("currency", "text"),
     Column("first_order_minor", "money", "currency"),
     Column("all_orders_minor", "money", "currency"),
     Column("later_orders_minor", "money", "currency")),
)

REFERRERS = ReportSpec(
    "referrers", f"Top {TOP_REFERRERS_LIMIT} referrers",
    "referrers ranked by successful (qualified) referrals, then by reward-due messages; "
    "amounts are what finance was told for referrer-side rewards (due minus reversals), "
    "one row per currency",
    f"""WITH referral_counts AS (
    SELECT shop_id, referrer_id,
           count(*) FILTER (WHERE status = {_QUALIFIED}) AS successful,
           count(*) FILTER (WHERE status IN {ACTIVE}) AS active,
           count(*) FILTER (WHERE status = {_REFERRAL_HELD}) AS held,
           count(*) FILTER (WHERE status = {_REFERRAL_REJECTED}) AS rejected
    FROM referrals WHERE referrer_id IS NOT NULL
    GROUP BY shop_id, referrer_id
),
amounts AS (
    SELECT l.shop_id, l.beneficiary_id AS referrer_id, l.currency,
           count(*) FILTER (WHERE l.entry_type = {_DUE}) AS rewards_due,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.entry_type = {_DUE}), 0) AS due_minor,
           -- reversal entries are negative; the column shows the amount clawed back
           coalesce(-sum(l.amount_minor) FILTER (WHERE l.entry_type = {_REVERSAL}), 0)
               AS reversed_minor,
           sum(l.amount_minor) AS net_due_minor
    FROM reward_ledger l
    JOIN rewards w ON w.reward_id = l.reward_id AND w.side = {_REFERRER_SIDE}
    GROUP BY ALL
),
ranked AS (
    -- the limit counts referrers, not rows: a referrer paid in two currencies has two rows
    SELECT c.*,
           (SELECT coalesce(sum(a.rewards_due), 0) FROM amounts a
             WHERE a.shop_id = c.shop_id AND a.referrer_id = c.referrer_id) AS rewards_due
    FROM referral_counts c
    WHERE c.active > 0 OR EXISTS (SELECT 1 FROM amounts a WHERE a.shop_id = c.shop_id
                                                       AND a.referrer_id = c.referrer_id)
    ORDER BY c.successful DESC, rewards_due DESC, c.active DESC, c.shop_id, c.referrer_id
    LIMIT {TOP_REFERRERS_LIMIT}
)
SELECT r.shop_id, r.referrer_id, r.successful, r.active, r.held, r.rejected, r.rewards_due,
       a.currency, a.due_minor, a.reversed_minor, a.net_due_minor
FROM ranked r
LEFT JOIN amounts a ON a.shop_id = r.shop_id AND a.referrer_id = r.referrer_id
ORDER BY r.successful DESC, r.rewards_due DESC, r.active DESC, r.shop_id, r.referrer_id,
         a.currency""",
    (Column("shop_id", "text"), Column("referrer_id", "text"), Column("successful", "count"),
     Column("active", "count"), Column("held", "count"), Column("rejected", "count"),
     Column("rewards_due", "count"), Column("currency", "text"),
     Column("due_minor", "money", "currency"),
     Column("reversed_minor", "money", "currency"),
     Column("net_due_minor", "money", "currency")),
)

# The flags a waiting referral waits on: the flag names it, its hold reason names the flag,
# or the flag's evidence holds its signup or its qualifying order (a burst, a ring). Joins
# `fraud_flags f` (and `orders o`) to `r`, a row of referrals; the review queue uses it too.
FLAGS_OF_REFERRAL = """LEFT JOIN orders o
        ON o.shop_id = r.shop_id AND o.order_id = r.qualifying_order_id
    JOIN fraud_flags f ON f.shop_id = r.shop_id AND (
         f.referral_id = r.referral_id
         OR contains(r.reason, f.flag_id)
         OR list_contains(f.evidence_event_ids, r.signup_event_id)
         OR list_contains(f.evidence_event_ids, o.event_id))"""

_WAITING_FLAGS = f"""waiting AS (
    SELECT r.* FROM referrals r
    WHERE r.status = {_REFERRAL_HELD}
       OR EXISTS (SELECT 1 FROM rewards w
                  WHERE w.referral_id = r.referral_id AND w.status = {_REWARD_HELD})
),
waiting_flags AS (
    SELECT DISTINCT r.referral_id, f.flag_id, f.signal, f.flagged_at, f.evidence_event_ids
    FROM waiting r
    """ + FLAGS_OF_REFERRAL + """
)"""

FRAUD_QUEUE = ReportSpec(
    "fraud-queue", "Fraud review queue",
    "every referral waiting for a reviewer (held, or with a held reward), once, oldest "
    "flag first: referee, referrer, the signals it waits on and the events behind them; "
    "`refstream review list` gives the evidence in words and `review approve|reject` decides",
    f"""WITH {_WAITING_FLAGS}
SELECT r.shop_id, r.referral_id, r.referee_id, r.referrer_id, r.status,
       strftime(timezone('UTC', min(f.flagged_at)), {_ISO}) AS waiting_since,
       count(DISTINCT f.flag_id) AS flags,
       list_sort(list_distinct(list(f.signal) FILTER (WHERE f.signal IS NOT NULL)))
           AS signals,
       list_sort(list_distinct(flatten(list(f.evidence_event_ids)
                                       FILTER (WHERE f.evidence_event_ids IS NOT NULL))))
           AS evidence_event_ids
FROM waiting r
LEFT JOIN waiting_flags f ON f.referral_id = r.referral_id
GROUP BY r.shop_id, r.referral_id, r.referee_id, r.referrer_id, r.status
ORDER BY min(f.flagged_at) NULLS LAST, r.shop_id, r.referral_id""",
    (Column("shop_id", "text"), Column("referral_id", "text"), Column("referee_id", "text"),
     Column("referrer_id", "text"), Column("status", "text"),
     Column("waiting_since", "text"), Column("flags", "count"), Column("signals", "list"),
     Column("evidence_event_ids", "list")),
)

def _liability_sql(with_payouts: bool) -> str:
    statuses = ", ".join(f"({i}, '{s}', '{LIABILITY_STANDING[s]}')"
                         for i, s in enumerate(LIABILITY_STATUSES, 1))
    # A due reward the payer has paid is settled; without payouts every due reward is owed.
    status = (f"CASE WHEN w.status = {_REWARD_DUE} AND p.reward_id IS NOT NULL THEN '{PAID}' "
              "ELSE w.status END" if with_payouts else "w.status")
    paid_join = (f"LEFT JOIN (SELECT DISTINCT reward_id FROM {PAYOUTS_TABLE}) p "
                 "ON p.reward_id = w.reward_id" if with_payouts else "")
    return f"""WITH statuses(status_no, status, standing) AS (VALUES {statuses}),
reward_standing AS (
    SELECT w.shop_id, w.currency, w.amount_minor, {status} AS status
    FROM rewards w {paid_join}
),
liability AS (
    SELECT {_scope("w.shop_id")} AS shop_id, s.status_no, w.status, s.standing, w.currency,
           count(*) AS rewards, sum(w.amount_minor) AS amount_minor
    FROM reward_standing w JOIN statuses s ON s.status = w.status
    GROUP BY GROUPING SETS ((w.shop_id, s.status_no, w.status, s.standing, w.currency),
                            (s.status_no, w.status, s.standing, w.currency))
)
SELECT shop_id, status, standing, currency, rewards, amount_minor
FROM liability
ORDER BY shop_id = {_ALL} DESC, shop_id, status_no, currency"""


LIABILITY = ReportSpec(
    "liability", "Reward liability",
    "rewards by current status and currency, per shop and in total: pending (waiting for "
    "the hold period) and held (fraud review) are contingent; due is owed to the "
    "beneficiary and not yet paid (the liability); paid means the payer's ledger recorded "
    "the payment (payouts table); reversed was clawed back. Sums of amount_minor per "
    "currency, never across currencies",
    _liability_sql(with_payouts=False),
    (Column("shop_id", "text"), Column("status", "text"), Column("standing", "text"),
     Column("currency", "text"), Column("rewards", "count"),
     Column("amount_minor", "money", "currency")),
    sql_with_payouts=_liability_sql(with_payouts=True),
)

DAILY = ReportSpec(
    "daily", "Referrals and rewards per day",
    "referrals by the UTC day of their latest decision (referrals.decided_at), reward-due "
    "and reversal messages by the UTC day they were sent (reward_ledger.occurred_at); "
    "days without activity are listed at zero",
    f"""WITH decided AS (
    SELECT CAST(timezone('UTC', decided_at) AS DATE) AS day, count(*) AS referrals,
           count(*) FILTER (WHERE status = {_QUALIFIED}) AS qualified,
           count(*) FILTER (WHERE status IN {_HELD_OR_REJECTED}) AS held_or_rejected
    FROM referrals GROUP BY ALL
),
ledger AS (
    SELECT CAST(timezone('UTC', occurred_at) AS DATE) AS day,
           count(*) FILTER (WHERE entry_type = {_DUE}) AS rewards_due,
           count(*) FILTER (WHERE entry_type = {_REVERSAL}) AS reversals
    FROM reward_ledger GROUP BY ALL
),
bounds AS (
    SELECT min(day) AS first_day, max(day) AS last_day
    FROM (SELECT day FROM decided UNION ALL SELECT day FROM ledger)
),
calendar AS (
    SELECT CAST(d AS DATE) AS day
    FROM bounds, range(CAST(first_day AS TIMESTAMP), CAST(last_day AS TIMESTAMP) +
                       INTERVAL 1 DAY, INTERVAL 1 DAY) AS r(d)
)
SELECT strftime(c.day, '%Y-%m-%d') AS day,
       coalesce(d.referrals, 0) AS referrals, coalesce(d.qualified, 0) AS qualified,
       coalesce(d.held_or_rejected, 0) AS held_or_rejected,
       coalesce(l.rewards_due, 0) AS rewards_due, coalesce(l.reversals, 0) AS reversals
FROM calendar c
LEFT JOIN decided d ON d.day = c.day
LEFT JOIN ledger l ON l.day = c.day
ORDER BY c.day""",
    (Column("day", "text"), Column("referrals", "count"), Column("qualified", "count"),
     Column("held_or_rejected", "count"), Column("rewards_due", "count"),
     Column("reversals", "count")),
)

LATE = ReportSpec(
    "late", "Referrals a late event may have changed",
    "events appended after their shop's watermark had passed them (the late_events table) "
    "were applied all the same, but decisions taken before they arrived did not see them; "
    "from the earliest late event's time on, a shop's decisions may differ from what the "
    "time-ordered log gives. Every referral whose latest decision or reward change came at "
    "or after that time, or that was still open then (not rejected, no reward due yet: a "
    "decision the late event would have led to may be missing) (view "
    "referrals_marked_late), with its rewards: check these, or "
    "replay the archive (events in time order) to see the time-ordered decision",
    f"""SELECT m.shop_id, m.referral_id, m.referee_id, m.referrer_id, m.referral_status,
       strftime(timezone('UTC', m.decided_at), {_ISO}) AS decided_at,
       w.reward_id, w.side, w.status AS reward_status, w.amount_minor, w.currency,
       strftime(timezone('UTC', m.late_since), {_ISO}) AS late_since,
       m.late_events AS late_events_in_shop
FROM referrals_marked_late m
LEFT JOIN rewards w ON w.referral_id = m.referral_id
ORDER BY m.shop_id, m.decided_at, m.referral_id, w.reward_id""",
    (Column("shop_id", "text"), Column("referral_id", "text"), Column("referee_id", "text"),
     Column("referrer_id", "text"), Column("referral_status", "text"),
     Column("decided_at", "text"), Column("reward_id", "text"), Column("side", "text"),
     Column("reward_status", "text"), Column("amount_minor", "money", "currency"),
     Column("currency", "text"), Column("late_since", "text"),
     Column("late_events_in_shop", "count")),
)

REPORTS: dict[str, ReportSpec] = {
    spec.name: spec
    for spec in (FUNNEL, COHORTS, CAMPAIGNS, REFERRERS, FRAUD_QUEUE, LIABILITY, DAILY, LATE)
}
