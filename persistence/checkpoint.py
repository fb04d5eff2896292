"""Checkpointing: the pipeline's state and the log offset it reflects, committed atomically.

One SQLite row per log partition holds (next offset, rules version, state snapshot), and a
small row of another table the offset up to which its outputs are acknowledged; rows of one
batch are written in one transaction, so a crash leaves either the old or the new
checkpoint of every partition, never state that disagrees with its offset.

Two kinds of write: a snapshot (`save`) writes the state at its offset, O(state); an
acknowledgement (`acknowledge`) writes one offset per partition, O(1): the outputs of every
log record before it reached the broker. What changed between the two offsets is in the log
itself, so a restart restores the snapshot and re-applies the log up to the acknowledged
offset silently (nothing re-sent), then goes on live.

Serialising the state costs O(state) (seconds at a million events), so a live worker takes
the snapshot in a forked child (`ForkedSnapshot`): the fork is a copy-on-write image of the
state at one offset, taken in milliseconds; the child pickles it and hands back the bytes
while the parent goes on consuming, then the parent writes them (in a thread: SQLite
releases the GIL). The same idea as Redis' BGSAVE.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from refstream.schemas.errors import EXIT_PROBLEM, RefstreamError


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A partition's state snapshot at `next_offset` (the log offset it continues from), and
    `acknowledged`: the offset before which every record's outputs reached the broker (at
    least `next_offset`; None when written as a snapshot: then `next_offset`)."""

    topic: str
    partition: int
    next_offset: int
    rules_version: str
    state: bytes
    acknowledged: int | None = None

    @property
    def resume_offset(self) -> int:
        """Where the live run goes on from: records before it are re-applied silently."""
        return max(self.next_offset, self.acknowledged or 0)


class CheckpointStore:
    """A SQLite file; several worker processes on one host may share it (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Saved from a worker thread while the event loop may load: one lock serialises them.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints ("
            " topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
            " rules_version TEXT NOT NULL, state BLOB NOT NULL, written_at REAL NOT NULL,"
            " PRIMARY KEY (topic, partition))"
        )
        # A table of its own: SQLite rewrites a whole row to update one column, and a
        # checkpoint row holds the snapshot (100 MB at a million events).
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS acknowledged ("
            " topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
            " PRIMARY KEY (topic, partition))"
        )

    def load(self, topic: str, partition: int) -> Checkpoint | None:
        with self._lock:
            return self._load(topic, partition)

    def _load(self, topic: str, partition: int) -> Checkpoint | None:
        row = self._db.execute(
            "SELECT c.next_offset, c.rules_version, c.state, a.next_offset"
            " FROM checkpoints c LEFT JOIN acknowledged a USING (topic, partition)"
            " WHERE topic = ? AND partition = ?", (topic, partition)).fetchone()
        if row is None:
            return None
        return Checkpoint(topic, partition, int(row[0]), str(row[1]), bytes(row[2]),
                          None if row[3] is None else int(row[3]))

    def save(self, checkpoints: list[Checkpoint]) -> None:
        """All of them or none of them. Never moves a partition's offset backwards."""
        if not checkpoints:
            return
        with self._lock:
            self._save(checkpoints)

    def _save(self, checkpoints: list[Checkpoint]) -> None:
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for cp in checkpoints:
                self._db.execute(
                    "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (topic, partition) DO UPDATE SET"
                    " next_offset = excluded.next_offset, rules_version = excluded.rules_version,"
                    " state = excluded.state, written_at = excluded.written_at"
                    " WHERE excluded.next_offset >= checkpoints.next_offset",
                    (cp.topic, cp.partition, cp.next_offset, cp.rules_version, cp.state, now))
                # A snapshot taken before a later acknowledgement keeps that acknowledgement.
                self._acknowledge(cp.topic, cp.partition, cp.resume_offset)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _acknowledge(self, topic: str, partition: int, offset: int) -> None:
        # Only for a partition with a snapshot row: it is what the offset is counted from.
        self._db.execute(
            "INSERT INTO acknowledged SELECT topic, partition, ? FROM checkpoints"
            " WHERE topic = ? AND partition = ?"
            " ON CONFLICT (topic, partition) DO UPDATE SET"
            " next_offset = max(next_offset, excluded.next_offset)",
            (offset, topic, partition))

    def acknowledge(self, topic: str, offsets: dict[int, int]) -> dict[int, int]:
        """Record that every output of the log records before `offsets[partition]` was
        acknowledged, for partitions that have a snapshot; never moves one backwards. One
        small row per partition, whatever the state's size. Returns the partitions whose
        resume offset is now that offset."""
        if not offsets:
            return {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for partition, offset in offsets.items():
                    self._acknowledge(topic, partition, offset)
                held = dict(self._db.execute(
                    "SELECT partition, next_offset FROM acknowledged WHERE topic = ?", (topic,)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return {p: o for p, o in offsets.items() if held.get(p) == o}

    def replace(self, checkpoints: list[Checkpoint]) -> None:
        """Overwrite these partitions' rows, even with a lower offset (erasure rebuilds a
        checkpoint from the rewritten archive; the worker must be stopped meanwhile)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for cp in checkpoints:
                for table in ("checkpoints", "acknowledged"):
                    self._db.execute(f"DELETE FROM {table} WHERE topic = ? AND partition = ?",
                                     (cp.topic, cp.partition))
                self._db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                                 (cp.topic, cp.partition, cp.next_offset, cp.rules_version,
                                  cp.state, time.time()))
                self._acknowledge(cp.topic, cp.partition, cp.resume_offset)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), where the live run resumes (`Checkpoint.resume_offset`)."""
        with self._lock:
            return {(t, p): o for t, p, o in self._db.execute(
                "SELECT topic, partition, max(c.next_offset, coalesce(a.next_offset, 0))"
                " FROM checkpoints c LEFT JOIN acknowledged a USING (topic, partition)")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SnapshotFailed(RefstreamError):
    """The forked child did not hand back a complete snapshot (it died, or was stopped)."""

    exit_code: ClassVar[int] = EXIT_PROBLEM


# How much lower the snapshot child's CPU priority is than the worker's (os.nice).
SNAPSHOT_NICENESS = 10


class ForkedSnapshot:
    """`make()` run in a forked child; `collect()` (blocking: call it from a thread) returns
    its result. The child only pickles and writes to a pipe, and leaves with `os._exit`: it
    touches no socket, SQLite handle or lock it inherited from the worker."""

    def __init__(self, make: Callable[[], list[Checkpoint]]) -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            status = 1
            try:
                # Signals are the worker's: the child must neither handle them nor wake
                # the worker's event loop through the inherited wakeup descriptor.
                signal.set_wakeup_fd(-1)
                for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(number, signal.SIG_DFL)
                # The child lives for one pickling and leaves with os._exit: no cyclic GC
                # (a full collection would write to every object's header, copying the
                # parent's whole heap page by page), and it yields the CPU to the worker and
                # the broker, whose work is the live path's (pacing follows its cost).
                gc.disable()
                os.nice(SNAPSHOT_NICENESS)
                os.close(read_end)
                with os.fdopen(write_end, "wb") as pipe:
                    pickle.dump(make(), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self.pid = pid
        self._read_end = read_end

    def collect(self) -> list[Checkpoint]:
        with os.fdopen(self._read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(self.pid, 0)
        if status != 0 or not data:
            raise SnapshotFailed(f"snapshot child {self.pid} ended with wait status {status}")
        checkpoints: list[Checkpoint] = pickle.loads(data)  # from our own child
        return checkpoints

    def abandon(self) -> None:
        """Stop a child that takes too long; `collect` then raises SnapshotFailed."""
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(self.pid, signal.SIGKILL)


class TakenSnapshot:
    """`make()` run in the worker itself, at once (a small state pickles in tens of
    milliseconds, cheaper than a child's copy-on-write); held for the same hand-over as a
    `ForkedSnapshot`'s, so it is committed only after the outputs it covers are
    acknowledged, off the event loop."""

    def __init__(self, make: Callable[[], list[Checkpoint]]) -> None:
        self._checkpoints = make()

    def collect(self) -> list[Checkpoint]:
        return self._checkpoints

    def abandon(self) -> None:
        """Nothing runs: the snapshot is taken already."""
