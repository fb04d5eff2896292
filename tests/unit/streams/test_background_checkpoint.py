"""Checkpoints snapshotted by a forked child: the state as it was at the fork, committed with
its offset, whatever the worker applied meanwhile; a failed child loses nothing."""

from __future__ import annotations

import gc
import os
import pickle
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.persistence.checkpoint import (
    SNAPSHOT_NICENESS,
    Checkpoint,
    CheckpointStore,
    ForkedSnapshot,
    SnapshotFailed,
)
from refstream.projections.pipeline import Pipeline
from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue
from refstream.streams.metrics import WorkerMetrics
from refstream.streams.pipeline_runtime import Applied, Output, PipelineRuntime
from refstream.streams.pipeline_stage import count_outputs
from refstream.streams.topics import TopicNames
from tests.unit.core.builders import DEFAULT_RULES, ShopLog, when

CODEC = Codec()
NAMES = TopicNames("shop", "refstream")
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def log_values() -> list[bytes]:
    log = ShopLog()
    log.share("alice", "R-alice", at=when(0), campaign="friends")
    log.click("v-bob", at=when(1), code="R-alice", campaign_id="friends")
    log.signup("bob", at=when(1, hours=1), visitor="v-bob")
    log.order("o-bob", "bob", 4000, at=when(1, hours=2), visitor="v-bob")
    log.click("v-carol", at=when(2), code="R-alice", campaign_id="friends")
    log.signup("carol", at=when(2, hours=1), visitor="v-carol")
    log.order("o-carol", "carol", 9000, at=when(2, hours=2), visitor="v-carol")
    log.tick(at=when(40))
    return [CODEC.encode(e) for e in log.events]


def runtime(path: Path) -> PipelineRuntime:
    return PipelineRuntime(DEFAULT_RULES, CODEC, CheckpointStore(path), NAMES)


def core_over(values: list[bytes]) -> Pipeline:
    scratch = Pipeline(DEFAULT_RULES)
    for value in values:
        scratch.apply(CODEC.decode_log_event(value))  # type: ignore[arg-type]
    return scratch


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_the_commit_holds_the_state_at_the_fork_not_what_came_after(
        tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    values = log_values()
    at_fork = data.draw(st.integers(1, len(values)), label="records before the fork")
    after = data.draw(st.integers(at_fork, len(values)), label="records applied meanwhile")
    rt = runtime(tmp_path_factory.mktemp("cp") / "cp.sqlite")
    for offset in range(at_fork):
        rt.handle(0, offset, values[offset])
    pending = rt.begin_background_checkpoint()
    assert pending is not None and not rt.partitions[0].dirty
    for offset in range(at_fork, after):  # the worker goes on while the child pickles
        assert isinstance(rt.handle(0, offset, values[offset]), Applied)
    assert pending.finish() == {0: at_fork}
    stored = rt.store.load(NAMES.log, 0)
    assert stored is not None and stored.next_offset == at_fork
    assert Pipeline.restore(DEFAULT_RULES, stored.state).state == core_over(values[:at_fork]).state
    # Whatever was applied after the fork is still to be committed, and only that.
    assert rt.partitions[0].dirty == (after > at_fork)


def test_a_snapshot_child_that_dies_commits_nothing_and_leaves_the_partition_to_retry(
        tmp_path: Path) -> None:
    values = log_values()
    rt = runtime(tmp_path / "cp.sqlite")
    for offset, value in enumerate(values[:3]):
        rt.handle(0, offset, value)
    rt.checkpoint()
    for offset in range(3, 6):
        rt.handle(0, offset, values[offset])
    pending = rt.begin_background_checkpoint()
    assert pending is not None
    os.kill(pending.snapshot.pid, signal.SIGKILL)
    with pytest.raises(SnapshotFailed):
        pending.finish()
    assert rt.partitions[0].dirty
    stored = rt.store.load(NAMES.log, 0)
    assert stored is not None and stored.next_offset == 3  # the old checkpoint, intact
    assert rt.checkpoint() == 1
    assert rt.store.offsets() == {(NAMES.log, 0): 6}


def test_a_failing_snapshot_is_reported_not_half_written(tmp_path: Path) -> None:
    def broken() -> list:  # type: ignore[type-arg]
        raise ValueError("cannot pickle this state")

    with pytest.raises(SnapshotFailed):
        ForkedSnapshot(broken).collect()


def test_the_child_pickles_without_cyclic_gc_and_below_the_workers_priority() -> None:
    def how_the_child_runs() -> list[Checkpoint]:
        state = pickle.dumps((gc.isenabled(), os.nice(0)))
        return [Checkpoint("log", 0, 0, "v", state)]

    assert gc.isenabled()
    parent_niceness = os.nice(0)
    [checkpoint] = ForkedSnapshot(how_the_child_runs).collect()
    assert pickle.loads(checkpoint.state) == (
        False, min(19, parent_niceness + SNAPSHOT_NICENESS))
    assert gc.isenabled() and os.nice(0) == parent_niceness  # the worker's own are untouched


def test_nothing_changed_forks_nothing(tmp_path: Path) -> None:
    rt = runtime(tmp_path / "cp.sqlite")
    assert rt.begin_background_checkpoint() is None
    rt.handle(0, 0, log_values()[0])
    rt.checkpoint()
    assert rt.begin_background_checkpoint() is None


def test_per_batch_counters_equal_counting_each_output(tmp_path: Path) -> None:
    values = log_values()
    rt = runtime(tmp_path / "cp.sqlite")
    outputs: list[Output] = []
    for offset, value in enumerate(values):
        decision = rt.handle(0, offset, value)
        assert isinstance(decision, Applied)
        outputs.extend(decision.outputs)
    assert any(isinstance(o.event, RewardDue) for o in outputs)
    batched, one_by_one = WorkerMetrics(), WorkerMetrics()
    count_outputs(batched, outputs)
    for output in outputs:
        count_outputs(one_by_one, [output])
    samples = [(m.name, tuple(sorted(m.labels.items())), m.value)
               for metrics in (batched,) for family in metrics.registry.collect()
               for m in family.samples]
    expected = [(m.name, tuple(sorted(m.labels.items())), m.value)
                for family in one_by_one.registry.collect() for m in family.samples]
    assert [s for s in samples if not s[0].endswith("_created")] == \
        [s for s in expected if not s[0].endswith("_created")]
    due = sum(1 for o in outputs if isinstance(o.event, RewardDue))
    assert batched.rewards_due.labels("EUR")._value.get() == due
