"""Checkpoints between snapshots: only the offset up to which the broker acknowledged the
outputs is written (O(1)); a restart restores the last snapshot, re-applies the log up to
that offset without sending anything, and from there sends exactly what an uninterrupted
run sends. The reference is a runtime that never stopped, over the same log."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.persistence.checkpoint import Checkpoint, CheckpointStore
from refstream.schemas.codec import Codec
from refstream.schemas.privacy import Pseudonymiser
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.pipeline_runtime import Applied, CatchUp, PipelineRuntime, Skipped
from refstream.streams.pipeline_stage import PipelineStage
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.unit.core.builders import DEFAULT_RULES
from tests.unit.streams.test_checkpoint_after_flush import HeldProducer, OwningConsumer, no_gaps

CODEC = Codec()
NAMES = TopicNames("shop", "refstream")


def synthetic_log(count: int = 400) -> list[bytes]:
    """One shop's generated events as the canonical log holds them."""
    pseudonymiser = Pseudonymiser(b"a test secret of 32 bytes length")
    config = SyntheticConfig(seed=11, shops=1, customers_per_shop=60, days=20)
    values = []
    for event in iter_shop_events(config):
        values.append(CODEC.encode(pseudonymiser.to_log_event(event)))
        if len(values) == count:
            break
    return values


LOG = synthetic_log()


def runtime(path: Path) -> PipelineRuntime:
    return PipelineRuntime(DEFAULT_RULES, CODEC, CheckpointStore(path), NAMES)


def sent(decision: object) -> list[bytes]:
    assert isinstance(decision, Applied), decision
    return [output.value for output in decision.outputs]


# Per offset, what an uninterrupted runtime sends for that log record.
REFERENCE: list[list[bytes]] = []


def reference(tmp: Path) -> list[list[bytes]]:
    if not REFERENCE:
        straight = runtime(tmp / "reference.sqlite")
        REFERENCE.extend(sent(straight.handle(0, i, v)) for i, v in enumerate(LOG))
        assert sum(map(len, REFERENCE)) > 20  # a log that decides things
    return REFERENCE


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_restart_sends_exactly_what_was_not_acknowledged(
        tmp_path_factory: Any, data: st.DataObject) -> None:
    tmp = tmp_path_factory.mktemp("ack")
    expected = reference(tmp)
    snapshot_at = data.draw(st.integers(1, len(LOG) - 1), label="snapshot at")
    acked = data.draw(st.integers(snapshot_at, len(LOG)), label="acknowledged up to")
    crashed_at = data.draw(st.integers(acked, len(LOG)), label="crashed at")

    first = runtime(tmp / "cp.sqlite")
    for offset in range(crashed_at):
        decision = first.handle(0, offset, LOG[offset])
        assert sent(decision) == expected[offset]
        if offset + 1 == snapshot_at:
            assert first.checkpoint() == 1
    # Every output before `acked` reached the broker: the offset is recorded, nothing else.
    assert first.unacknowledged() == ({0: crashed_at} if crashed_at > snapshot_at else {})
    recorded = first.acknowledge({0: acked})
    first.mark_acknowledged(recorded)
    assert recorded == {0: acked}  # what the store now holds
    stored = first.store.load(NAMES.log, 0)
    assert stored is not None and stored.next_offset == snapshot_at  # the state stays put

    # A new process: the consumer resumes at the acknowledged offset.
    second = runtime(tmp / "cp.sqlite")
    assert second.store.offsets() == {(NAMES.log, 0): acked}
    if acked < len(LOG):
        first_read = second.handle(0, acked, LOG[acked])
        if acked > snapshot_at:
            assert first_read == CatchUp(snapshot_at, acked)
            for offset in range(snapshot_at, acked):  # the gap, read from the log: silent
                assert sent(second.handle(0, offset, LOG[offset])) == []
            first_read = second.handle(0, acked, LOG[acked])
        resent = [sent(first_read)]
        resent += [sent(second.handle(0, i, LOG[i])) for i in range(acked + 1, len(LOG))]
        assert resent == expected[acked:]
    assert isinstance(second.handle(0, 0, LOG[0]), Skipped)


def test_an_older_snapshot_committed_after_a_newer_acknowledgement_keeps_it(
        tmp_path: Path) -> None:
    """A forked snapshot lands after the acknowledgements recorded while it was pickled:
    the resume offset never moves back, nor does the state."""
    store = CheckpointStore(tmp_path / "cp.sqlite")
    store.save([Checkpoint(NAMES.log, 0, 10, "v", b"state at 10")])
    assert store.acknowledge(NAMES.log, {0: 50, 1: 50}) == {0: 50}  # 1 has no snapshot
    assert store.acknowledge(NAMES.log, {0: 40}) == {}  # never backwards
    store.save([Checkpoint(NAMES.log, 0, 30, "v", b"state at 30")])
    assert store.offsets() == {(NAMES.log, 0): 50}
    store.save([Checkpoint(NAMES.log, 0, 20, "v", b"state at 20")])  # older than held: refused
    loaded = store.load(NAMES.log, 0)
    assert loaded == Checkpoint(NAMES.log, 0, 30, "v", b"state at 30", 50)
    store.save([Checkpoint(NAMES.log, 0, 70, "v", b"state at 70")])
    assert store.offsets() == {(NAMES.log, 0): 70}


def test_a_store_written_before_acknowledgements_opens_and_resumes_at_its_snapshots(
        tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE checkpoints (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
                " next_offset INTEGER NOT NULL, rules_version TEXT NOT NULL, state BLOB NOT NULL,"
                " written_at REAL NOT NULL, PRIMARY KEY (topic, partition))")
    old.execute("INSERT INTO checkpoints VALUES (?, 0, 12, 'v', x'00', 0)", (NAMES.log,))
    old.commit()
    old.close()
    store = CheckpointStore(path)
    assert store.load(NAMES.log, 0) == Checkpoint(NAMES.log, 0, 12, "v", b"\x00", None)
    assert store.offsets() == {(NAMES.log, 0): 12}
    assert store.acknowledge(NAMES.log, {0: 15}) == {0: 15}
    assert store.offsets() == {(NAMES.log, 0): 15}


def test_the_offset_is_recorded_only_once_the_broker_acknowledged_the_outputs(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        rt = runtime(tmp_path / "cp.sqlite")
        stage = PipelineStage(Settings(data_dir=tmp_path), rt, WorkerMetrics(), Health(),
                              gap_reader=no_gaps)
        producer, consumer = HeldProducer(), OwningConsumer()
        stage.producer, stage.consumer = producer, consumer  # type: ignore[assignment]
        for offset in range(100):
            rt.handle(0, offset, LOG[offset])
        rt.checkpoint()
        for offset in range(100, 180):
            rt.handle(0, offset, LOG[offset])
        task = asyncio.ensure_future(stage._acknowledge(rt.unacknowledged()))
        await asyncio.sleep(0.2)
        assert producer.flushes == 1 and not task.done()
        assert rt.store.offsets() == {(NAMES.log, 0): 100} and not consumer.committed
        producer.acknowledged.set()
        await asyncio.wait_for(task, timeout=10)
        assert rt.store.offsets() == {(NAMES.log, 0): 180}
        assert consumer.committed == {TopicPartition(NAMES.log, 0): 180}
        assert rt.unacknowledged() == {}

    asyncio.run(scenario())
