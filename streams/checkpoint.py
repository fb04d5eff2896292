"""Checkpointing: the pipeline's state and the log offset it reflects, committed atomically.

One SQLite row per log partition holds (next offset, rules version, state snapshot); rows
of one batch are written in one transaction, so a crash leaves either the old or the new
checkpoint of every partition, never state that disagrees with its offset.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Checkpoint:
    topic: str
    partition: int
    next_offset: int
    rules_version: str
    state: bytes


class CheckpointStore:
    """A SQLite file; several worker processes on one host may share it (WAL, busy timeout)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints ("
            " topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
            " rules_version TEXT NOT NULL, state BLOB NOT NULL, written_at REAL NOT NULL,"
            " PRIMARY KEY (topic, partition))"
        )

    def load(self, topic: str, partition: int) -> Checkpoint | None:
        row = self._db.execute(
            "SELECT next_offset, rules_version, state FROM checkpoints"
            " WHERE topic = ? AND partition = ?", (topic, partition)).fetchone()
        if row is None:
            return None
        return Checkpoint(topic, partition, int(row[0]), str(row[1]), bytes(row[2]))

    def save(self, checkpoints: list[Checkpoint]) -> None:
        """All of them or none of them. Never moves a partition's offset backwards."""
        if not checkpoints:
            return
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
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def replace(self, checkpoints: list[Checkpoint]) -> None:
        """Overwrite these partitions' rows, even with a lower offset (erasure rebuilds a
        checkpoint from the rewritten archive; the worker must be stopped meanwhile)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for cp in checkpoints:
                self._db.execute("DELETE FROM checkpoints WHERE topic = ? AND partition = ?",
                                 (cp.topic, cp.partition))
                self._db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                                 (cp.topic, cp.partition, cp.next_offset, cp.rules_version,
                                  cp.state, time.time()))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): o for t, p, o in self._db.execute(
            "SELECT topic, partition, next_offset FROM checkpoints")}

    def close(self) -> None:
        self._db.close()
