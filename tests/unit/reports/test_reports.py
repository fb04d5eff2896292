"""Funnel, cohorts, campaigns, referrers, fraud queue, liability and daily rows of the sample log,
each checked against counts done by hand (see sample_log.py for the story of every referral).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.reports.definitions import ALL_SHOPS, NO_PAYOUTS_NOTE
from refstream.reports.results import ReportError, run_report
from tests.unit.reports.sample_log import SHOP_A, SHOP_B


def rows(conn: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    return run_report(conn, name).records()


def funnel_of(conn: duckdb.DuckDBPyConnection, shop: str) -> list[tuple[str, int]]:
    return [(r["step"], r["count"]) for r in rows(conn, "funnel") if r["shop_id"] == shop]


def test_funnel_counts_per_shop(conn: duckdb.DuckDBPyConnection) -> None:
    # Shop A: 8 shares; 36 referral clicks; 8 referred signups (all referrals but n08, which is
    # invalid); 6 with an order (n01, n02, n03, n05, n06, n11); 4 qualified (n01, n02, n03,
    # n11); 2 with a reward-due message (n01, n02); none paid.
    assert funnel_of(conn, SHOP_A) == [
        ("share", 8), ("click", 36), ("signup", 8), ("first order", 6), ("qualified", 4),
        ("due", 2), ("paid", 0)]
    assert funnel_of(conn, SHOP_B) == [
        ("share", 1), ("click", 1), ("signup", 1), ("first order", 1), ("qualified", 1),
        ("due", 1), ("paid", 0)]
    assert funnel_of(conn, ALL_SHOPS) == [
        ("share", 9), ("click", 37), ("signup", 9), ("first order", 7), ("qualified", 5),
        ("due", 3), ("paid", 0)]


def test_funnel_drop_off(conn: duckdb.DuckDBPyConnection) -> None:
    shop_a = {r["step"]: r for r in rows(conn, "funnel") if r["shop_id"] == SHOP_A}
    assert shop_a["share"]["drop_off"] is None  # no step before the first
    # 36 clicks from 8 shares: 450% of the previous step, a "drop-off" of -350%.
    assert shop_a["click"]["from_previous"] == pytest.approx(36 / 8)
    assert shop_a["click"]["drop_off"] is None  # more clicks than shares: nothing dropped
    assert shop_a["signup"]["drop_off"] == pytest.approx(1 - 8 / 36)
    assert shop_a["first order"]["drop_off"] == pytest.approx(1 - 6 / 8)  # 25%
    assert shop_a["qualified"]["drop_off"] == pytest.approx(1 - 4 / 6)
    assert shop_a["due"]["drop_off"] == pytest.approx(0.5)  # 2 of 4
    assert shop_a["paid"]["drop_off"] == pytest.approx(1.0)


def test_funnel_says_no_payouts_and_never_invents_them(conn: duckdb.DuckDBPyConnection
                                                        ) -> None:
    assert run_report(conn, "funnel").notes == [NO_PAYOUTS_NOTE]


def test_funnel_reads_payouts_when_finance_records_them(sample_db: Path) -> None:
    writer = duckdb.connect(str(sample_db))
    # The read model has the (empty) payouts table the finance payer fills.
    # Both rewards of referral n01 were paid: one referral reaches "paid".
    writer.execute("INSERT INTO payouts (reward_id, shop_id, beneficiary_id, amount_minor, "
                   "currency, paid_at) VALUES "
                   "('rw-n01-ref', 'shop-a', 'r1', 1000, 'EUR', "
                   "TIMESTAMPTZ '2026-03-20 00:00:00+00'),"
                   "('rw-n01-ree', 'shop-a', 'n01', 500, 'EUR', "
                   "TIMESTAMPTZ '2026-03-20 00:00:00+00')")
    report = run_report(writer, "funnel")
    writer.close()
    paid = {r["shop_id"]: r for r in report.records() if r["step"] == "paid"}
    assert (paid[SHOP_A]["count"], paid[SHOP_B]["count"], paid[ALL_SHOPS]["count"]) == (1, 0, 1)
    assert paid[ALL_SHOPS]["from_previous"] == pytest.approx(1 / 3)
    assert NO_PAYOUTS_NOTE not in report.notes


def test_cohort_of_week_ten_in_shop_a(conn: duckdb.DuckDBPyConnection) -> None:
    # Shop A's W10 cohort (first click 2-8 March 2026): v1..v10 and v12..v23 but v9, existing
    # customer c03 (no signup in the log: a click, not a referred visitor) = 21 visitors.
    # Orders within 0 full weeks of the first click: v1, v2, v5, v6 (4); within 1: + v3 (day 9,
    # 8 days after its click); c03's order as v9 on day 18 converts nobody.
    # The log ends 27 March (n02's return): weeks 0..3 exist; week k is complete when the
    # cohort's week plus k + 1 weeks has passed (k <= 1).
    curve = [(r["weeks_since_first_click"], r["visitors"], r["converted"], r["complete"])
             for r in rows(conn, "cohorts")
             if r["shop_id"] == SHOP_A and r["cohort_week"] == "2026-W10"]
    assert curve == [(0, 21, 4, True), (1, 21, 5, True), (2, 21, 5, False),
                     (3, 21, 5, False)]
    w11 = [(r["weeks_since_first_click"], r["visitors"], r["converted"])
           for r in rows(conn, "cohorts")
           if r["shop_id"] == SHOP_A and r["cohort_week"] == "2026-W11"]
    # W11: v11 (ordered the same day) and v24..v35 -> 1 of 13.
    assert w11 == [(0, 13, 1), (1, 13, 1), (2, 13, 1)]
    all_w10 = [r for r in rows(conn, "cohorts")
               if r["shop_id"] == ALL_SHOPS and r["cohort_week"] == "2026-W10"]
    # All shops adds shop B's vb1 (converted in week 0): 5 of 22.
    assert (all_w10[0]["visitors"], all_w10[0]["converted"]) == (22, 5)
    assert all_w10[0]["conversion"] == pytest.approx(5 / 22)


def test_campaign_revenue_first_order_and_later(conn: duckdb.DuckDBPyConnection) -> None:
    by_campaign = {(r["shop_id"], r["campaign_id"]): r for r in rows(conn, "campaigns")}
    c2c = by_campaign[(SHOP_A, "cmp-c2c")]
    # cmp-c2c: active referrals n01, n02, n03, n04, n06, n07; buyers n01, n02, n03, n06 with
    # 5 orders. First orders 100 + (80 - 80) + 60 + 40 = 200.00; later: n01's 50.00.
    assert (c2c["referrals"], c2c["buyers"], c2c["orders"], c2c["currency"]) == (
        6, 4, 5, "EUR")
    assert (c2c["first_order_minor"], c2c["all_orders_minor"],
            c2c["later_orders_minor"]) == (20_000, 25_000, 5_000)
    media = by_campaign[(SHOP_A, "cmp-media")]
    assert (media["referrals"], media["first_order_minor"], media["all_orders_minor"]) == (
        1, 2_000, 2_000)
    assert by_campaign[(SHOP_B, "(no campaign)")]["all_orders_minor"] == 5_000
    # The invalid referral's expired campaign is not a source of referred revenue.
    assert (SHOP_A, "cmp-old") not in by_campaign


def test_top_referrers(conn: duckdb.DuckDBPyConnection) -> None:
    ranked = [(r["referrer_id"], r["successful"], r["active"], r["rewards_due"], r["currency"],
               r["due_minor"], r["reversed_minor"], r["net_due_minor"])
              for r in rows(conn, "referrers")]
    # c01: n01, n02 qualified, n06 held; due 10.00 (n01) + 10.00 (n02), n02 reversed 10.00.
    # b01: 1 qualified, 20.00 SEK due. c02: n03 qualified (reward still pending), nothing
    # due, so b01 ranks above it. The referee-side reward of n01 (5.00 to n01) is not a
    # referrer amount.
    assert ranked == [
        ("c01", 2, 3, 2, "EUR", 2_000, 1_000, 1_000),
        ("b01", 1, 1, 1, "SEK", 2_000, 0, 2_000),
        ("c02", 1, 3, 0, None, None, None, None),
    ]


def test_fraud_queue_lists_each_waiting_referral_once_with_evidence(
        conn: duckdb.DuckDBPyConnection) -> None:
    # n06 is held with two hold flags (flag-1, flag-2): one entry, not one per flag. n05
    # (blocked) is rejected and n04's flag is only "flag": neither waits for a reviewer.
    queue = rows(conn, "fraud-queue")
    assert [(r["referral_id"], r["referee_id"], r["referrer_id"], r["flags"]) for r in queue] == [
        ("ref-n06", "n06", "c01", 2)]
    assert queue[0]["signals"] == ["ip_velocity", "shared_device"]
    assert queue[0]["evidence_event_ids"] == ["e-click-v6", "e-o-n06-1", "e-signup-n06"]
    assert queue[0]["waiting_since"] == "2026-03-04T13:00:00Z"


def test_liability_by_status_and_currency(conn: duckdb.DuckDBPyConnection) -> None:
    overall = {(r["status"], r["currency"]): (r["rewards"], r["amount_minor"])
               for r in rows(conn, "liability") if r["shop_id"] == ALL_SHOPS}
    # pending: n03's 10.00 and nb1's 1,250 points; held: n06's 10.00; due: n01 10.00 + 5.00
    # (EUR) and nb1 20.00 SEK; reversed: n02's 10.00. The rejected reward of n05 is no
    # liability.
    assert overall == {
        ("pending", "EUR"): (1, 1_000), ("pending", "PTS"): (1, 1_250),
        ("held", "EUR"): (1, 1_000),
        ("due", "EUR"): (2, 1_500), ("due", "SEK"): (1, 2_000),
        ("reversed", "EUR"): (1, 1_000),
    }


def test_daily_referrals_and_reward_messages(conn: duckdb.DuckDBPyConnection) -> None:
    days = {r["day"]: r for r in rows(conn, "daily")}
    # Latest decisions on 4 March (day 2): n01 qualified, n05 rejected, nb1 qualified
    # -> 3 referrals, 2 qualified.
    assert (days["2026-03-04"]["referrals"], days["2026-03-04"]["qualified"]) == (3, 2)
    # 18 March (day 16): reward-due messages rw-n01-ref, rw-n01-ree, rw-nb1-ref.
    assert days["2026-03-18"]["rewards_due"] == 3
    assert days["2026-03-27"]["reversals"] == 1
    # Quiet days are listed at zero, so a chart has no gaps: 3 to 27 March is 25 days.
    assert len(days) == 25
    assert days["2026-03-14"]["referrals"] == 0


def test_unknown_report_is_an_error_that_lists_the_choices(
        conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ReportError, match="funnel"):
        run_report(conn, "funnels")
