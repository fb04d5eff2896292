"""`refstream report late`: the referrals a late event may have changed, read from DuckDB.

Bob's first order reaches the log a day after the shop's watermark passed it (a shop server
that queued it); Dan's referral was decided and its rewards fell due (the hold period passed)
before that order's time, so nothing but a return reaches it any more. The report lists Bob's
referral with its rewards and the shop's earliest late event, and not Dan's.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import Pipeline
from refstream.reports.results import run_report
from refstream.schemas.events import Attribution, DerivedEvent, LateArrival, LogEvent
from refstream.schemas.status import AttributionStatus, RewardStatusName
from tests.unit.core.builders import DEFAULT_RULES, SHOP, ShopLog, rules_with, run, when


def test_the_late_report_lists_the_referral_decided_after_the_late_order(
        tmp_path: Path) -> None:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0))
    log.click("v-dan", at=when(0, hours=1), code="R-alice")
    log.signup("dan", at=when(0, hours=2), visitor="v-dan")
    log.order("o-dan", "dan", 5_000, at=when(0, hours=3), visitor="v-dan")
    log.click("v-bob", at=when(40), code="R-alice")
    log.signup("bob", at=when(40, hours=1), visitor="v-bob")
    late_order = log.order("o-bob", "bob", 7_000, at=when(42), visitor="v-bob")
    log.tick(at=when(43))
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
    assert conn.execute("SELECT count(*) FROM rewards WHERE referral_id = ? AND status = ?",
                        [referrals["dan"], RewardStatusName.DUE]).fetchone() == (2,)
    assert {r["referee_id"] for r in late} == {"bob"} and "dan" in referrals
    assert {r["late_since"] for r in late} == {"2026-11-12T00:00:00Z"}
    assert all(r["shop_id"] == SHOP and r["late_events_in_shop"] == 1 for r in late)
    # Both of the referral's rewards, as the rewards table holds them.
    assert sorted((r["side"], r["amount_minor"], r["currency"]) for r in late) == sorted(
        conn.execute("SELECT side, amount_minor, currency FROM rewards WHERE referral_id = ?",
                     [bob]).fetchall())
    assert len(late) == 2


def test_a_referral_a_late_share_would_have_rejected_is_marked_late() -> None:
    """The minimal form of a falsifying example of tests/property/test_event_time_properties.py.

    In time order, Alice's share registers R-alice before Bob types it at checkout: Bob is
    referred, his payment matches Dan's, and the payment_shared block rejects both referrals.
    The share reaches the log after Bob's order: the code was unknown when Bob typed it, so no
    referral of Bob, no flag, and Dan's referral (decided before the share's time) stays
    attributed. Nothing of Dan's changed at or after the late share's time, yet its status
    differs from the time-ordered log's: the read model marks it late all the same, because it
    was still open (a fraud action or qualification could still reach it) at that time."""
    log = ShopLog()
    log.share("carol", "R-carol", at=when(0))
    log.signup("dan", at=when(0), code="R-carol")
    log.order("o-dan", "dan", 5_000, at=when(1), payment="payment:1")
    late_share = log.share("alice", "R-alice", at=when(2))
    log.order("o-bob", "bob", 5_000, at=when(2, seconds=1), code="R-alice",
              payment="payment:1")
    log.tick(at=when(3))
    arrival = [e for e in log.events if e is not late_share] + [late_share]
    rules = rules_with({"version": "v-late-share",
                        "qualification": {"trigger": "nth_order", "n": 2,
                                          "new_customers_only": False},
                        "fraud": {"payment_shared": {"threshold": 2, "action": "block"}}})

    def final_status(events: list[LogEvent]) -> tuple[dict[str, str], list[DerivedEvent]]:
        outputs = run(events, rules)
        return {o.referee_id: o.status for o in outputs if isinstance(o, Attribution)}, outputs

    in_time, _ = final_status(log.events)
    late, outputs = final_status(arrival)
    assert in_time == {"dan": AttributionStatus.REJECTED, "bob": AttributionStatus.REJECTED}
    assert late == {"dan": AttributionStatus.ATTRIBUTED}
    assert [o.event_id for o in outputs if isinstance(o, LateArrival)] == [late_share.event_id]

    store = ProjectionStore(":memory:")
    try:
        store.add_all(outputs)
        store.flush()
        marked = store.connection.execute(
            "SELECT referee_id, referral_status FROM referrals_marked_late").fetchall()
    finally:
        store.close()
    assert marked == [("dan", AttributionStatus.ATTRIBUTED)]
