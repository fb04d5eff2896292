"""The live pipeline's bookkeeping around the pure core: one `Pipeline` per log partition.

It applies exactly the record whose offset is the partition's next expected one; anything
older was already applied (skip), anything newer means the consumer is ahead of the state
(catch up: the records between are read from the log first). So whatever offsets faust or
the group commit, the state always equals the core run over the log prefix, and outputs
re-emitted after a crash are byte-identical.

Why not seek the group's consumer back: faust drops every record below the highest offset
it has handed out, and records fetched before a seek still drain through after it, so a
seek back raced that filter and could leave a partition stalled for good (seen under load:
reward-due messages missing until the next rebalance; tests/integration/test_pipeline_kafka
reproduces it with a backlog). The gap is read with a consumer of its own instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from refstream.persistence.checkpoint import (
    Checkpoint,
    CheckpointStore,
    ForkedSnapshot,
    TakenSnapshot,
)
from refstream.projections.pipeline import Pipeline, SnapshotError
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import (
    Attribution,
    FraudFlag,
    LateArrival,
    LogEvent,
    RewardDue,
    RewardReversal,
    RewardStatus,
)
from refstream.streams.handoff import AppendedEvents
from refstream.streams.topics import TopicNames

log = logging.getLogger("refstream.pipeline")


# Built per record (Applied) and per derived message (Output): not frozen, since a frozen
# dataclass's __init__ (object.__setattr__ per field) costs four times a plain one's.
@dataclass(slots=True)
class Output:
    """One derived message to send: topic, key and Avro bytes."""

    topic: str
    key: bytes
    value: bytes
    event: Any


@dataclass(slots=True)
class Applied:
    outputs: list[Output]
    event: LogEvent | None


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The consumer is ahead of the state: offsets [start, stop) must be read from the log
    and handled first; then the record at `stop` is admitted."""

    start: int
    stop: int


Decision = Applied | Skipped | CatchUp


@dataclass
class OffsetGate:
    """Admits exactly the next offset of a partition; says skip or catch up otherwise."""

    # The canonical log is never truncated, so a partition without checkpoint starts at 0.
    next_offset: int = 0

    def admit(self, offset: int) -> Skipped | CatchUp | None:
        """None: apply this record now (and expect the one after it)."""
        expected = self.next_offset
        if offset < expected:
            return Skipped(f"offset {offset} already applied (next is {expected})")
        if offset > expected:
            return CatchUp(expected, offset)
        self.next_offset = offset + 1
        return None


@dataclass
class PartitionState:
    pipeline: Pipeline
    gate: OffsetGate = field(default_factory=OffsetGate)
    # Changed since its last snapshot.
    dirty: bool = False
    # Offsets below this are re-applied silently: state catches up, nothing is re-emitted.
    silent_until: int = 0
    # The offset the checkpoint store holds its outputs acknowledged up to; None while the
    # store holds no snapshot of it (acknowledgements are recorded against a snapshot).
    acknowledged: int | None = None


def route(names: TopicNames, codec: Codec, event: Any) -> Output:
    """Which topic and key a derived event goes to (reward-due is keyed by reward id)."""
    match event:
        case Attribution():
            key = event.referral_id.encode()
            return Output(names.attributions, key, codec.encode(event), event)
        case FraudFlag():
            return Output(names.fraud_flags, event.flag_id.encode(), codec.encode(event), event)
        case RewardDue() | RewardReversal():
            return Output(names.reward_due, event.reward_id.encode(), codec.encode(event), event)
        case RewardStatus():
            return Output(names.rewards, event.reward_id.encode(), codec.encode(event), event)
        case LateArrival():
            # With the decisions it arrived too late for (the projector reads this topic).
            key = f"{event.shop_id}:{event.event_id}".encode()
            return Output(names.attributions, key, codec.encode(event), event)
    raise TypeError(f"no output topic for {type(event).__name__}")


@dataclass
class PipelineRuntime:
    """State of every log partition this worker owns, and their checkpoints."""

    rules: Rules
    codec: Codec
    store: CheckpointStore
    names: TopicNames
    partitions: dict[int, PartitionState] = field(default_factory=dict)
    # With ingest in the same process: the events it appended, taken instead of decoded.
    handoff: AppendedEvents | None = None

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions (re)assigned or revoked: reload them from their checkpoint when seen."""
        for partition in partitions:
            self.partitions.pop(partition, None)

    def _state(self, partition: int) -> PartitionState:
        state = self.partitions.get(partition)
        if state is None:
            cp = self.store.load(self.names.log, partition)
            if cp is None:
                state = PartitionState(Pipeline(self.rules))
            else:
                resume = cp.resume_offset
                try:
                    # The log between the snapshot and the acknowledged offset is re-applied
                    # silently (its outputs reached the broker before the restart).
                    state = PartitionState(Pipeline.restore(self.rules, cp.state),
                                           OffsetGate(cp.next_offset), silent_until=resume)
                except SnapshotError as exc:
                    # A rules rollout (history was settled by `replay` + `diff --apply`), a
                    # snapshot format from another refstream, or damage: the log has it all.
                    # The state is rebuilt without emitting anything up to the checkpoint;
                    # from there on the running rules decide live.
                    log.warning("partition %d: %s; rebuilding state from offset 0 silently "
                                "up to %d", partition, exc, resume)
                    state = PartitionState(Pipeline(self.rules), silent_until=resume)
                state.acknowledged = resume
            self.partitions[partition] = state
        return state

    def handle(self, partition: int, offset: int, value: bytes | None) -> Decision:
        state = self._state(partition)
        verdict = state.gate.admit(offset)
        if verdict is not None:
            return verdict
        event, outputs = self._fold(state, partition, offset, value)
        return Applied(outputs, event)

    def handle_run(self, partition: int, records: Sequence[Any], start: int,
                   outputs: list[Output], stamps: list[float]) -> int:
        """`handle` for the aiokafka records `records[start:]` of `partition`: their outputs
        are added to `outputs` and, for each record that has some, its log append time (s)
        to `stamps`. Stops at the first record the state must catch up to first and returns
        its index (`len(records)`: every one handled). The gate decides each record as in
        `handle`; an applied one gives its outputs without an `Applied` per record."""
        state = self._state(partition)
        admit = state.gate.admit
        for index in range(start, len(records)):
            record = records[index]
            offset = record.offset
            verdict = admit(offset)
            if verdict is None:
                _, sent = self._fold(state, partition, offset, record.value)
                if sent:
                    outputs.extend(sent)
                    stamps.append(record.timestamp / 1000)
            elif isinstance(verdict, CatchUp):
                return index
            # else Skipped: a redelivery of a record applied already, nothing to send
        return len(records)

    def _fold(self, state: PartitionState, partition: int, offset: int, value: bytes | None
              ) -> tuple[LogEvent | None, list[Output]]:
        """Apply the admitted record at `offset`: its event (None: not a log event, passed
        over) and the outputs to send (none while the partition re-applies silently)."""
        state.dirty = True
        event = self.handoff.take(value) if self.handoff is not None and value else None
        if event is None:
            event = self.codec.decode_log_event(value)
        if event is None:
            log.error("partition %d offset %d: not a log event, passed over", partition, offset)
            return None, []
        derived = state.pipeline.apply(event)
        if not derived or offset < state.silent_until:
            return event, []  # most events derive nothing: no comprehension to run
        return event, [route(self.names, self.codec, d) for d in derived]

    def checkpoint(self) -> int:
        """Commit every partition changed since the last call; returns how many."""
        dirty = self._dirty()
        checkpoints = self._checkpoints(dirty)
        self.store.save(checkpoints)
        for _, s in dirty:
            s.dirty = False
        self.mark_stored(dirty, {cp.partition: cp.next_offset for cp in checkpoints})
        return len(dirty)

    def unacknowledged(self) -> dict[int, int]:
        """Per partition with a snapshot in the store, its next offset, where that is past
        what the store holds as acknowledged: what `acknowledge` would record (once every
        output handed to the producer so far is acknowledged)."""
        return {p: s.gate.next_offset for p, s in sorted(self.partitions.items())
                if s.acknowledged is not None and s.gate.next_offset > s.acknowledged}

    def acknowledge(self, offsets: dict[int, int]) -> dict[int, int]:
        """Record in the store that the outputs before these offsets were acknowledged (an
        O(1) write per partition; no snapshot). Blocking (SQLite): run it in a thread, then
        hand what it returns, the offsets recorded, to `mark_acknowledged` in the loop."""
        return self.store.acknowledge(self.names.log, offsets)

    def mark_acknowledged(self, recorded: dict[int, int]) -> None:
        for partition, offset in recorded.items():
            state = self.partitions.get(partition)
            if state is not None and state.acknowledged is not None:
                state.acknowledged = max(state.acknowledged, offset)

    def mark_stored(self, partitions: list[tuple[int, PartitionState]],
                    committed: dict[int, int]) -> None:
        """These partitions' snapshots were committed at these offsets (a state revoked
        meanwhile is not marked: its next owner loads the checkpoint itself)."""
        for partition, state in partitions:
            if partition in committed and self.partitions.get(partition) is state:
                state.acknowledged = max(state.acknowledged or 0, committed[partition])

    def begin_background_checkpoint(self, *, fork_above: int = -1
                                    ) -> BackgroundCheckpoint | None:
        """Snapshot every changed partition as it is now (None: nothing changed): in a
        forked child when they were folded from more than `fork_above` log records (their
        next offsets summed: an upper bound of the state's size, known without pickling it)
        and the platform forks, else at once in this process. The state may change again at once;
        `BackgroundCheckpoint.finish` commits the snapshot, or marks the partitions changed
        again if the child failed."""
        dirty = self._dirty()
        if not dirty:
            return None
        fork = hasattr(os, "fork") and _records(dirty) > fork_above
        snapshot = (ForkedSnapshot if fork else TakenSnapshot)(lambda: self._checkpoints(dirty))
        for _, s in dirty:
            s.dirty = False
        return BackgroundCheckpoint(self, snapshot, dirty)

    def _dirty(self) -> list[tuple[int, PartitionState]]:
        return [(p, s) for p, s in sorted(self.partitions.items()) if s.dirty]

    def _checkpoints(self, dirty: list[tuple[int, PartitionState]]) -> list[Checkpoint]:
        return [Checkpoint(self.names.log, p, s.gate.next_offset, self.rules.version,
                           s.pipeline.snapshot())
                for p, s in dirty]


def _records(partitions: list[tuple[int, PartitionState]]) -> int:
    return sum(state.gate.next_offset for _, state in partitions)


@dataclass
class BackgroundCheckpoint:
    """A snapshot of these partitions' states, being taken by a forked child or taken in
    this process already, waiting to be committed."""

    runtime: PipelineRuntime
    snapshot: ForkedSnapshot | TakenSnapshot
    partitions: list[tuple[int, PartitionState]]

    def finish(self) -> dict[int, int]:
        """Blocking (run it in a thread): wait for the snapshot (a child's), commit it in one
        transaction; returns partition -> committed next offset."""
        try:
            checkpoints = self.snapshot.collect()
            self.runtime.store.save(checkpoints)
        except BaseException:
            self.retry_later()
            raise
        return {cp.partition: cp.next_offset for cp in checkpoints}

    def committed(self, offsets: dict[int, int]) -> None:
        """In the event loop, after `finish`: the partitions now have a stored snapshot."""
        self.runtime.mark_stored(self.partitions, offsets)

    def retry_later(self) -> None:
        for partition, state in self.partitions:
            if self.runtime.partitions.get(partition) is state:  # still ours
                state.dirty = True
