"""The ingest stage: shop topics -> validated, pseudonymised, event-time-merged refstream.log.

A mode `Service` the faust app starts and stops with itself, like the pipeline stage: it owns
an aiokafka consumer in a group of its own (`<app_id>.ingest`) with its own assignment
listener, and its own idempotent producer, and takes the shop topics a fetch batch at a
time. Offsets are committed by the stage itself, never past a record that has not left the
event-time merge (streams/merge.py) and been acknowledged by the broker: the producer is
flushed first, and a topic-partition's offset is the one after its last record that left in
order. A crash therefore re-reads what was not committed (the core dedupes event ids); it
never skips a record. faust's own acknowledgement bookkeeping is not used: it commits the
first run of consecutive acknowledged offsets it holds, which a merge releasing records
across a rebalance can make run past a record still buffered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from refstream.schemas.codec import Codec
from refstream.schemas.events import LogEvent, Tick
from refstream.streams.handoff import AppendedEvents
from refstream.streams.ingest import (
    Accepted,
    Duplicate,
    Ingestor,
    MergeMetrics,
    Rejected,
)
from refstream.streams.merge import EventTimeMerge
from refstream.streams.metrics import Health, WorkerMetrics
from refstream.streams.reachable import start_when_reachable
from refstream.streams.settings import Settings
from refstream.streams.stage import ConsumerStage
from refstream.streams.supervision import CrashPolicy
from refstream.streams.topics import TopicNames, stage_group

log = logging.getLogger("refstream.ingest")

# Records ingest takes between two turns of the event loop. A full fetch (5,000 records) is
# a few hundred milliseconds of validation; in a worker that also runs the pipeline, the
# pipeline's records would wait that long behind it (issue #23's latency in one process).
# At 30 to 60 µs of CPU a record (bench_kafka's CPU per event, quiet and busy machine), 256
# hold the loop about 8 to 15 ms.
RECORDS_PER_TURN = 256


class QuietShops:
    """When each shop's last event was appended, in event time and in wall time."""

    def __init__(self) -> None:
        self.last_event_ms: dict[str, int] = {}
        self.last_wall_s: dict[str, float] = {}
        self.partition_of: dict[str, int] = {}

    def saw(self, shop_id: str, occurred_at: int, wall_s: float, partition: int) -> None:
        if occurred_at >= self.last_event_ms.get(shop_id, occurred_at):
            self.last_event_ms[shop_id] = occurred_at
        self.last_wall_s[shop_id] = wall_s
        self.partition_of[shop_id] = partition

    def forget_partitions(self, partitions: set[int]) -> None:
        """Shops whose partition moved to another worker are that worker's to tick."""
        for shop_id in [s for s, p in self.partition_of.items() if p in partitions]:
            del self.last_event_ms[shop_id], self.last_wall_s[shop_id], self.partition_of[shop_id]

    def due_ticks(self, wall_s: float, interval_s: float) -> list[tuple[str, int]]:
        """(shop, stream time to announce) for shops quiet for at least one interval.

        Time keeps passing for a quiet live shop: the tick carries the wall-clock time, and
        never less than the shop's latest event time, so stream time never goes backwards.
        """
        wall_ms = int(wall_s * 1000)
        return [(shop_id, max(self.last_event_ms[shop_id], wall_ms))
                for shop_id in sorted(self.last_wall_s)
                if wall_s - self.last_wall_s[shop_id] >= interval_s]


class IngestStage(ConsumerStage):
    """Reads the shop topics in fetch batches, appends accepted events to the log in each
    shop's event-time order, dead-letters the rest, and ticks quiet shops.

    A failure of the consuming loop is handed to `crash` (health 503, exit 1)."""

    name = "refstream.ingest"
    stage = "ingest"

    def __init__(self, settings: Settings, names: TopicNames, codec: Codec,
                 ingestor: Ingestor, *, topics: Sequence[str],
                 topic_shop: Callable[[str], str | None], allowed_lateness_ms: int,
                 metrics: WorkerMetrics, health: Health, crash: CrashPolicy | None = None,
                 handoff: AppendedEvents | None = None, **kwargs: Any) -> None:
        self.settings = settings
        self.names = names
        self.codec = codec
        self.ingestor = ingestor
        self.topics = list(topics)
        # The rules' allowed lateness: an append further behind its shop's latest counts
        # as late (the core reports it as a LateArrival too).
        self.allowed_lateness_ms = allowed_lateness_ms
        self.metrics = metrics
        self.health = health
        health.expect(self.stage)  # not ready until this stage has its partitions
        self.crash_policy = crash
        # With the pipeline in the same process: what was appended, for it to take.
        self.handoff = handoff
        # A shop's topics are co-partitioned (same key, same partition count), so partition
        # p of each is merged by event time; a shop's own topics form their own group.
        # Items: the log event to append, or None (a duplicate or a dead letter: only its
        # offset is acknowledged once every record before it has left).
        self.merge: EventTimeMerge[LogEvent | None] = EventTimeMerge(
            settings.merge_idle_s, lambda topic, partition: (topic_shop(topic), partition))
        self.merge_metrics = MergeMetrics.register(metrics.registry)
        self.quiet = QuietShops()
        # Held while a fetch batch is merged and its appends handed to the producer, and
        # while offsets are committed or partitions change hands.
        self.lock = asyncio.Lock()
        # Bumped at every rebalance: a fetch returned before it and processed after it
        # holds records the new assignment reads again from the committed offsets.
        self.generation = 0
        # Per topic-partition: the offset after the last record that left the merge in order
        # (what may be committed once the producer is flushed), and what was committed.
        self.done: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.last_commit = time.monotonic()
        self.last_tick = time.monotonic()
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        s = self.settings
        await self._seed_from_faust_group()
        # The range assignor hands partition p of every shop topic (same partition count)
        # to the same member: the co-partition the merge orders by event time.
        self.new_consumer(s, s.ingest_max_records,
                          partition_assignment_strategy=(RangePartitionAssignor,))
        await self.start_producer(s)
        await self.subscribe(s, self.topics)

    async def on_stop(self) -> None:
        # Before mode cancels the consuming task: finish the batch in hand, then commit what
        # left the merge, if the broker acknowledges it within the drain bound. Records
        # still buffered in the merge are read again by the next start.
        if not self.subscribed:
            return  # stopped before it started: nothing was read, nothing to commit
        bound = self.settings.drain_timeout_s
        try:
            await asyncio.wait_for(self.lock.acquire(), timeout=bound)
        except TimeoutError:
            log.warning("final commit skipped: the batch in hand did not finish within %.0fs",
                        bound)
            return
        try:
            await asyncio.wait_for(self._commit(), timeout=bound)
        except (TimeoutError, KafkaError) as exc:
            log.warning("final commit skipped (%s); the next start re-reads from the last "
                        "commit", exc or "outputs not acknowledged in time")
        finally:
            self.lock.release()

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.health.revoked(self.stage)
        async with self.lock:
            self.generation += 1
            # What left the merge is committed now, so the next owner does not redo it.
            try:
                await self._commit(only=revoked)
            except KafkaError as exc:
                log.info("offsets of revoked partitions not committed (%s); their next "
                         "owner re-reads from the last commit", exc)
            # Buffered records go with their partitions (uncommitted: read again there).
            for log_event in self.merge.revoke((tp.topic, tp.partition) for tp in revoked):
                if log_event is not None:
                    self.ingestor.forget(log_event)
            partitions = {tp.partition for tp in revoked}
            self.merge_metrics.forget(partitions)
            self.quiet.forget_partitions(partitions)
            for tp in revoked:
                self.done.pop(tp, None)
                self.committed.pop(tp, None)
            self.forget_lag(self.metrics, revoked)
            self.merge_metrics.buffered.set(self.merge.buffered)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            self.generation += 1
            self.merge.assign((tp.topic, tp.partition) for tp in assigned)
        self.health.assigned(self.stage)

    async def _seed_from_faust_group(self) -> None:
        """A deployment upgraded from ingest as a faust agent: before this stage's group is
        joined, every shop topic-partition it holds no offset for is given the offset faust's
        group (the app id) committed, so the first start reads on from there like from any
        committed offset, instead of reading every shop topic again from the start.

        Done before joining, not by a seek in the assignment listener: the fetcher may already
        have handed out records read from the beginning while the listener looked the offsets
        up (the earlier seek's failure). Workers starting together write the same offsets, and
        the broker refuses a commit from outside the group once it has members."""
        s = self.settings
        group = stage_group(s.app_id, self.stage)
        bootstrap = s.kafka_bootstrap.split(",")
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            request_timeout_ms=int(min(30.0, s.client_timeout_s) * 1000),
            **s.aiokafka_security())
        try:
            await start_when_reachable(admin.start, "ingest's offset lookup",
                                       s.kafka_bootstrap, s.client_timeout_s)
            legacy = await admin.list_consumer_group_offsets(s.app_id)
            own = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            log.warning("faust's group offsets not read (%s): shop topic-partitions without "
                        "an offset of this stage's own start at the beginning", exc)
            return
        finally:
            await admin.close()
        topics = set(self.topics)
        seed = {tp: meta.offset for tp, meta in legacy.items()
                if tp.topic in topics and meta.offset >= 0
                and (tp not in own or own[tp].offset < 0)}
        if not seed:
            return
        seeder = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                  enable_auto_commit=False, **s.aiokafka_security())
        try:
            await start_when_reachable(seeder.start, "ingest's offset seeding",
                                       s.kafka_bootstrap, s.client_timeout_s)
            seeder.assign(list(seed))
            await seeder.commit(seed)
        except KafkaError as exc:
            log.warning("faust's group offsets not copied to %s (%s): its members' own "
                        "offsets, or the beginning, apply", group, exc)
            return
        finally:
            await seeder.stop()
        for tp, offset in sorted(seed.items()):
            log.info("%s[%d]: first start of the ingest stage, resuming at faust's committed "
                     "offset %d", tp.topic, tp.partition, offset)

    # ---------------------------------------------------------------- the hot path

    async def consume_batches(self) -> None:
        while not self.should_stop:
            # Records whose merge bound passes while this waits leave together after it, at
            # most one fetch wait late: waking at each record's own bound (every half
            # millisecond at 2,000 events/s) spun the loop on one-record appends.
            fetched = await self.fetch()
            # aiokafka returns only records at the current assignment's positions; a
            # rebalance that completes before the lock is ours resets those positions to
            # the committed offsets, so this fetch will be read again: drop it then.
            generation = self.generation
            async with self.lock:
                if self.should_stop:
                    break
                if fetched and generation == self.generation:
                    await self._ingest(fetched)
                await self._release()
                now = time.monotonic()
                if now - self.last_commit >= self.settings.ingest_commit_interval_s:
                    await self._commit()
                if (self.settings.tick_interval_s > 0
                        and now - self.last_tick >= self.settings.tick_interval_s):
                    await self._tick_quiet_shops()

    async def _ingest(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        now, now_ms = time.monotonic(), int(time.time() * 1000)
        dead: list[tuple[str, bytes, bytes]] = []
        merge, ingestor, names = self.merge, self.ingestor, self.names
        dead_letters = duplicates = taken = 0
        for tp, records in fetched.items():
            key = (tp.topic, tp.partition)
            if not merge.owns(key) or not records:
                continue
            expected_type = names.event_type_of(tp.topic)
            for record in records:
                taken += 1
                if taken % RECORDS_PER_TURN == 0:
                    await asyncio.sleep(0)  # let the other stages' ready work run
                match ingestor.accept(record.value, record, expected_type, now_ms=now_ms):
                    case Accepted(log_event):
                        merge.push(key, record.offset, log_event, now,
                                   shop=log_event.shop_id, occurred_at=log_event.occurred_at)
                        continue
                    case Duplicate():
                        duplicates += 1
                    case Rejected(dead_letter):
                        dead_letters += 1
                        log.warning("dead letter from %s[%d]@%d: %s", tp.topic, tp.partition,
                                    record.offset, dead_letter.error[:300])
                        dead.append((names.dlq, record.key or b"",
                                     self.codec.encode(dead_letter)))
                merge.push(key, record.offset, None, now)
            self.metrics.events_in.labels(tp.topic).inc(len(records))
            self.report_lag(self.metrics, tp, records[-1].offset + 1)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        if dead:
            self.metrics.dead_letters.inc(dead_letters)
            assert self.sender is not None
            await self.sender.send(dead)

    async def _release(self) -> None:
        """Append what the merge lets go, then note the offsets it lets be committed."""
        batch = self.merge.release(time.monotonic())
        if batch.appends:
            wall = time.time()
            log_topic, encode, saw = self.names.log, self.codec.encode, self.quiet.saw
            handoff = self.handoff
            appends: list[tuple[str, bytes, bytes]] = []
            for released in batch.appends:
                saw(released.shop, released.occurred_at, wall, released.tp[1])
                log_event = released.item
                assert log_event is not None  # only accepted events are pushed to append
                value = encode(log_event)
                if handoff is not None:
                    handoff.put(value, log_event)
                appends.append((log_topic, released.shop.encode(), value))
            self.merge_metrics.appended_batch(batch.appends, self.allowed_lateness_ms)
            assert self.sender is not None
            await self.sender.send(appends)
            self.metrics.events_out.labels(log_topic).inc(len(appends))
        for (topic, partition), offset in batch.acked.items():
            self.done[TopicPartition(topic, partition)] = offset
        self.merge_metrics.buffered.set(self.merge.buffered)

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        """Flush the producer, then commit each owned topic-partition's offset after the
        last record that left the merge in order (and was therefore sent)."""
        self.last_commit = time.monotonic()
        consumer, producer = self.consumer, self.producer
        assert consumer is not None and producer is not None
        owned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self.done.items()
                   if tp in owned and (only is None or tp in only)
                   and self.committed.get(tp) != offset}
        if not offsets:
            return
        await producer.flush()
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance is under way, or the broker is away: the next commit (or the next
            # owner, re-reading) takes it from here.
            log.info("ingest offsets not committed (%s); retried at the next commit", exc)
            return
        self.committed.update(offsets)

    async def _tick_quiet_shops(self) -> None:
        now = time.time()
        self.last_tick = time.monotonic()
        ticks = []
        for shop_id, stream_time in self.quiet.due_ticks(now, self.settings.tick_interval_s):
            tick = Tick(f"tick:{shop_id}:{stream_time}", shop_id, stream_time)
            ticks.append((self.names.log, shop_id.encode(), self.codec.encode(tick)))
            self.quiet.saw(shop_id, stream_time, now, self.quiet.partition_of[shop_id])
        if ticks:
            assert self.sender is not None
            await self.sender.send(ticks)
            self.metrics.ticks.inc(len(ticks))
