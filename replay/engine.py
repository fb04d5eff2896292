"""The replay engine: the pure core over a sequence of log events, into a projection store.

The embedded runner, `refstream replay` and recovery all fold events through `apply_event`,
so every projection set is built by the same code from the same log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from refstream.projections.pipeline import Pipeline
from refstream.replay.store import ProjectionStore
from refstream.rewards.rules import Rules
from refstream.schemas.events import LogEvent

ProgressCallback = Callable[[int], None]
PROGRESS_EVERY = 10_000


@dataclass
class FoldCounts:
    """What a fold applied and derived."""

    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    derived_by_type: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def apply_event(pipeline: Pipeline, store: ProjectionStore, event: LogEvent,
                counts: FoldCounts) -> list[Any]:
    """One log event: its own rows, then the core's derived events and their rows."""
    counts.events += 1
    counts.events_by_type[event.event_type] += 1
    store.add(event)
    derived = pipeline.apply(event)
    for item in derived:
        counts.derived_by_type[item.event_type] += 1
        store.add(item)
    return derived


def replay_events(events: Iterable[LogEvent], rules: Rules, store: ProjectionStore,
                  progress: ProgressCallback | None = None) -> FoldCounts:
    """A fresh pipeline over `events`; the store receives every row. Flushes at the end."""
    pipeline = Pipeline(rules)
    counts = FoldCounts()
    store.write_campaigns(rules)
    started = time.perf_counter()
    for event in events:
        apply_event(pipeline, store, event, counts)
        if progress is not None and counts.events % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
    store.flush()
    counts.seconds = time.perf_counter() - started
    if progress is not None:
        progress(counts.events % PROGRESS_EVERY)
    return counts
