"""The in-process runner behind `refstream run` and `refstream demo`: no Kafka needed.

A JSON Lines file plays the shop topics: its line order is the canonical log order. Each
line goes through the same ingest validation and the same pure core as the live pipeline.
A run leaves its core state beside its tables, so `run --append` continues the same log.
"""

from __future__ import annotations

import json
import pickle
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstream.persistence.archive import ArchiveWriter
from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import Pipeline
from refstream.replay.engine import FoldCounts, apply_event
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.errors import InvalidEvent, RefstreamError
from refstream.schemas.events import DeadLetter, LogEvent
from refstream.schemas.jsonl import parse_line
from refstream.streams.ingest import (
    Accepted,
    EventTimeBounds,
    Ingestor,
    SourceRef,
    content_digest,
    pseudonymiser_from_settings,
)
from refstream.streams.settings import Settings

ProgressCallback = Callable[[int], None]

# Why a line became a dead letter, as `run` counts and prints them.
NOT_UTF8, NOT_VALID, REJECTED, CONFLICT = ("not UTF-8", "invalid", "rejected by ingest",
                                           "conflicting duplicate")
DEAD_LETTER_KINDS = (NOT_UTF8, NOT_VALID, REJECTED, CONFLICT)
# Where a run keeps what the next `run --append` continues from, in its own DuckDB file.
RUN_STATE_TABLE = "embedded_run_state"
RUN_STATE_FORMAT = 1


@dataclass
class RunSummary:
    """What a run read, accepted, rejected and derived."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dead_letter_kinds: Counter[str] = field(default_factory=Counter)
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
        # Every event id this run's log holds, with a digest of its validated content: a
        # repeat with the same content is a producer retry, one with other content a conflict.
        self._seen: dict[str, bytes] = {}

    # ------------------------------------------------------------------ continuation

    def save_state(self) -> None:
        """Store the core's state and the ids seen in the run's own database, so `run
        --append` continues exactly where this run ended (same rules version only)."""
        self.store.flush()
        blob = pickle.dumps((RUN_STATE_FORMAT, self.pipeline.snapshot(), self._seen),
                            protocol=pickle.HIGHEST_PROTOCOL)
        db = self.store.connection
        db.execute(f"CREATE TABLE IF NOT EXISTS {RUN_STATE_TABLE} "
                   "(rules_version VARCHAR, state BLOB)")
        db.execute("BEGIN TRANSACTION")
        db.execute(f"DELETE FROM {RUN_STATE_TABLE}")
        db.execute(f"INSERT INTO {RUN_STATE_TABLE} VALUES (?, ?)", [self.rules.version, blob])
        db.execute("COMMIT")

    def restore_state(self) -> None:
        """Continue from the state `save_state` left in this database."""
        db = self.store.connection
        found = db.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_name = ?", [RUN_STATE_TABLE]).fetchone()
        row = (db.execute(f"SELECT rules_version, state FROM {RUN_STATE_TABLE}").fetchone()
               if found and found[0] else None)
        where = self.store.path
        if row is None:
            raise RefstreamError(
                f"{where} holds no saved run state to continue from (it was not written by "
                "`refstream run`, or by an older version); run without --append to rebuild it")
        version, blob = row
        if version != self.rules.version:
            raise RefstreamError(
                f"{where} was built with rules {version!r}, this run resolved rules "
                f"{self.rules.version!r}; --append continues under the same rules only "
                "(pass the same --rules, or run both files again without --append)")
        fmt, snapshot, seen = pickle.loads(bytes(blob))  # our own file, never foreign input
        if fmt != RUN_STATE_FORMAT:
            raise RefstreamError(f"{where}: run state format {fmt!r}; this refstream reads "
                                 f"{RUN_STATE_FORMAT}; run without --append to rebuild it")
        self.pipeline = Pipeline.restore(self.rules, bytes(snapshot))
        self._seen = seen

    def apply_log_event(self, event: LogEvent, summary: RunSummary) -> None:
        summary.accepted += 1
        if self._log_sink is not None:
            self._log_sink(event)
        derived = apply_event(self.pipeline, self.store, event, summary.folded)
        if self._derived_sink is not None:
            for item in derived:
                self._derived_sink(item)

    def run_lines(self, source_name: str, lines: Iterable[tuple[int, str | bytes]],
                  progress: ProgressCallback | None = None) -> RunSummary:
        """Lines as (number, text); bytes stand for a line that is not UTF-8 text."""
        summary = RunSummary()
        self.store.write_campaigns(self.rules)
        started = time.perf_counter()
        for number, line in lines:
            summary.lines += 1
            if isinstance(line, bytes):
                self._reject(summary, NOT_UTF8, (source_name, number), line,
                             ValueError(_not_utf8(line)))
                continue
            try:
                shop_event = parse_line(line)
            except ValueError as exc:
                self._reject(summary, NOT_VALID, (source_name, number), line, exc)
                continue
            try:
                self.ingestor.check_business_rules(shop_event, None)
                self.ingestor.check_edge(shop_event, None, self._wall_clock_ms())
            except (ValueError, InvalidEvent) as exc:
                self._reject(summary, REJECTED, (source_name, number), line, exc)
                continue
            key = f"{shop_event.shop_id}\x00{shop_event.event_id}"
            digest = content_digest(shop_event)
            first = self._seen.setdefault(key, digest)
            if first != digest:
                self._reject(summary, CONFLICT, (source_name, number), line, ValueError(
                    f"event id {shop_event.event_id!r} of shop {shop_event.shop_id!r} came "
                    "before with other content; the first copy stands. Send a correction "
                    "under a new event id"))
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
        with path.open("rb") as stream:
            return self.run_lines(str(path), numbered_lines(stream), progress)

    def _reject(self, summary: RunSummary, kind: str, where: tuple[str, int],
                line: str | bytes, exc: Exception) -> None:
        summary.dead_letters.append(self._dead_letter(*where, line, exc, kind))
        summary.dead_letter_kinds[kind] += 1

    @staticmethod
    def _dead_letter(source: str, number: int, line: str | bytes, exc: Exception,
                     kind: str = NOT_VALID) -> DeadLetter:
        shop_id: str | None = None
        if isinstance(line, str):
            try:
                parsed: Any = json.loads(line)
                if isinstance(parsed, dict) and isinstance(parsed.get("shop_id"), str):
                    shop_id = parsed["shop_id"]
            except json.JSONDecodeError:
                pass
        raw = line if isinstance(line, bytes) else line.encode()
        return Ingestor.dead_letter(raw, SourceRef(source, 0, number),
                                    f"{source}:{number}: {kind}: {exc}", 0, shop_id)


def numbered_lines(stream: Iterable[bytes]) -> Iterator[tuple[int, str | bytes]]:
    """(line number, text) for every non-blank line of a binary stream; a line that is not
    UTF-8 comes as its bytes, so the caller can dead-letter it and go on."""
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, raw
            continue
        if text.strip():
            yield number, text


def _not_utf8(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
                f"({exc.reason}); re-export the file as UTF-8")
    return "not UTF-8 text"



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
