"""Given the sample log (sample_log.py), every scorecard KPI equals the arithmetic done by hand.

Shop A knows 40 customers: 9 signups (n01..n08, n11) and 31 existing buyers (c01..c31).
Shop B knows 11: b01..b10 and nb1. Active referrals: shop A n01, n02, n03, n04, n06, n07
(referrer c01/c02) and n11 (media campaign, no referrer); shop B nb1.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from refstream.persistence.store import ProjectionStore
from refstream.reports.definitions import (
    ALL_SHOPS,
    STATUS_ABOVE_HEALTHY,
    STATUS_ALERT,
    STATUS_BELOW_MEDIAN,
    STATUS_INFO,
    STATUS_MEDIAN,
    STATUS_TOP_QUARTILE,
)
from refstream.reports.results import KpiResult, scorecard
from tests.unit.reports.sample_log import SHOP_A, SHOP_B


def result(results: list[KpiResult], kpi: str, shop: str,
           currency: str | None = None) -> KpiResult:
    matches = [r for r in results
               if r.kpi == kpi and r.shop_id == shop and r.currency == currency]
    assert len(matches) == 1, f"{kpi} {shop} {currency}: {matches}"
    return matches[0]


@pytest.fixture
def results(conn: duckdb.DuckDBPyConnection) -> list[KpiResult]:
    return scorecard(conn)


def check(r: KpiResult, numerator: float, denominator: float | None, value: float,
          status: str) -> None:
    assert r.numerator == pytest.approx(numerator)
    if denominator is None:
        assert r.denominator is None
    else:
        assert r.denominator == pytest.approx(denominator)
    assert r.value == pytest.approx(value)
    assert r.status == status


def test_share_rate(results: list[KpiResult]) -> None:
    # Shop A: 2 of 40 customers shared (c01, c02) -> 5%, exactly the median.
    check(result(results, "share-rate", SHOP_A), 2, 40, 2 / 40, STATUS_MEDIAN)
    # Shop B: 1 of 11 (b01) -> 9.09%, inside the 5-15% top quartile.
    check(result(results, "share-rate", SHOP_B), 1, 11, 1 / 11, STATUS_TOP_QUARTILE)
    # All shops: 3 of 51 -> 5.88%.
    check(result(results, "share-rate", ALL_SHOPS), 3, 51, 3 / 51, STATUS_TOP_QUARTILE)


def test_referral_conversion(results: list[KpiResult]) -> None:
    # Shop A: 35 visitors with a referral click (v1..v12..v35 with a code click, v11 via
    # campaign link; v99 had neither); v9 is existing customer c03 (no signup in the log):
    # a click, not a referred visitor -> 34. Converted: v1, v2, v3, v5 (n05's order counts
    # although the referral was rejected: the visitor ordered), v6, v11 -> 6 of 34.
    check(result(results, "referral-conversion", SHOP_A), 6, 34, 6 / 34, STATUS_TOP_QUARTILE)
    # All shops: shop B's vb1 converted too -> 7 of 35.
    check(result(results, "referral-conversion", ALL_SHOPS), 7, 35, 7 / 35,
          STATUS_TOP_QUARTILE)


def test_referral_rate(results: list[KpiResult]) -> None:
    # Shop A orders: 31 existing + n01 x2 + n02 + n03 + n05 + n06 + n11 = 38. Attributable:
    # n01 x2, n02, n03, n06 (held still counts), n11 = 6 (n05 is rejected) -> 15.79%.
    shop_a = result(results, "referral-rate", SHOP_A)
    check(shop_a, 6, 38, 6 / 38, STATUS_MEDIAN)
    assert shop_a.detail["first_orders"] == 5
    # All shops: 6 + 1 of 38 + 11 -> 7 / 49.
    check(result(results, "referral-rate", ALL_SHOPS), 7, 49, 7 / 49, STATUS_MEDIAN)


def test_revenue_share_all_orders_and_first_orders(results: list[KpiResult]) -> None:
    # Store revenue (EUR, net of returns): 31 x 100.00 + n01 150.00 + n02 (80.00 - 80.00) +
    # n03 60.00 + n05 30.00 + n06 40.00 + n11 20.00 = 3,400.00 EUR.
    # Referral revenue: n01 150 + n02 0 + n03 60 + n06 40 + n11 20 = 270.00 -> 7.94%.
    check(result(results, "revenue-share", SHOP_A, "EUR"), 27_000, 340_000, 27_000 / 340_000,
          STATUS_BELOW_MEDIAN)
    # New referrals only (first orders): 100 + 0 + 60 + 40 + 20 = 220.00 -> 6.47%.
    check(result(results, "revenue-share-first-order", SHOP_A, "EUR"), 22_000, 340_000,
          22_000 / 340_000, STATUS_INFO)
    # Shop B in SEK: 50.00 of 10 x 200.00 + 50.00 = 2,050.00 -> 2.44%, an alert (< 5%).
    check(result(results, "revenue-share", SHOP_B, "SEK"), 5_000, 205_000, 5_000 / 205_000,
          STATUS_ALERT)
    # All shops keep currencies apart: one EUR row, one SEK row, never a sum of both.
    overall = [r for r in results if r.kpi == "revenue-share" and r.shop_id == ALL_SHOPS]
    assert sorted((r.currency, r.numerator, r.denominator) for r in overall) == [
        ("EUR", 27_000, 340_000), ("SEK", 5_000, 205_000)]


def test_clv_premium(results: list[KpiResult]) -> None:
    # Referred buyers in shop A: n01 150, n02 0, n03 60, n06 40, n11 20 -> 270.00 / 5 = 54.00.
    # Other buyers: c01..c31 31 x 100.00 + n05 30.00 = 3,130.00 / 32 = 97.8125.
    # Premium = 54 / 97.8125 - 1 = -44.8%: at or below parity -> alert.
    r = result(results, "clv-premium", SHOP_A, "EUR")
    check(r, 5_400, 313_000 / 32, 5_400 / (313_000 / 32) - 1, STATUS_ALERT)
    assert r.detail == {"referred_buyers": 5, "referred_revenue_minor": 27_000,
                        "other_buyers": 32, "other_revenue_minor": 313_000}


def test_k_factor(results: list[KpiResult]) -> None:
    # Shop A: 8 invites (shares) / 40 customers = 0.2 invites per customer; 6 customers came
    # in through a customer's invite (n01, n02, n03, n04, n06, n07) -> conversion 6 / 8.
    # K = 0.2 x 0.75 = 0.15, inside the 0.04-0.45 median band.
    r = result(results, "k-factor", SHOP_A)
    check(r, 6, 40, 0.15, STATUS_MEDIAN)
    assert r.detail["invites"] == 8
    assert r.detail["invites_per_customer"] == pytest.approx(0.2)
    assert r.detail["invite_conversion"] == pytest.approx(0.75)
    # All shops: (9 / 51) x (7 / 9) = 7 / 51.
    check(result(results, "k-factor", ALL_SHOPS), 7, 51, 7 / 51, STATUS_MEDIAN)


def test_participation_rate(results: list[KpiResult]) -> None:
    # Shop A: sharers c01, c02 plus 7 referred customers = 9 of 40 = 22.5%, above 5-15%.
    r = result(results, "participation-rate", SHOP_A)
    check(r, 9, 40, 9 / 40, STATUS_ABOVE_HEALTHY)
    assert (r.detail["sharers"], r.detail["referred_customers"]) == (2, 7)


def test_reach_and_leads(results: list[KpiResult]) -> None:
    # Shop A link views: v1 twice + v2..v11 (10) + v12..v35 (24) = 36 clicks, 35 visitors.
    reach = result(results, "reach", SHOP_A)
    check(reach, 36, None, 36, STATUS_INFO)
    assert reach.detail["referred_visitors"] == 35
    check(result(results, "reach", ALL_SHOPS), 37, None, 37, STATUS_INFO)
    # Leads: 7 active referrals in shop A; n05 rejected, n08 invalid.
    leads = result(results, "leads", SHOP_A)
    check(leads, 7, None, 7, STATUS_INFO)
    assert (leads.detail["rejected"], leads.detail["invalid"]) == (1, 1)


def test_scorecard_order_is_kpi_then_all_shops_first(results: list[KpiResult]) -> None:
    share = [r.shop_id for r in results if r.kpi == "share-rate"]
    assert share == [ALL_SHOPS, SHOP_A, SHOP_B]
    assert results[0].kpi == "share-rate"


def test_empty_read_model_reports_no_data_not_zero(tmp_path: Path) -> None:
    store = ProjectionStore(tmp_path / "empty.duckdb")
    results = scorecard(store.connection)
    store.close()
    share = result(results, "share-rate", ALL_SHOPS)
    assert (share.numerator, share.denominator, share.value, share.status) == (
        0, 0, None, "no data")
    # No orders: no currency, so no revenue rows at all rather than an invented 0%.
    assert not [r for r in results if r.kpi == "revenue-share"]
