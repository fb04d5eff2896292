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
from typing import Generic, NamedTuple, TypeVar

Item = TypeVar("Item")
TopicPartition = tuple[str, int]


def by_partition(topic: str, partition: int) -> Hashable:
    """The co-partition of the shared shop topics: the partition number."""
    return partition


class Released(NamedTuple, Generic[Item]):
    """A record to append now. `waited_out`: it left after waiting out the bound while its
    shop had nothing buffered on some topic of its co-partition. (A named tuple: one is made
    per record appended, and a frozen dataclass costs several times as much to build.)"""

    tp: TopicPartition
    offset: int
    shop: str
    occurred_at: int
    item: Item
    waited_out: bool


@dataclass(slots=True)
class Batch(Generic[Item]):
    """What a `release` lets go: records to append (in order), then records whose offsets
    may be acknowledged (each topic-partition's in offset order; acknowledge them only after
    the appends were handed to the producer)."""

    appends: list[Released[Item]] = field(default_factory=list)
    acks: list[Item] = field(default_factory=list)


@dataclass(slots=True)
class _Entry(Generic[Item]):
    tp: TopicPartition
    offset: int
    occurred_at: int
    item: Item
    arrival: int
    arrived_at: float
    left: bool = False


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
        self._by_tp: dict[TopicPartition, deque[_Entry[Item] | _Done[Item]]] = {}
        self._groups: dict[Hashable, list[TopicPartition]] = {}
        # A shop's records on one topic-partition, in offset order (for merging).
        self._lanes: dict[tuple[TopicPartition, str], deque[_Entry[Item]]] = {}
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
            self._by_tp[tp].append(_Done(item))
            return
        self._pushed += 1
        entry = _Entry(tp, offset, occurred_at, item, self._pushed, now)
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
        for entries in self._by_tp.values():
            while entries and entries[0].left:
                batch.acks.append(entries.popleft().item)
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
        released = 0
        try:
            while lanes:
                # The lane with the earliest head, and the earliest head of the others: the
                # head lane's records leave in a run while they come before that one (one
                # scan of the lanes per run, not per record).
                head_lane = lanes[0]
                first = head_lane[0]
                head_key = (first.occurred_at, first.arrival)
                runner_up: tuple[int, int] | None = None
                for lane in lanes[1:]:
                    first = lane[0]
                    key = (first.occurred_at, first.arrival)
                    if key < head_key:
                        runner_up, head_lane, head_key = head_key, lane, key
                    elif runner_up is None or key < runner_up:
                        runner_up = key
                while head_lane:
                    entry = head_lane[0]
                    if runner_up is not None and (entry.occurred_at, entry.arrival) > runner_up:
                        break
                    if some_empty and now - entry.arrived_at < self.idle_s:
                        return  # an empty topic-partition may still deliver something earlier
                    head_lane.popleft()
                    entry.left = True
                    out.append(Released(entry.tp, entry.offset, shop, entry.occurred_at,
                                        entry.item, some_empty))
                    released += 1
                if not head_lane:
                    del lanes_of[entry.tp, shop]
                    lanes = [lane for lane in lanes if lane]
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

    item: Item
    left: bool = True
