"""The pipeline stage: refstream.log -> the pure core -> derived topics, a fetch batch at a time.

A mode `Service` the faust app starts and stops with itself (`app.add_dependency`). It owns an
aiokafka consumer in a group of its own (`<app_id>.pipeline`) with its own assignment
listener, and its own producer. faust stays the application (worker, signals, other agents,
timers); only the hot path goes beneath faust's per-message Stream, event and sensor
machinery, which cost more than the core itself (issue #23). Effectively-once is the
runtime's, unchanged: the offset gate admits exactly the next offset of a partition, gaps are
read from the log, and a checkpoint (state + offset) is committed only after every output of
the events it covers was acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from refstream.persistence.checkpoint import SnapshotFailed
from refstream.schemas.events import FraudFlag, LateArrival, RewardDue
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.pipeline_runtime import (
    Applied,
    BackgroundCheckpoint,
    CatchUp,
    Output,
    PipelineRuntime,
)
from refstream.streams.settings import Settings
from refstream.streams.stage import ConsumerStage
from refstream.streams.supervision import CrashPolicy

log = logging.getLogger("refstream.pipeline")

# A forked snapshot child still busy after this long is stopped (and its partitions retried).
SNAPSHOT_TIMEOUT_S = 300.0

# (partition, gap, still owned?) -> batches of the log records the state lacks.
GapReader = Callable[[int, CatchUp, Callable[[], bool]], AsyncIterator[list[Any]]]


@dataclass
class CheckpointPacing:
    """When the next snapshot of the state is due; callers pass `now` (monotonic seconds).

    A snapshot costs O(state) (seconds at a million events), in the forked child or in the
    worker. Spaced `cost / share` apart, snapshotting takes at most `share` of the wall time
    however large the state grows; never less than `interval_s` apart, and never more than
    `max_interval_s` (at least `interval_s`), which bounds what a restart re-applies from the
    log: the events since the last committed snapshot, at most `max_interval_s` plus one
    snapshot's cost. Between snapshots, checkpoints record only acknowledged offsets (O(1)),
    so what a crash sends again stays bounded by `interval_s` whatever this spacing.
    """

    interval_s: float
    max_interval_s: float
    share: float
    started: float = 0.0  # when the last checkpoint began
    cost_s: float = 0.0  # what the last snapshot took, from its start until committed

    @classmethod
    def from_settings(cls, settings: Settings, now: float) -> CheckpointPacing:
        return cls(settings.checkpoint_interval_s, settings.checkpoint_max_interval_s,
                   settings.checkpoint_snapshot_share, now)

    def spacing(self) -> float:
        """Seconds from one checkpoint's start to the next one's."""
        longest = max(self.interval_s, self.max_interval_s)
        return min(max(self.interval_s, self.cost_s / self.share), longest)

    def due(self, now: float) -> bool:
        return now - self.started >= self.spacing()


class PipelineStage(ConsumerStage):
    """Consumes the canonical log in fetch batches and runs the core over them.

    A failure of the consuming loop is handed to `crash` (streams/supervision.py: health
    503, the process stops and exits 1) under the name the pipeline agent had."""

    name = "refstream.pipeline"
    stage = "pipeline"

    def __init__(self, settings: Settings, runtime: PipelineRuntime, metrics: WorkerMetrics,
                 health: Health, gap_reader: GapReader, *, crash: CrashPolicy | None = None,
                 **kwargs: Any) -> None:
        self.settings = settings
        self.crash_policy = crash
        self.runtime = runtime
        self.metrics = metrics
        self.health = health
        health.expect(self.stage)  # not ready until this stage has its partitions
        self.gap_reader = gap_reader
        self.topic = runtime.names.log
        # Held while a batch is applied and its outputs handed to the producer, and while
        # checkpointing: a checkpoint never includes an event whose outputs are not sent.
        self.batch_lock = asyncio.Lock()
        # A batch cut short (cancelled at shutdown) leaves state ahead of its outputs: no
        # checkpoint is taken from it.
        self.consistent = True
        self.pacing = CheckpointPacing.from_settings(settings, time.monotonic())
        # The forked snapshot in flight (at most one: checkpoints land in order).
        self.pending: asyncio.Future[None] | None = None
        # Between snapshots, every checkpoint_interval_s: the offsets whose outputs the
        # broker acknowledged are recorded (O(1)); at most one such write in flight.
        self.acknowledging: asyncio.Future[None] | None = None
        self.last_acknowledged = time.monotonic()
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        s = self.settings
        self.new_consumer(s, s.pipeline_max_records)
        await self.start_producer(s)
        await self.subscribe(s, [self.topic])

    async def on_stop(self) -> None:
        # mode calls this before it cancels the consuming task: wait for the batch in hand,
        # then commit what it did (SIGTERM drains; the loop takes no batch after this), if
        # its outputs are acknowledged within the drain bound. With the broker down they are
        # not: no checkpoint then (it would run ahead of its outputs); the next start redoes
        # the batch.
        if not self.subscribed:
            return  # stopped before it started: nothing was applied, nothing to checkpoint
        bound = self.settings.drain_timeout_s
        try:
            await asyncio.wait_for(self.batch_lock.acquire(), timeout=bound)
        except TimeoutError:
            log.warning("final checkpoint skipped: the batch in hand did not finish within "
                        "%.0fs; the next start resumes from the last checkpoint", bound)
            return
        try:
            if not self.consistent:
                return
            try:
                await asyncio.wait_for(self._outputs_acknowledged(), timeout=bound)
            except TimeoutError:
                log.warning("final checkpoint skipped: outputs not acknowledged within "
                            "%.0fs; the next start resumes from the last checkpoint", bound)
                return
            except KafkaError as exc:
                log.error("final checkpoint skipped, outputs not acknowledged: %s", exc)
                return
            await self.checkpoint(final=True)
            log.info("final checkpoint committed")
        except KafkaError as exc:
            log.error("final checkpoint: group offsets not committed: %s", exc)
        finally:
            self.batch_lock.release()

    async def _outputs_acknowledged(self) -> None:
        await self._finish_pending()
        if self.acknowledging is not None:
            await self.acknowledging
        assert self.producer is not None
        await self.producer.flush()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.health.revoked(self.stage)
        async with self.batch_lock:
            # Unsaved work of a revoked partition is redone by its next owner, identically.
            self.runtime.forget(tp.partition for tp in revoked if tp.topic == self.topic)
        self.forget_lag(self.metrics, revoked)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Start each partition at its checkpoint when the group's offset is behind it, so
        a restart does not re-read what the checkpoint already holds. The offset gate keeps
        correctness either way; this only saves the reading."""
        assert self.consumer is not None
        checkpoints = self.runtime.store.offsets()
        for tp in assigned:
            stored = checkpoints.get((tp.topic, tp.partition))
            if stored is None:
                continue
            committed = await self.consumer.committed(tp)
            if committed is None or committed < stored:
                self.consumer.seek(tp, stored)
        self.health.assigned(self.stage)

    # ---------------------------------------------------------------- the hot path

    async def consume_batches(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            fetched = await self.fetch()
            async with self.batch_lock:
                if self.should_stop:
                    break
                if fetched:
                    self.consistent = False
                    owned = self.consumer.assignment()
                    for tp, records in fetched.items():
                        if tp in owned:  # revoked meanwhile: the next owner does them
                            await self._apply_batch(tp.partition, records)
                    self.consistent = True
                # Never waits for a snapshot still in flight (the loop would stall for the
                # rest of its O(state) pickling): the next checkpoint starts after it.
                now = time.monotonic()
                in_flight = self.pending is not None and not self.pending.done()
                if (not in_flight and self.pacing.due(now)
                        and any(state.dirty for state in self.runtime.partitions.values())):
                    await self.checkpoint()
                elif (now - self.last_acknowledged >= self.settings.checkpoint_interval_s
                      and (self.acknowledging is None or self.acknowledging.done())):
                    self.last_acknowledged = now
                    offsets = self.runtime.unacknowledged()
                    if offsets:
                        self.acknowledging = asyncio.ensure_future(self._acknowledge(offsets))

    async def _apply_batch(self, partition: int, records: list[Any]) -> None:
        outputs: list[Output] = []
        stamps: list[float] = []
        done = self.runtime.handle_run(partition, records, 0, outputs, stamps)
        while done < len(records):
            # The state is behind this record: read the gap first, then handle it (once: a
            # gap not read, the partition having moved away meanwhile, passes it over).
            record = records[done]
            decision = self.runtime.handle(partition, record.offset, record.value)
            if isinstance(decision, CatchUp):
                await self._catch_up(partition, decision)
                decision = self.runtime.handle(partition, record.offset, record.value)
            if isinstance(decision, Applied) and decision.outputs:
                outputs.extend(decision.outputs)
                stamps.append(record.timestamp / 1000)
            done = self.runtime.handle_run(partition, records, done + 1, outputs, stamps)
        await self._send(outputs)
        now = time.time()
        for appended in stamps:
            self.metrics.latency.observe(max(0.0, now - appended))
        self.metrics.events_in.labels(self.topic).inc(len(records))

    async def _catch_up(self, partition: int, gap: CatchUp) -> None:
        state = self.runtime.partitions.get(partition)

        def owned() -> bool:
            return self.runtime.partitions.get(partition) is state

        async for records in self.gap_reader(partition, gap, owned):
            outputs: list[Output] = []
            for record in records:
                decision = self.runtime.handle(partition, record.offset, record.value)
                if isinstance(decision, Applied):
                    outputs.extend(decision.outputs)
            await self._send(outputs)

    async def _send(self, outputs: list[Output]) -> None:
        """Hand a batch's outputs to the producer, one record batch per topic partition.
        Delivery is awaited once per checkpoint (`flush`), not per record."""
        if not outputs:
            return
        assert self.sender is not None
        await self.sender.send((output.topic, output.key, output.value) for output in outputs)
        count_outputs(self.metrics, outputs)

    # ---------------------------------------------------------------- checkpoints

    async def checkpoint(self, *, final: bool = False) -> None:
        """1. every output sent so far is acknowledged; 2. state + offsets committed in one
        transaction; 3. the group's offsets follow (informational: the gate decides).
        The snapshot is taken by a forked child (the loop pays only the fork), or, for a
        state folded from at most `checkpoint_inline_max_events` records, pickled at once in
        the worker (the loop pays the pickling, and no copy-on-write); either way step 1 and
        the commit then run off the batch lock. With `final` or background snapshots
        switched off, all three run here, in order.
        At most one snapshot is in flight, so checkpoints land in order. Spaced by
        `CheckpointPacing`.

        The snapshot holds the state after every output already handed to the producer;
        step 1 then runs in `_complete`, off the batch lock (the stage goes on consuming
        while the broker acknowledges), and the snapshot is committed only after it."""
        assert self.producer is not None and self.consumer is not None
        await self._finish_pending()
        started = time.perf_counter()
        self.pacing.started = time.monotonic()
        if self.settings.checkpoint_in_background and not final:
            pending = self.runtime.begin_background_checkpoint(
                fork_above=self.settings.checkpoint_inline_max_events)
            if pending is not None:
                # The fork, or the pickling of a small state: what the loop paid for it.
                taken_s = time.perf_counter() - started
                self.pending = asyncio.ensure_future(self._complete(pending, taken_s))
        else:
            await self.producer.flush()
            started_snapshot = time.perf_counter()
            self.runtime.checkpoint()
            self.pacing.cost_s = time.perf_counter() - started_snapshot
            self.metrics.checkpoint_snapshot_seconds.observe(self.pacing.cost_s)
            await self._commit_group_offsets({
                p: s.gate.next_offset for p, s in self.runtime.partitions.items()})
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        for partition, state in self.runtime.partitions.items():
            tp = TopicPartition(self.topic, partition)
            # A rebalance may have revoked it a moment ago: aiokafka then asserts.
            if tp not in self.consumer.assignment():
                continue
            try:
                highwater = self.consumer.highwater(tp)
            except AssertionError:
                continue
            if highwater is not None:
                self.metrics.lag.labels(self.topic, str(partition)).set(
                    max(0, highwater - state.gate.next_offset))

    async def _acknowledge(self, offsets: dict[int, int]) -> None:
        """Between snapshots: once the producer has acknowledged every output handed to it
        (those of every record before `offsets`, and maybe more), record the offsets: a
        restart then re-applies the log from the last snapshot up to them silently and
        re-sends nothing before them. Off the batch lock: the stage goes on consuming."""
        assert self.producer is not None
        try:
            await self.producer.flush()
        except KafkaError as exc:
            log.info("outputs not acknowledged (%s); offsets recorded at the next interval", exc)
            return
        try:
            recorded = await asyncio.to_thread(self.runtime.acknowledge, offsets)
        except sqlite3.Error as exc:
            log.error("acknowledged offsets not recorded, retried at the next interval: %s", exc)
            return
        self.runtime.mark_acknowledged(recorded)
        self.metrics.checkpoint_acknowledged.inc()
        await self._commit_group_offsets(recorded)

    async def _complete(self, pending: BackgroundCheckpoint, taken_s: float = 0.0) -> None:
        started = time.perf_counter() - taken_s
        assert self.producer is not None
        try:
            # Every output of the events the snapshot holds was handed to the producer
            # before the fork: acknowledged once this returns.
            await self.producer.flush()
        except BaseException:
            pending.snapshot.abandon()  # nothing of it may be committed now
            with contextlib.suppress(SnapshotFailed, OSError):
                pending.snapshot.collect()  # reaps the child
            pending.retry_later()
            raise
        # A child that hangs is stopped; its partitions are checkpointed next time.
        timer = asyncio.get_running_loop().call_later(SNAPSHOT_TIMEOUT_S,
                                                      pending.snapshot.abandon)
        try:
            committed = await asyncio.to_thread(pending.finish)
        except (SnapshotFailed, OSError, sqlite3.Error) as exc:
            log.error("checkpoint not committed, retried at the next interval: %s", exc)
            return
        finally:
            timer.cancel()
        pending.committed(committed)
        self.pacing.cost_s = time.perf_counter() - started
        self.metrics.checkpoint_snapshot_seconds.observe(self.pacing.cost_s)
        await self._commit_group_offsets(committed)

    async def _finish_pending(self) -> None:
        if self.pending is not None:
            await self.pending
            self.pending = None

    async def _commit_group_offsets(self, committed: dict[int, int]) -> None:
        assert self.consumer is not None
        owned = self.consumer.assignment()
        offsets = {tp: committed[tp.partition] for tp in owned if tp.partition in committed}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance is under way; the checkpoint is what counts, the next one commits.
            log.info("group offsets not committed (%s); the checkpoint holds them", exc)


def count_outputs(metrics: WorkerMetrics, outputs: Iterable[Output]) -> None:
    """The output counters, updated once per batch (a counter update costs a lock)."""
    per_topic: Counter[str] = Counter()
    rewards: Counter[str] = Counter()
    amounts: Counter[str] = Counter()
    flags: Counter[str] = Counter()
    late: Counter[str] = Counter()
    for output in outputs:
        per_topic[output.topic] += 1
        event = output.event
        if isinstance(event, RewardDue):
            rewards[event.currency] += 1
            amounts[event.currency] += event.amount_minor
        elif isinstance(event, FraudFlag):
            flags[event.signal] += 1
        elif isinstance(event, LateArrival):
            late[event.late_event_type] += 1
    for topic, n in per_topic.items():
        metrics.events_out.labels(topic).inc(n)
    for currency, n in rewards.items():
        metrics.rewards_due.labels(currency).inc(n)
        metrics.rewards_due_amount.labels(currency).inc(amounts[currency])
    for signal, n in flags.items():
        metrics.fraud_flags.labels(signal).inc(n)
    for event_type, n in late.items():
        metrics.late_events.labels(event_type).inc(n)
