"""Invariants of the pure core over generated shop logs: determinism, idempotence, snapshots,
and that no reward is ever owed twice."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.projections.pipeline import Pipeline
from refstream.rewards.rules import Rules
from refstream.schemas.events import (
    Attribution,
    DerivedEvent,
    LogEvent,
    RewardDue,
    RewardReversal,
    RewardStatus,
)
from tests.property.logs import RULE_VARIANTS, IndexChooser, RandomChooser, build_log

MAX_LOG = 80
DRAWS_PER_EVENT = 16
FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def shop_logs(draw: st.DrawFn) -> tuple[Rules, list[LogEvent]]:
    rules = draw(st.sampled_from(RULE_VARIANTS))
    length = draw(st.integers(1, MAX_LOG))
    # One byte per choice: cheap to generate, and it shrinks towards the first options.
    choices = draw(st.binary(min_size=length * DRAWS_PER_EVENT,
                             max_size=length * DRAWS_PER_EVENT))
    return rules, build_log(IndexChooser(choices), length)


def _run(rules: Rules, events: list[LogEvent]) -> tuple[Pipeline, list[list[DerivedEvent]]]:
    pipeline = Pipeline(rules)
    return pipeline, [pipeline.apply(e) for e in events]


@FAST
@given(shop_logs())
def test_the_same_log_and_rules_give_byte_identical_outputs(
        case: tuple[Rules, list[LogEvent]]) -> None:
    rules, events = case
    first, first_outputs = _run(rules, events)
    second, second_outputs = _run(rules, events)
    assert pickle.dumps(first_outputs) == pickle.dumps(second_outputs)
    assert repr(first_outputs) == repr(second_outputs)
    assert first.state == second.state


@FAST
@given(shop_logs(), st.data())
def test_applying_any_prefix_twice_changes_nothing(case: tuple[Rules, list[LogEvent]],
                                                   data: st.DataObject) -> None:
    rules, events = case
    cut = data.draw(st.integers(0, len(events)), label="prefix length")
    _, expected = _run(rules, events)
    pipeline = Pipeline(rules)
    outputs = [pipeline.apply(e) for e in events[:cut]]
    state_after_prefix = pickle.dumps(pipeline.state)
    assert [pipeline.apply(e) for e in events[:cut]] == [[] for _ in range(cut)]
    assert pipeline.state == pickle.loads(state_after_prefix)
    outputs += [pipeline.apply(e) for e in events[cut:]]
    assert outputs == expected


@FAST
@given(shop_logs(), st.data())
def test_a_snapshot_at_any_point_continues_like_the_live_run(
        case: tuple[Rules, list[LogEvent]], data: st.DataObject) -> None:
    rules, events = case
    cut = data.draw(st.integers(0, len(events)), label="snapshot after")
    live, expected = _run(rules, events)
    before = Pipeline(rules)
    outputs = [before.apply(e) for e in events[:cut]]
    resumed = Pipeline.restore(rules, before.snapshot())
    assert resumed.state == before.state
    outputs += [resumed.apply(e) for e in events[cut:]]
    assert outputs == expected
    assert resumed.state == live.state
    assert [resumed.stream_time(s) for s in ("shop-1", "shop-2")] == [
        live.stream_time(s) for s in ("shop-1", "shop-2")]


@FAST
@given(shop_logs())
def test_no_reward_is_owed_twice_and_revisions_only_move_forward(
        case: tuple[Rules, list[LogEvent]]) -> None:
    rules, events = case
    _, outputs = _run(rules, events)
    flat = [o for batch in outputs for o in batch]
    due = [d.reward_id for d in flat if isinstance(d, RewardDue)]
    assert len(due) == len(set(due))
    reversed_ = [r.reward_id for r in flat if isinstance(r, RewardReversal)]
    assert len(reversed_) == len(set(reversed_)) and set(reversed_) <= set(due)
    revisions: dict[tuple[str, str], list[int]] = defaultdict(list)
    for out in flat:
        if isinstance(out, Attribution):
            revisions["referral", out.referral_id].append(out.revision)
        elif isinstance(out, RewardStatus):
            revisions["reward", out.reward_id].append(out.revision)
            assert out.rules_version == rules.version
    assert all(seen == list(range(len(seen))) for seen in revisions.values())
    stamps = [o.occurred_at for batch in outputs for o in batch if o.shop_id == "shop-1"]
    assert stamps == sorted(stamps)  # derived time never goes back within a shop


# ----------------------------------------------------------------- across processes

_CHILD = """
import hashlib, pickle, sys
sys.path.insert(0, {root!r})
from refstream.projections.pipeline import Pipeline
from tests.property.logs import RULE_VARIANTS, RandomChooser, build_log
digest = hashlib.sha256()
for seed in range({seeds}):
    rules = RULE_VARIANTS[seed % len(RULE_VARIANTS)]
    pipeline = Pipeline(rules)
    for event in build_log(RandomChooser(seed), 120):
        digest.update(pickle.dumps(pipeline.apply(event)))
print(digest.hexdigest())
"""


@pytest.mark.slow
def test_outputs_do_not_depend_on_the_process_hash_seed() -> None:
    """Set and dict order of str keys changes with PYTHONHASHSEED; outputs must not."""
    root = str(Path(__file__).resolve().parents[2])
    script = _CHILD.format(root=root, seeds=40)
    digests = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                env=env, check=True, timeout=300)
        digests.add(result.stdout.strip())
    assert len(digests) == 1, json.dumps(sorted(digests))
    assert len(next(iter(digests))) == len(hashlib.sha256().hexdigest())


def test_the_random_chooser_builds_the_same_log_for_a_seed() -> None:
    assert build_log(RandomChooser(3), 50) == build_log(RandomChooser(3), 50)
    assert build_log(RandomChooser(3), 50) != build_log(RandomChooser(4), 50)
