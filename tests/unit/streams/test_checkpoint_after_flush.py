"""A forked checkpoint is committed only once the producer has acknowledged every output of
the events it holds, while the stage itself never waits for the broker or the child; a
state folded from few records is snapshotted in the worker itself, after the same flush.

The producer and consumer stand in for aiokafka's at the two calls the checkpoint makes
(`flush`, `commit`/`assignment`/`highwater`); the ordering they let the test hold back is
what matters here. The chaos and pipeline-stage integration tests hold it with a real broker.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition

from refstream.persistence.checkpoint import CheckpointStore, ForkedSnapshot, TakenSnapshot
from refstream.schemas.codec import Codec
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.pipeline_runtime import CatchUp, PipelineRuntime
from refstream.streams.pipeline_stage import PipelineStage
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames
from tests.unit.core.builders import DEFAULT_RULES
from tests.unit.streams.test_background_checkpoint import log_values

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
NAMES = TopicNames("shop", "refstream")


class HeldProducer:
    """`flush` returns when the test releases it (the broker's acknowledgement)."""

    def __init__(self) -> None:
        self.acknowledged = asyncio.Event()
        self.flushes = 0

    async def flush(self) -> None:
        self.flushes += 1
        await self.acknowledged.wait()


class OwningConsumer:
    def __init__(self) -> None:
        self.committed: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(NAMES.log, 0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


async def no_gaps(partition: int, gap: CatchUp, owned: Callable[[], bool]
                  ) -> AsyncIterator[list[Any]]:
    raise AssertionError(f"partition {partition}: no gap expected, got {gap}")
    yield []  # an async generator, as the stage expects


def test_the_snapshot_waits_for_the_acknowledgement_and_the_stage_does_not(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        runtime = PipelineRuntime(DEFAULT_RULES, Codec(), CheckpointStore(tmp_path / "cp.db"),
                                  NAMES)
        # Every snapshot forks, however small the state.
        stage = PipelineStage(Settings(data_dir=tmp_path, checkpoint_inline_max_events=0),
                              runtime, WorkerMetrics(), Health(), gap_reader=no_gaps)
        producer, consumer = HeldProducer(), OwningConsumer()
        stage.producer, stage.consumer = producer, consumer
        values = log_values()
        for offset, value in enumerate(values[:4]):
            runtime.handle(0, offset, value)

        # Forks and returns without the broker's answer: the stage goes on consuming.
        await asyncio.wait_for(stage.checkpoint(), timeout=10)
        for offset, value in enumerate(values[4:], start=4):
            runtime.handle(0, offset, value)
        pending: Any = stage.pending
        assert pending is not None
        await asyncio.sleep(0.5)  # the child is long done; the broker has not answered
        assert producer.flushes == 1 and not pending.done()
        assert runtime.store.load(NAMES.log, 0) is None and not consumer.committed

        producer.acknowledged.set()
        await asyncio.wait_for(pending, timeout=30)
        stored = runtime.store.load(NAMES.log, 0)
        assert stored is not None and stored.next_offset == 4  # the state at the fork
        assert consumer.committed == {TopicPartition(NAMES.log, 0): 4}

    asyncio.run(scenario())


@pytest.mark.parametrize(("inline_max", "snapshot_kind"),
                         [(3, ForkedSnapshot), (4, TakenSnapshot)])
def test_a_state_of_few_records_is_pickled_in_the_worker_and_committed_after_the_flush(
        tmp_path: Path, inline_max: int, snapshot_kind: type) -> None:
    """Four records folded: above a bound of 3 the snapshot forks; at a bound of 4 the
    worker pickles it at once, no child. Either way the stage returns without the broker's
    answer, and what is committed after it is the state of the four."""
    async def scenario() -> None:
        runtime = PipelineRuntime(DEFAULT_RULES, Codec(), CheckpointStore(tmp_path / "cp.db"),
                                  NAMES)
        stage = PipelineStage(
            Settings(data_dir=tmp_path, checkpoint_inline_max_events=inline_max), runtime,
            WorkerMetrics(), Health(), gap_reader=no_gaps)
        producer, consumer = HeldProducer(), OwningConsumer()
        stage.producer, stage.consumer = producer, consumer
        values = log_values()
        for offset, value in enumerate(values[:4]):
            runtime.handle(0, offset, value)
        # The size the stage decides by: the changed partitions' next offsets, summed.
        assert sum(state.gate.next_offset for state in runtime.partitions.values()) == 4

        await asyncio.wait_for(stage.checkpoint(), timeout=10)
        pending: Any = stage.pending
        assert pending is not None
        for offset, value in enumerate(values[4:], start=4):
            runtime.handle(0, offset, value)
        await asyncio.sleep(0.3)
        assert producer.flushes == 1 and not pending.done()
        assert runtime.store.load(NAMES.log, 0) is None and not consumer.committed

        producer.acknowledged.set()
        await asyncio.wait_for(pending, timeout=30)
        stored = runtime.store.load(NAMES.log, 0)
        assert stored is not None and stored.next_offset == 4
        assert consumer.committed == {TopicPartition(NAMES.log, 0): 4}
        assert snapshot_taken[0] is snapshot_kind

    snapshot_taken: list[type] = []
    original = PipelineRuntime.begin_background_checkpoint

    def noting(self: PipelineRuntime, *, fork_above: int = -1) -> Any:
        began = original(self, fork_above=fork_above)
        snapshot_taken.append(type(began.snapshot))
        return began

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PipelineRuntime, "begin_background_checkpoint", noting)
        asyncio.run(scenario())
