"""Ingest's merge of a shop's topics into one event-time order (Kafka Streams' task idling).

Per co-partition (partition p of every shop topic), ingest releases the record with the
earliest event time among the heads of its topic-partitions; while one of them is empty, a
record waits a bounded wall time before it leaves without it (`max.task.idle.ms`), so a
stall delays the log instead of reordering it. No Kafka, no clock: callers pass `now`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
TopicPartition = tuple[str, int]


def by_partition(topic: str, partition: int) -> Hashable:
    """The co-partition of the shared shop topics: the partition number."""
    return partition


@dataclass(frozen=True, slots=True)
class Released(Generic[Item]):
    """A record leaving the merge, in the order to act on it.

    `occurred_at` is None for a record with nothing to append (a dead letter, a duplicate):
    it only has to leave in its topic-partition's offset order, so its offset is committed
    no earlier than those before it. `waited_out`: it left after waiting out its bound while
    a topic-partition of its co-partition was empty.
    """

    tp: TopicPartition
    offset: int
    occurred_at: int | None
    item: Item
    waited_out: bool


@dataclass(slots=True)
class _Entry(Generic[Item]):
    offset: int
    occurred_at: int | None
    item: Item
    arrival: int
    arrived_at: float


class EventTimeMerge(Generic[Item]):
    """Buffers records per topic-partition and releases them per co-partition by event time.

    A record leaves when it has the earliest event time among the heads of its
    co-partition's topic-partitions and none of them is empty, or when some are empty and
    it has waited `idle_s` since it arrived. So the output is in event-time order whenever
    every record arrives less than `idle_s` after every record with a later event time; within
    one topic-partition the offset order is always kept (it is the producer's order). Ties in
    event time go to the record that arrived first.
    """

    def __init__(self, idle_s: float,
                 group_of: Callable[[str, int], Hashable] = by_partition) -> None:
        if idle_s < 0:
            raise ValueError(f"the merge's wait bound must be >= 0 seconds, got {idle_s}")
        self.idle_s = idle_s
        self._group_of = group_of
        self._lanes: dict[TopicPartition, deque[_Entry[Item]]] = {}
        self._groups: dict[Hashable, list[TopicPartition]] = {}
        self._pushed = 0

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Topic-partitions this worker now reads: their co-partitions wait for them."""
        for tp in tps:
            if tp not in self._lanes:
                self._lanes[tp] = deque()
                self._groups.setdefault(self._group_of(*tp), []).append(tp)

    def revoke(self, tps: Iterable[TopicPartition]) -> int:
        """Forget topic-partitions moved away; returns how many buffered records went with
        them (never acknowledged, so their next owner reads them again)."""
        dropped = 0
        for tp in tps:
            lane = self._lanes.pop(tp, None)
            if lane is None:
                continue
            dropped += len(lane)
            group = self._group_of(*tp)
            members = self._groups[group]
            members.remove(tp)
            if not members:
                del self._groups[group]
        return dropped

    @property
    def buffered(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def push(self, tp: TopicPartition, offset: int, occurred_at: int | None, item: Item,
             now: float) -> None:
        """Buffer one record (in its topic-partition's offset order) that arrived at `now`."""
        if tp not in self._lanes:
            self.assign([tp])
        self._pushed += 1
        self._lanes[tp].append(_Entry(offset, occurred_at, item, self._pushed, now))

    def release(self, now: float) -> list[Released[Item]]:
        """Every record that may leave at `now`, in order (per co-partition, by event time)."""
        out: list[Released[Item]] = []
        for members in self._groups.values():
            self._release_group(members, now, out)
        return out

    def next_deadline(self) -> float | None:
        """When a co-partition waiting for an empty topic-partition stops waiting."""
        deadlines = []
        for members in self._groups.values():
            lanes = [self._lanes[tp] for tp in members]
            heads = [lane[0] for lane in lanes if lane]
            if heads and len(heads) < len(lanes):
                first = min(heads, key=lambda e: (e.occurred_at or 0, e.arrival))
                deadlines.append(first.arrived_at + self.idle_s)
        return min(deadlines, default=None)

    def _release_group(self, members: list[TopicPartition], now: float,
                       out: list[Released[Item]]) -> None:
        lanes = [(tp, self._lanes[tp]) for tp in members]
        while True:
            # Records with nothing to append leave as soon as they reach their lane's head.
            for tp, lane in lanes:
                while lane and lane[0].occurred_at is None:
                    entry = lane.popleft()
                    out.append(Released(tp, entry.offset, None, entry.item, False))
            head_tp: TopicPartition | None = None
            head_lane: deque[_Entry[Item]] | None = None
            head_key = (0, 0)
            some_empty = False
            for tp, lane in lanes:
                if not lane:
                    some_empty = True
                    continue
                first = lane[0]
                key = (first.occurred_at or 0, first.arrival)
                if head_lane is None or key < head_key:
                    head_tp, head_lane, head_key = tp, lane, key
            if head_tp is None or head_lane is None:
                return
            if some_empty and now - head_lane[0].arrived_at < self.idle_s:
                return  # an empty topic-partition may still deliver something earlier
            entry = head_lane.popleft()
            out.append(Released(head_tp, entry.offset, entry.occurred_at, entry.item,
                                some_empty))
