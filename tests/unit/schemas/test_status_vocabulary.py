"""One status vocabulary: each status is spelled once, in `schemas/status.py`.

- The SQL of the reports, the read model's tables and the other statements over them takes
  its status literals from the enums: no module spells one by hand (its string constants are
  walked, f-strings included).
- The Avro contracts agree: a field carrying a vocabulary is an enum with exactly its values,
  or a documented or plain string (the core, not the wire, then keeps it in the vocabulary).
- The edges still refuse an unknown status with the error they always raised, and the core
  emits members (never a bare string that merely happens to be right).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import pickle
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from refstream.projections.pipeline import Pipeline
from refstream.reports import definitions
from refstream.rewards.rules import RulesError, parse_rules
from refstream.schemas import events as ev
from refstream.schemas.codec import Codec, DecodeError
from refstream.schemas.jsonl import parse_line
from refstream.schemas.shop import ShopReview
from refstream.schemas.status import (
    ACTIVE_REFERRAL_STATUSES,
    PAID,
    VOCABULARIES,
    AttributionStatus,
    FraudAction,
    LedgerEntry,
    ReviewDecision,
    RewardKind,
    RewardSide,
    RewardStatusName,
    sql_list,
    sql_literal,
)
from refstream.web.status import REFERRAL_WORDS, REWARD_WORDS
from tests.unit.core.builders import DEFAULT_RULES
from tests.unit.persistence.snapshot_log import first_part, whole_log

ROOT = Path(__file__).resolve().parents[3]
AVRO = ROOT / "schemas" / "avro"
# Every module that writes SQL over the read model's tables.
SQL_MODULES = sorted([*(ROOT / "reports").glob("*.py"), ROOT / "projections" / "tables.py",
                      ROOT / "replay" / "diff.py", ROOT / "jobs" / "replay.py",
                      ROOT / "web" / "status.py", ROOT / "web" / "demo.py"])
STATUS_WORDS = frozenset({m.value for vocabulary in VOCABULARIES for m in vocabulary} | {PAID})
_SQL_STRING = re.compile(r"'([a-z_]+)'")


def _string_constants(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant in a module, the literal parts of f-strings too."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def hand_spelled_statuses(source: str) -> list[tuple[int, str]]:
    """Status words written as SQL string literals ('held') in a module's strings."""
    return [(line, word) for line, text in _string_constants(source)
            for word in _SQL_STRING.findall(text) if word in STATUS_WORDS]


def test_the_scanner_finds_a_status_spelled_by_hand_in_sql() -> None:
    source = ('SQL = """SELECT count(*) FROM referrals WHERE status = \'held\'"""\n'
              'def f(x):\n    return f"SELECT 1 WHERE kind <> \'points\' AND x = {x}"\n')
    assert hand_spelled_statuses(source) == [(1, "held"), (3, "points")]
    assert hand_spelled_statuses('SQL = f"WHERE status = {sql_literal(x)}"') == []


@pytest.mark.parametrize("module", SQL_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_spells_a_status_by_hand(module: Path) -> None:
    found = hand_spelled_statuses(module.read_text())
    assert found == [], (
        f"{module.relative_to(ROOT)} spells statuses in SQL by hand at (line, word) {found}: "
        "use sql_literal/sql_list of refstream.schemas.status")


def test_the_sql_helpers_render_members_as_literals_and_lists() -> None:
    assert sql_literal(RewardStatusName.DUE) == "'due'"
    assert sql_list(ACTIVE_REFERRAL_STATUSES) == "('attributed', 'qualified', 'held')"
    # A set renders in declaration order, so the statement text never varies.
    assert sql_list({RewardStatusName.DUE, RewardStatusName.PENDING}) == "('pending', 'due')"
    assert definitions.ACTIVE == "('attributed', 'qualified', 'held')"
    with pytest.raises(TypeError, match="status member"):
        sql_literal("due")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        sql_list(())


def test_a_member_is_its_string_in_every_encoding() -> None:
    for vocabulary in VOCABULARIES:
        for member in vocabulary:
            plain = str(member.value)
            assert member == plain and hash(member) == hash(plain)
            assert f"{member}" == plain and member.encode() == plain.encode()
            assert json.dumps({member: member}) == json.dumps({plain: plain})
            # Pickled (snapshots) as the plain string: a release without the vocabularies
            # reads it, and it compares equal to the member.
            restored = pickle.loads(pickle.dumps(member))
            assert type(restored) is str and restored == member
            assert b"refstream" not in pickle.dumps(member)
    # The vocabularies that share a word share its string, so tables and reports agree.
    assert AttributionStatus.HELD == RewardStatusName.HELD == "held"
    assert LedgerEntry.DUE == RewardStatusName.DUE


# -- the wire contract -----------------------------------------------------------------------

# Which vocabulary a field carries, by record and field name.
FIELD_VOCABULARY: dict[tuple[str, str], type[StrEnum]] = {
    ("Attribution", "status"): AttributionStatus,
    ("RewardStatus", "status"): RewardStatusName,
    ("RewardStatus", "side"): RewardSide,
    ("RewardStatus", "kind"): RewardKind,
    ("RewardDue", "side"): RewardSide,
    ("RewardDue", "kind"): RewardKind,
    ("FraudFlag", "action"): FraudAction,
    ("ReviewDecided", "decision"): ReviewDecision,
    ("Review", "decision"): ReviewDecision,
}


def _vocabulary_fields() -> list[tuple[str, dict[str, Any], type[StrEnum]]]:
    found = []
    for path in sorted(AVRO.glob("*.avsc")):
        declared = json.loads(path.read_text())
        for spec in declared["fields"]:
            vocabulary = FIELD_VOCABULARY.get((declared["name"], spec["name"]))
            if vocabulary is not None:
                found.append((path.name, spec, vocabulary))
    return found


def test_every_vocabulary_field_of_the_shipped_schemas_agrees_with_its_enum() -> None:
    found = _vocabulary_fields()
    assert {(name.split(".")[0], spec["name"]) for name, spec, _ in found} >= {
        ("derived_attribution", "status"), ("derived_rewardstatus", "status"),
        ("derived_rewarddue", "kind"), ("derived_fraudflag", "action"),
        ("log_reviewdecided", "decision"), ("shop_review", "decision")}
    enums = 0
    for name, spec, vocabulary in found:
        values = [m.value for m in vocabulary]
        avro_type = spec["type"]
        if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
            enums += 1
            assert sorted(avro_type["symbols"]) == sorted(values), (name, spec["name"])
        elif "doc" in spec:
            missing = [v for v in values if v not in spec["doc"]]
            assert missing == [], f"{name} {spec['name']}: its doc does not name {missing}"
        else:
            assert avro_type == "string", (name, spec["name"], avro_type)
    assert enums >= 1  # shop.Review's decision: the wire itself checks it


def test_an_unknown_review_decision_is_refused_where_it_always_was() -> None:
    line = {"event_type": "review", "event_id": "r-1", "shop_id": "s",
            "occurred_at": "2026-03-01T10:00:00Z", "referral_id": "ref-1",
            "decision": "maybe", "reviewer_id": "ana"}
    with pytest.raises(ValueError, match="decision: Input should be 'approve' or 'reject'"):
        parse_line(json.dumps(line))
    with pytest.raises(ValidationError):
        ShopReview.model_validate({**line, "occurred_at": "2026-03-01T10:00:00Z"})
    record = {k: v for k, v in line.items() if k != "event_type"}
    record["occurred_at"] = 1_772_359_200_000
    with pytest.raises(DecodeError, match="decision: Input should be 'approve' or 'reject'"):
        Codec().from_record("refstream.shop.Review", record)
    accepted = parse_line(json.dumps({**line, "decision": "reject"}))
    assert isinstance(accepted, ShopReview) and accepted.decision is ReviewDecision.REJECT


def test_the_rules_refuse_an_unknown_kind_or_action_and_read_members() -> None:
    text = (ROOT / "rewards" / "rules" / "default.yaml").read_text()
    rules = parse_rules(text)
    assert rules.rewards.referrer is not None
    assert rules.rewards.referrer.kind is RewardKind.CREDIT
    assert rules.fraud.ip_velocity.action is FraudAction.HOLD
    with pytest.raises(RulesError, match="'credit', 'discount', 'cash' or 'points'"):
        parse_rules(text.replace("referrer: {kind: credit", "referrer: {kind: gold", 1))
    with pytest.raises(RulesError, match="'flag', 'hold' or 'block'"):
        parse_rules(text.replace("action: hold}", "action: ban}", 1))


# -- the core and the edges use the members ---------------------------------------------------

def test_the_core_emits_members_of_the_vocabulary_never_bare_strings() -> None:
    pipeline = Pipeline(DEFAULT_RULES)
    outputs = [o for e in whole_log() for o in pipeline.apply(e)]
    checked: dict[str, int] = {}
    for out in outputs:
        for (record, field_name), vocabulary in FIELD_VOCABULARY.items():
            if type(out).__name__ == record and hasattr(out, field_name):
                value = getattr(out, field_name)
                assert type(value) is vocabulary, (out, field_name, type(value))
                checked[f"{record}.{field_name}"] = checked.get(f"{record}.{field_name}", 0) + 1
    assert set(checked) >= {"Attribution.status", "RewardStatus.status", "RewardStatus.side",
                            "RewardStatus.kind", "RewardDue.side", "FraudFlag.action"}
    statuses = {o.status for o in outputs if isinstance(o, ev.Attribution)}
    assert statuses >= {AttributionStatus.ATTRIBUTED, AttributionStatus.QUALIFIED}


def test_the_referrer_page_words_every_status() -> None:
    assert set(REFERRAL_WORDS) == set(AttributionStatus)
    assert set(REWARD_WORDS) == set(RewardStatusName)
    assert REFERRAL_WORDS.get("held") == "held for review"  # DuckDB gives plain strings


def test_a_snapshot_of_plain_strings_restores_equal_to_one_of_members() -> None:
    # The format-3 fixture was pickled before the vocabulary: its statuses are plain strings.
    # They compare equal to the members (tests/unit/persistence/test_snapshot_upgrade.py then
    # holds that the restored run continues exactly as folding from scratch).
    fixture = ROOT / "tests" / "unit" / "persistence" / "snapshots" / "format3.pickle"
    restored = Pipeline.restore(DEFAULT_RULES, fixture.read_bytes())
    folded = Pipeline(DEFAULT_RULES)
    for event in first_part():
        folded.apply(event)
    old = [r.status for shop in restored.state.shops.values() for r in shop.referrals.values()]
    new = [r.status for shop in folded.state.shops.values() for r in shop.referrals.values()]
    assert old and {type(s) for s in old} == {str}
    assert {type(s) for s in new} == {AttributionStatus}
    assert old == new and restored.state == folded.state


def test_the_avro_bytes_of_derived_events_are_those_of_plain_strings() -> None:
    codec = Codec()
    pipeline = Pipeline(DEFAULT_RULES)
    outputs = [o for e in whole_log() for o in pipeline.apply(e)]
    changed = 0
    for out in outputs:
        plain = {f.name: (f"{getattr(out, f.name)}" if isinstance(getattr(out, f.name), StrEnum)
                          else getattr(out, f.name)) for f in dataclasses.fields(out)}
        twin = type(out)(**plain)
        assert codec.encode(twin) == codec.encode(out)
        assert codec.decode(codec.encode(out)) == out
        changed += any(type(getattr(out, name)) is not type(value) for name, value in plain.items())
    assert changed > 50  # the events held members, and their twins plain strings
