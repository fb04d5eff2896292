"""`refstream diff --apply` on the real broker: run three times, it publishes byte-identical
corrections, and the reference payer sees duplicates, never a conflict."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from refstream.cli.main import main
from refstream.replay.diff import corrections
from refstream.rewards.rules import default_rules_path
from refstream.schemas.codec import Codec
from refstream.streams.exit_codes import EXIT_OK
from refstream.streams.finance import FinanceLedger, PaymentOutcome, tail
from refstream.tools.synthetic import SyntheticConfig, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def two_rule_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("diff")
    events = folder / "events.jsonl"
    write_jsonl(SyntheticConfig(seed=5, shops=1, customers_per_shop=300, days=30), events)
    before, after = folder / "before.duckdb", folder / "after.duckdb"
    assert main(["run", "--events", str(events), "--db", str(before)]) in (EXIT_OK, 3)
    assert main(["run", "--events", str(events), "--db", str(after), "--rules",
                 str(default_rules_path().parent / "cash-second-order.yaml")]) in (EXIT_OK, 3)
    return before, after


def test_corrections_are_the_same_bytes_every_time(two_rule_sets: tuple[Path, Path]) -> None:
    codec = Codec()
    first = [codec.encode(m) for m in corrections(*two_rule_sets)]
    assert first, "the two rule sets must disagree about some due reward"
    assert [codec.encode(m) for m in corrections(*two_rule_sets)] == first


def test_applying_three_times_gives_the_payer_only_duplicates(
        two_rule_sets: tuple[Path, Path], kafka_bootstrap: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REFSTREAM_TOPIC_PREFIX", prefix)
    before, after = two_rule_sets
    for _ in range(3):
        assert main(["diff", str(before), str(after), "--apply",
                     "--bootstrap", kafka_bootstrap]) == EXIT_OK
    expected = len(corrections(before, after))
    outcomes: list[PaymentOutcome] = []
    consumer = KafkaConsumer(f"{prefix}.reward-due", bootstrap_servers=kafka_bootstrap,
                             group_id=f"{prefix}-payer", enable_auto_commit=False,
                             auto_offset_reset="earliest")
    ledger = FinanceLedger(before.parent / f"{prefix}-ledger.sqlite")
    try:
        conflicts = tail(consumer, ledger, Codec(), outcomes.append, idle_exit_s=5.0)
    finally:
        consumer.close()
        ledger.close()
    actions = [o.action for o in outcomes]
    assert conflicts == 0 and "conflict" not in actions
    assert len(actions) == 3 * expected
    assert actions.count("duplicate") == 2 * expected
    assert actions.count("paid") + actions.count("clawed_back") == expected
