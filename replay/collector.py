"""How refstream runs Python's cyclic garbage collector around the core.

Kept free of heavy imports: the benchmarks, the generator, replay and the command line all
use it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while folding (it is restored after).

    The core's state is a large tree of small long-lived objects and it makes no reference
    cycles (a full collection after 1M events finds none), yet every collection walks the
    young part of that state: a quarter of the fold's time. Reference counting frees all of
    it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def tune_garbage_collector() -> None:
    """The core keeps many small long-lived objects (per visitor, customer, code...): with the
    default generation-0 threshold the collector rescans that growing state over and over.
    Reference counting frees almost everything; cycles are rare, so collect far less often."""
    gc.set_threshold(200_000, 50, 1000)
