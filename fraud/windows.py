"""Sliding event-time windows over the facts of one entity (an IP hash, a device, a code).

A window keeps only facts younger than its length, with running counts of distinct members
per dimension, so a check costs O(facts expired) instead of a scan of history; a group
forgets the windows of entities that went quiet, so memory follows recent activity only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Final

from refstream.persistence.records import by_fields

# (at, event id, members): one member per dimension, e.g. (referral_id,) or (visitor, source).
# A plain tuple: windows add one per click with a code, and a NamedTuple costs 5x to build.
WindowEntry = tuple[int, str, tuple[str, ...]]
_AT: Final = 0
_EVENT_ID: Final = 1
_MEMBERS: Final = 2


@dataclass(slots=True, init=False)
class SlidingWindow:
    """Facts within `length_ms` of the newest one; `open_flag_id` names a running episode.

    Live facts are `entries[first:]`: expired ones are skipped by moving `first`, and the
    list is compacted once more than half of it is dead, so a busy code (an influencer's,
    thousands of uses a day) costs O(1) per fact instead of a list shift.
    """

    length_ms: int
    entries: list[WindowEntry]
    counts: list[dict[str, int]]
    first: int = 0
    open_flag_id: str | None = None

    # Written out (init=False): mypyc compiles an explicit __init__, while a dataclass-
    # generated one stays interpreted, a Python call per window.
    def __init__(self, length_ms: int, entries: list[WindowEntry], counts: list[dict[str, int]],
                 first: int = 0, open_flag_id: str | None = None) -> None:
        self.length_ms = length_ms
        self.entries = entries
        self.counts = counts
        self.first = first
        self.open_flag_id = open_flag_id

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return by_fields(self)

    @classmethod
    def empty(cls, length_ms: int, dimensions: int) -> SlidingWindow:
        return cls(length_ms, [], [{} for _ in range(dimensions)])

    @property
    def size(self) -> int:
        return len(self.entries) - self.first

    def add(self, at: int, event_id: str, members: tuple[str, ...]) -> bool:
        """Record a fact; True when its first member was not in the window yet.

        Facts that slid out are forgotten first; if none is left, the episode is over.
        """
        entries, first = self.entries, self.first
        if len(entries) > first:
            newest = max(entries[-1][_AT], at)
            if entries[first][_AT] <= newest - self.length_ms:
                self.prune(newest)
                if len(entries) == self.first:
                    self.open_flag_id = None
        counts = self.counts
        key = members[0]
        is_new = key not in counts[0]
        late = len(entries) > self.first and entries[-1][_AT] > at
        if not late:
            entries.append((at, event_id, members))
        else:
            # A fact appended late goes before later ones (log order among equal times).
            position = len(entries) - 1
            while position > self.first and entries[position - 1][_AT] > at:
                position -= 1
            entries.insert(position, (at, event_id, members))
        # Indexed loops, not zip(): mypyc compiles range() loops to C, zip() stays a call.
        for dimension in range(len(counts)):
            count, member = counts[dimension], members[dimension]
            count[member] = count.get(member, 0) + 1
        if late:
            self.prune(entries[-1][_AT])  # a late fact may already be out of the window
        return is_new and key in counts[0]

    def prune(self, now: int) -> None:
        """Forget facts at or before `now - length_ms`: the window is (now - length, now]."""
        horizon = now - self.length_ms
        entries, first, counts = self.entries, self.first, self.counts
        end, dimensions = len(entries), len(counts)
        if first < end and entries[end - 1][_AT] <= horizon:
            # All of it slid out (the common case for a quiet entity): forget it wholesale.
            entries.clear()
            for count in counts:
                count.clear()
            self.first = 0
            return
        while first < end:
            entry = entries[first]
            if entry[_AT] > horizon:
                break
            members = entry[_MEMBERS]
            for dimension in range(dimensions):
                count, member = counts[dimension], members[dimension]
                remaining = count[member] - 1
                if remaining:
                    count[member] = remaining
                else:
                    del count[member]
            first += 1
        if first * 2 > end:  # more than half dead: compact
            del entries[:first]
            first = 0
        self.first = first

    def distinct(self, dimension: int = 0) -> int:
        return len(self.counts[dimension])

    @property
    def newest_at(self) -> int:
        return self.entries[-1][_AT]

    @property
    def opening_event_id(self) -> str:
        return self.entries[self.first][_EVENT_ID]

    def evidence(self) -> tuple[str, ...]:
        return tuple(sorted({e[_EVENT_ID] for e in self.entries[self.first:]}))

    def members_in_order(self, dimension: int = 0) -> tuple[str, ...]:
        """Distinct members, oldest fact first (deterministic: the log fixed this order)."""
        return tuple(dict.fromkeys(e[_MEMBERS][dimension] for e in self.entries[self.first:]))


@dataclass(slots=True)
class WindowGroup:
    """One signal's windows, one per entity, and when each entity's facts run out."""

    length_ms: int
    dimensions: int = 1
    windows: dict[str, SlidingWindow] = field(default_factory=dict)
    # (when the window may have run out, entity key): one per window, roughly in time order.
    expiries: deque[tuple[int, str]] = field(default_factory=deque)

    def add(self, key: str, at: int, event_id: str,
            members: tuple[str, ...]) -> tuple[SlidingWindow, bool]:
        """The entity's window with the fact added, and whether its first member is new."""
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = SlidingWindow.empty(self.length_ms, self.dimensions)
            self.expiries.append((at + self.length_ms, key))
        return window, window.add(at, event_id, members)

    def sweep(self, now: int) -> None:
        """Forget windows whose facts are all older than the window at `now`.

        Each window has one entry in `expiries`; when it comes up, the window is either
        empty (forgotten) or re-armed for when its newest fact runs out.
        """
        expiries, windows = self.expiries, self.windows
        while expiries and expiries[0][0] <= now:
            _, key = expiries.popleft()
            window = windows[key]
            window.prune(now)
            if window.size:
                expiries.append((window.newest_at + self.length_ms, key))
            else:
                del windows[key]
