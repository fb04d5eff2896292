"""The in-process runner behind `refstream run` and `refstream demo`: no Kafka needed.

A JSON Lines file plays the shop topics: its line order is the canonical log order. Each
line goes through the same ingest validation and the same pure core as the live pipeline.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstream.projections.pipeline import Pipeline
from refstream.replay.archive import ArchiveWriter
from refstream.replay.engine import FoldCounts, apply_event
from refstream.replay.store import ProjectionStore
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.errors import InvalidEvent
from refstream.schemas.events import DeadLetter, LogEvent
from refstream.schemas.jsonl import parse_line, read_lines
from refstream.streams.ingest import Accepted, EventTimeBounds, Ingestor, SourceRef
from refstream.streams.settings import Settings
from refstream.streams.vault import pseudonymiser_from_settings

ProgressCallback = Callable[[int], None]


@dataclass
class RunSummary:
    """What a run read, accepted, rejected and derived."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    folded: FoldCounts = field(default_factory=FoldCounts)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


class EmbeddedRunner:
    """Ingest + core + projection store in one process; one instance per run."""

    def __init__(self, settings: Settings, rules: Rules, store: ProjectionStore,
                 log_sink: Callable[[LogEvent], None] | None = None,
                 derived_sink: Callable[[Any], None] | None = None, *,
                 wall_clock_ms: Callable[[], int] | None = None) -> None:
        self.rules = rules
        self.store = store
        self.pipeline = Pipeline(rules)
        # The same bounds on event time as live ingest, against this process's clock.
        self.ingestor = Ingestor(Codec(), pseudonymiser_from_settings(settings),
                                 frozenset(settings.known_shops), settings.max_event_bytes,
                                 event_time_bounds=EventTimeBounds.from_settings(settings))
        self._wall_clock_ms = wall_clock_ms or (lambda: int(time.time() * 1000))
        self._log_sink = log_sink
        self._derived_sink = derived_sink

    def apply_log_event(self, event: LogEvent, summary: RunSummary) -> None:
        summary.accepted += 1
        if self._log_sink is not None:
            self._log_sink(event)
        derived = apply_event(self.pipeline, self.store, event, summary.folded)
        if self._derived_sink is not None:
            for item in derived:
                self._derived_sink(item)

    def run_lines(self, source_name: str, lines: Iterable[tuple[int, str]],
                  progress: ProgressCallback | None = None) -> RunSummary:
        summary = RunSummary()
        self.store.write_campaigns(self.rules)
        started = time.perf_counter()
        for number, line in lines:
            summary.lines += 1
            try:
                shop_event = parse_line(line)
                self.ingestor.check_business_rules(shop_event, None)
                self.ingestor.check_edge(shop_event, None, self._wall_clock_ms())
            except (ValueError, InvalidEvent) as exc:
                summary.dead_letters.append(self._dead_letter(source_name, number, line, exc))
                continue
            outcome = self.ingestor.accept_event(shop_event)
            if isinstance(outcome, Accepted):
                self.apply_log_event(outcome.event, summary)
            else:
                summary.duplicates += 1
            if progress is not None and summary.lines % 10_000 == 0:
                progress(10_000)
        self.store.flush()
        if progress is not None:
            progress(summary.lines % 10_000)
        summary.seconds = time.perf_counter() - started
        return summary

    def run_file(self, path: Path, progress: ProgressCallback | None = None) -> RunSummary:
        with path.open(encoding="utf-8") as stream:
            return self.run_lines(str(path), read_lines(stream), progress)

    @staticmethod
    def _dead_letter(source: str, number: int, line: str, exc: Exception) -> DeadLetter:
        shop_id: str | None = None
        try:
            parsed: Any = json.loads(line)
            if isinstance(parsed, dict) and isinstance(parsed.get("shop_id"), str):
                shop_id = parsed["shop_id"]
        except json.JSONDecodeError:
            pass
        return Ingestor.dead_letter(line.encode(), SourceRef(source, 0, number),
                                    f"{source}:{number}: {exc}", 0, shop_id)


class EmbeddedLog:
    """The canonical log of an embedded run, archived like the live one: each shop keeps
    one partition (crc32 of its id, as a stable stand-in for Kafka's key hashing)."""

    def __init__(self, writer: ArchiveWriter, codec: Codec, partitions: int) -> None:
        self._writer, self._codec, self._partitions = writer, codec, partitions

    def append(self, event: LogEvent) -> None:
        partition = zlib.crc32(event.shop_id.encode()) % self._partitions
        self._writer.append(partition, self._writer.next_offset(partition), event.occurred_at,
                            event, self._codec.encode(event))
        if self._writer.buffered >= 200_000:
            self._writer.flush()

    def close(self) -> None:
        self._writer.flush()
