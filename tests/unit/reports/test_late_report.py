"""`refstream report late`: the referrals a late event may have changed, read from DuckDB.

Bob's first order reaches the log a day after the shop's watermark passed it (a shop server
that queued it); Dan's referral was decided and rewarded before that order's time. The
report lists Bob's referral with its rewards and the shop's earliest late event, and not Dan's.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import Pipeline
from refstream.reports.results import run_report
from tests.unit.core.builders import DEFAULT_RULES, SHOP, ShopLog, when


def test_the_late_report_lists_the_referral_decided_after_the_late_order(
        tmp_path: Path) -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0))
    log.click("v-dan", at=when(0, hours=1), code="R-alice")
    log.signup("dan", at=when(0, hours=2), visitor="v-dan")
    log.order("o-dan", "dan", 5_000, at=when(0, hours=3), visitor="v-dan")
    log.click("v-bob", at=when(1), code="R-alice")
    log.signup("bob", at=when(1, hours=1), visitor="v-bob")
    late_order = log.order("o-bob", "bob", 7_000, at=when(2), visitor="v-bob")
    log.tick(at=when(3))
    arrival = [e for e in log.events if e is not late_order] + [late_order]

    pipeline = Pipeline(DEFAULT_RULES)  # allowed lateness 0: the order is late
    store = ProjectionStore(tmp_path / "late.duckdb")
    for event in arrival:
        store.add(event)
        store.add_all(pipeline.apply(event))
    store.close()

    conn = duckdb.connect(str(tmp_path / "late.duckdb"), read_only=True)
    late = run_report(conn, "late").records()
    (bob,) = {r["referral_id"] for r in late}
    referrals = dict(conn.execute("SELECT referee_id, referral_id FROM referrals").fetchall())
    assert bob == referrals["bob"]
    assert {r["referee_id"] for r in late} == {"bob"} and "dan" in referrals
    assert {r["late_since"] for r in late} == {"2026-10-03T00:00:00Z"}
    assert all(r["shop_id"] == SHOP and r["late_events_in_shop"] == 1 for r in late)
    # Both of the referral's rewards, as the rewards table holds them.
    assert sorted((r["side"], r["amount_minor"], r["currency"]) for r in late) == sorted(
        conn.execute("SELECT side, amount_minor, currency FROM rewards WHERE referral_id = ?",
                     [bob]).fetchall())
    assert len(late) == 2
