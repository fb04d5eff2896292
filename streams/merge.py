"""Ingest's merge of a shop's topics into one event-time order (Kafka Streams' task idling).

Per shop, within its co-partition (partition p of every shop topic), ingest appends the
record with the earliest event time among the heads of the shop's records on each topic;
while the shop has nothing buffered on one of them, a record waits a bounded wall time
before it leaves without it (`max.task.idle.ms`), so a stall delays the log instead of
reordering it. Offsets are acknowledged in each topic-partition's order, only once every
record up to them has left. No Kafka, no clock: callers pass `now`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from heapq import heapify, heappop, heappush
from typing import Generic, TypeVar

Item = TypeVar("Item")
TopicPartition = tuple[str, int]


# The next head when no other lane has one: after every event time (an Avro long).
_NO_NEXT = (1 << 63, 0, 0)


def by_partition(topic: str, partition: int) -> Hashable:
    """The co-partition of the shared shop topics: the partition number."""
    return partition


@dataclass(slots=True)
class Released(Generic[Item]):
    """A shop record the merge buffered; once `release` hands it out, a record to append
    now. `waited_out`: it left after waiting out the bound while its shop had nothing
    buffered on some topic of its co-partition. (The buffered entry itself is handed out,
    not a copy built per record appended.)"""

    tp: TopicPartition
    offset: int
    shop: str
    occurred_at: int
    item: Item
    waited_out: bool = False
    # Which record arrived first (ties in event time), when (wall time), and whether it left.
    arrival: int = 0
    arrived_at: float = 0.0
    left: bool = False


@dataclass(slots=True)
class Batch(Generic[Item]):
    """What a `release` lets go: records to append (in order), then records whose offsets
    may be acknowledged (each topic-partition's in offset order; acknowledge them only after
    the appends were handed to the producer), and per topic-partition the offset after the
    last of those (what a consumer commits)."""

    appends: list[Released[Item]] = field(default_factory=list)
    acks: list[Item] = field(default_factory=list)
    acked: dict[TopicPartition, int] = field(default_factory=dict)


class EventTimeMerge(Generic[Item]):
    """Buffers shop records and releases each shop's by event time.

    A record leaves when it has the earliest event time among its shop's heads on the
    topic-partitions of its co-partition and none of them is empty, or when some are empty
    and it has waited `idle_s` since it arrived. So a shop's appends are in event-time order
    whenever each of its records arrives less than `idle_s` after every record of the shop
    with a later event time; a topic-partition's own order is always kept for a shop (it is
    the producer's). Ties in event time go to the record that arrived first.
    """

    def __init__(self, idle_s: float,
                 group_of: Callable[[str, int], Hashable] = by_partition) -> None:
        if idle_s < 0:
            raise ValueError(f"the merge's wait bound must be >= 0 seconds, got {idle_s}")
        self.idle_s = idle_s
        self._group_of = group_of
        # Every buffered record of a topic-partition, in offset order (for acknowledging).
        self._by_tp: dict[TopicPartition, deque[Released[Item] | _Done[Item]]] = {}
        self._groups: dict[Hashable, list[TopicPartition]] = {}
        # A shop's records on one topic-partition, in offset order (for merging).
        self._lanes: dict[tuple[TopicPartition, str], deque[Released[Item]]] = {}
        # Per co-partition, the shops with buffered records there, and how many.
        self._shops: dict[Hashable, dict[str, int]] = {}
        # The co-partition of each assigned topic-partition (`group_of` is asked once).
        self._group: dict[TopicPartition, Hashable] = {}
        self._pushed = 0

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Topic-partitions this worker now reads: their co-partitions wait for them."""
        for tp in tps:
            if tp not in self._by_tp:
                self._by_tp[tp] = deque()
                group = self._group[tp] = self._group_of(*tp)
                self._groups.setdefault(group, []).append(tp)

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._by_tp

    def revoke(self, tps: Iterable[TopicPartition]) -> list[Item]:
        """Forget topic-partitions moved away; returns the buffered records that went with
        them (never acknowledged, so their next owner reads them again)."""
        dropped: list[Item] = []
        for tp in tps:
            entries = self._by_tp.pop(tp, None)
            if entries is None:
                continue
            dropped.extend(entry.item for entry in entries)
            group = self._group.pop(tp)
            self._groups[group].remove(tp)
            if not self._groups[group]:
                del self._groups[group]
            for key in [key for key in self._lanes if key[0] == tp]:
                self._forget_lane(group, key[1], len(self._lanes.pop(key)))
        return dropped

    @property
    def buffered(self) -> int:
        return sum(len(entries) for entries in self._by_tp.values())

    def push(self, tp: TopicPartition, offset: int, item: Item, now: float, *,
             shop: str | None = None, occurred_at: int | None = None) -> None:
        """Buffer the record at `offset` of `tp`, arrived at `now`: a shop's event at
        `occurred_at`, or (both None) a record with nothing to append, which only waits for
        the records before it to be acknowledged."""
        if tp not in self._by_tp:
            self.assign([tp])
        if shop is None or occurred_at is None:
            self._by_tp[tp].append(_Done(offset, item))
            return
        self._pushed += 1
        entry = Released(tp, offset, shop, occurred_at, item, False, self._pushed, now)
        self._by_tp[tp].append(entry)
        lane = self._lanes.get((tp, shop))
        if lane is None:
            lane = self._lanes[tp, shop] = deque()
        lane.append(entry)
        group = self._group[tp]
        shops = self._shops.get(group)
        if shops is None:
            shops = self._shops[group] = {}
        shops[shop] = shops.get(shop, 0) + 1

    def release(self, now: float) -> Batch[Item]:
        """Every record that may be appended at `now` (per shop, by event time), and then
        every record whose offset may now be acknowledged."""
        batch: Batch[Item] = Batch()
        for group, shops in list(self._shops.items()):
            members = self._groups.get(group, [])
            for shop in list(shops):
                self._release_shop(group, members, shop, now, batch.appends)
        acks, acked = batch.acks, batch.acked
        for tp, entries in self._by_tp.items():
            if entries and entries[0].left:
                while entries and entries[0].left:
                    last = entries.popleft()
                    acks.append(last.item)
                acked[tp] = last.offset + 1
        return batch

    def next_deadline(self) -> float | None:
        """When a shop waiting for an empty topic-partition stops waiting."""
        deadlines = []
        for group, shops in self._shops.items():
            members = self._groups.get(group, [])
            for shop in shops:
                lanes = [self._lanes.get((tp, shop)) for tp in members]
                heads = [lane[0] for lane in lanes if lane]
                if heads and len(heads) < len(lanes):
                    first = min(heads, key=lambda e: (e.occurred_at, e.arrival))
                    deadlines.append(first.arrived_at + self.idle_s)
        return min(deadlines, default=None)

    def _release_shop(self, group: Hashable, members: list[TopicPartition], shop: str,
                      now: float, out: list[Released[Item]]) -> None:
        lanes_of = self._lanes
        lanes = [lane for tp in members if (lane := lanes_of.get((tp, shop)))]
        some_empty = len(lanes) < len(members)
        # The lanes' heads by (event time, arrival), in a heap: the earliest head's lane
        # lets its records go in a run while they come before the next head (a heap pop
        # and push per run, not a scan of every lane per record). Arrivals are unique, so
        # the lane index never decides.
        heads = [(lane[0].occurred_at, lane[0].arrival, index)
                 for index, lane in enumerate(lanes)]
        heapify(heads)
        idle_s = self.idle_s
        released = 0
        try:
            while heads:
                _, _, index = heappop(heads)
                lane = lanes[index]
                next_at, next_arrival, _ = heads[0] if heads else _NO_NEXT
                while lane:
                    entry = lane[0]
                    if entry.occurred_at > next_at or (
                            entry.occurred_at == next_at and entry.arrival > next_arrival):
                        heappush(heads, (entry.occurred_at, entry.arrival, index))
                        break
                    if some_empty and now - entry.arrived_at < idle_s:
                        return  # an empty topic-partition may still deliver something earlier
                    lane.popleft()
                    entry.left = True
                    entry.waited_out = some_empty
                    out.append(entry)
                    released += 1
                else:
                    del lanes_of[entry.tp, shop]
                    some_empty = True
        finally:
            if released:
                self._forget_lane(group, shop, released)

    def _forget_lane(self, group: Hashable, shop: str, count: int) -> None:
        shops = self._shops[group]
        shops[shop] -= count
        if shops[shop] <= 0:
            del shops[shop]
            if not shops:
                del self._shops[group]


@dataclass(slots=True)
class _Done(Generic[Item]):
    """A record with nothing to append: it has left as soon as it arrived."""

    offset: int
    item: Item
    left: bool = True
