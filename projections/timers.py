"""Event-time timers of one shop: a heap of (deadline, sequence, kind, key).

The sequence is the order timers were set in, itself fixed by the log, so timers with equal
deadlines fire in the same order in live runs, replays and restored snapshots.
"""

from __future__ import annotations

import heapq

from refstream.projections.state import ShopState, Timer


def schedule(shop: ShopState, deadline: int, kind: int, key: str) -> None:
    heapq.heappush(shop.timers, (deadline, shop.timer_sequence, kind, key))
    shop.timer_sequence += 1


def pop_due(shop: ShopState, upto: int) -> Timer | None:
    """The earliest timer with deadline <= `upto`, removed from the heap; None if none is due."""
    timers = shop.timers
    if timers and timers[0][0] <= upto:
        return heapq.heappop(timers)
    return None
