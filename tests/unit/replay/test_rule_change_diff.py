"""Change one rule, replay the same log, and read the diff: given this log and these two rule
versions, then exactly these referrals, rewards and money change (computed by hand below)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refstream.cli.main import main as refstream
from refstream.persistence.store import ProjectionStore
from refstream.replay.diff import corrections, diff_projections
from refstream.replay.engine import replay_events
from refstream.rewards.rules import Rules
from refstream.schemas.events import LogEvent, RewardDue, RewardReversal
from tests.unit.core.builders import DEFAULT_RULES, ShopLog, rules_with, when


def shop_log() -> list[LogEvent]:
    """alice refers bob (keeps his order) and carol (returns hers on day 40); dave never buys."""
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    for n, (friend, amount) in enumerate((("bob", 5000), ("carol", 8000), ("dave", 0)), 1):
        log.click(f"v-{friend}", at=when(n, hours=1), code="R-alice", campaign_id="friends",
                  utm_campaign="friends", utm_source="email")
        log.signup(friend, at=when(n, hours=2), visitor=f"v-{friend}")
        if amount:
            log.order(f"o-{friend}", friend, amount, at=when(n, hours=3), visitor=f"v-{friend}")
    log.ret("r-carol", "o-carol", "carol", 8000, at=when(40))
    log.tick(at=when(60))
    return log.events


def project(rules: Rules, path: Path) -> Path:
    store = ProjectionStore(path)
    replay_events(shop_log(), rules, store)
    store.close()
    return path


def test_a_higher_referrer_reward_changes_bobs_reward_and_alices_money(tmp_path: Path) -> None:
    proposed = rules_with({"version": "2026.11-friends-1500", "campaigns": [
        {**c.model_dump(mode="json", exclude_none=True),
         **({"referrer_reward": {"kind": "credit", "fixed_minor": 1500}} if c.id == "friends"
            else {})}
        for c in DEFAULT_RULES.campaigns]})
    before = project(DEFAULT_RULES, tmp_path / "live.duckdb")
    after = project(proposed, tmp_path / "proposed.duckdb")
    diff = diff_projections(before, after)

    # Nobody is referred differently, no flag changes.
    assert diff.entities["referrals"].added == diff.entities["referrals"].removed == []
    assert diff.entities["referrals"].changed == []
    assert diff.entities["fraud_flags"].changed == []
    # Both of alice's referrer rewards are now 1500 instead of 1000: the one for bob (due)
    # and the one for carol, reversed under both versions because carol returned on day 40,
    # after the 30-day hold. The referees' own 500 rewards do not change.
    changed = diff.entities["rewards"].changed
    assert sorted((c["before_amount_minor"], c["after_amount_minor"], c["before_beneficiary_id"],
                   c["after_status"]) for c in changed) == [
        (1000, 1500, "alice", "due"), (1000, 1500, "alice", "reversed")]
    bobs = next(c for c in changed if c["after_status"] == "due")
    # Money owed (pending, held or due): +500 for alice, for the friends campaign and in total.
    by_dimension = {(m.dimension, m.key, m.currency): m.delta_minor for m in diff.money}
    assert by_dimension[("referrer", "alice", "EUR")] == 500
    assert by_dimension[("campaign", "friends", "EUR")] == 500
    assert by_dimension[("total", "all", "EUR")] == 500
    assert ("referrer", "bob", "EUR") not in by_dimension  # bob's own 500 did not change

    # Corrections for finance: reverse the 1000 already due, pay 1500 under a new id.
    first = corrections(before, after, occurred_at=when(61))
    assert [(type(m).__name__, m.amount_minor, m.beneficiary_id) for m in first] == [
        ("RewardReversal", 1000, "alice"), ("RewardDue", 1500, "alice")]
    reversal, repay = first
    assert isinstance(reversal, RewardReversal) and isinstance(repay, RewardDue)
    assert reversal.reward_id == bobs["reward_id"] != repay.reward_id
    # Publishing the same corrections again names the same messages: finance pays once.
    assert corrections(before, after, occurred_at=when(62)) == [
        RewardReversal(reversal.reversal_id, reversal.reward_id, reversal.shop_id, when(62),
                       reversal.rules_version, "alice", 1000, "EUR", reversal.reason, None),
        RewardDue(repay.reward_id, repay.shop_id, when(62), repay.rules_version,
                  repay.referral_id, "alice", repay.side, repay.kind, 1500, "EUR",
                  repay.due_at, repay.reason, repay.order_id)]


def test_a_longer_hold_turns_carols_reversals_into_voids_and_costs_nothing(
        tmp_path: Path) -> None:
    proposed = rules_with({"version": "2026.11-hold45", "rewards": {"hold_period_days": 45}})
    before = project(DEFAULT_RULES, tmp_path / "live.duckdb")
    after = project(proposed, tmp_path / "hold45.duckdb")
    diff = diff_projections(before, after)
    changed = {(c["before_beneficiary_id"], c["before_status"], c["after_status"])
               for c in diff.entities["rewards"].changed}
    # carol returned on day 40: 38 days after her day-2 order. Under a 30-day hold her
    # rewards were due on day 32 and reversed; under 45 days they are still pending: voided.
    assert ("alice", "reversed", "voided") in changed
    assert ("carol", "reversed", "voided") in changed
    # bob's rewards stay due, only later (day 46 instead of day 31).
    assert {s for b, s, _ in changed if b == "bob"} <= {"due"}
    # No money owed changes (reversed and voided are both "not owed").
    assert all(m.delta_minor == 0 for m in diff.money)
    # Finance was never told about money that it must now pay or claw back.
    assert corrections(before, after, occurred_at=when(61)) == []


def test_replay_cli_prints_the_diff_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    before = project(DEFAULT_RULES, tmp_path / "live.duckdb")
    after = project(rules_with({"version": "v-hold45", "rewards": {"hold_period_days": 45}}),
                    tmp_path / "after.duckdb")
    assert refstream(["diff", str(before), str(after), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["before_version"] == DEFAULT_RULES.version
    assert printed["after_version"] == "v-hold45"
    assert len(printed["entities"]["rewards"]["changed"]) >= 2
