"""The DuckDB projection store: micro-batched, set-based upserts of the read model.

One writer per database file (DuckDB's rule). Live projector, embedded runner and replay
all write through this class, so their tables are identical by construction.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from refstream.projections.tables import (
    ALL_TABLES,
    CAMPAIGNS,
    FACT_COLUMNS,
    FACT_TABLES,
    VIEWS,
    Row,
    Table,
    row_for,
)
from refstream.rewards.rules import Rules
from refstream.schemas.events import OrderPlaced, OrderReturned

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "TIMESTAMPTZ": pa.timestamp("ms", tz="UTC"),
    "VARCHAR[]": pa.list_(pa.string()),
}


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([(name, _ARROW_TYPES[typ]) for name, typ in table.columns])


class ProjectionStore:
    """Buffers rows by primary key and writes them as one statement per table and batch."""

    def __init__(self, path: str | Path, batch_rows: int = 200_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(str(self.path))
        # DuckDB sizes its thread pool without looking at the CPUs this process may use:
        # pinned to one (the replay benchmark), two threads took turns on it and its
        # inserts and key builds ran 20-35% slower (3 alternating rounds, 1M rows). Never
        # more than its own choice, which may see limits that the affinity does not.
        (chosen,) = self._db.execute("SELECT current_setting('threads')").fetchall()[0]
        self._db.execute(f"SET threads = {min(int(chosen), usable_cpus())}")
        self._batch_rows = batch_rows
        self._tables = {t.name: t for t in ALL_TABLES}
        self._schemas = {t.name: _arrow_schema(t) for t in ALL_TABLES}
        self._key_index = {
            t.name: tuple(t.column_names.index(k) for k in t.key) for t in ALL_TABLES
        }
        self._pending: dict[str, dict[tuple[Any, ...], Row]] = {t.name: {} for t in ALL_TABLES}
        self._pending_rows = 0
        self._deferred_keys: list[Table] = []
        self._facts_pool: ThreadPoolExecutor | None = None
        self._facts_job: Future[None] | None = None
        for table in ALL_TABLES:
            self._db.execute(table.ddl())
        for name, sql in VIEWS:
            self._db.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        self._wait_for_facts()
        return self._db

    def add(self, event: Any) -> None:
        mapped = row_for(event)
        if mapped is None:
            return
        table, row = mapped
        self.add_row(table.name, row)

    def write_campaigns(self, rules: Rules) -> None:
        """The campaigns table mirrors the rules file the projections were built with."""
        for campaign in rules.campaigns:
            self.add_row(CAMPAIGNS.name, (
                campaign.id, campaign.type, campaign.utm_campaign,
                campaign.starts_at_ms, campaign.ends_at_ms, rules.version))

    def add_all(self, events: Iterable[Any]) -> None:
        for event in events:
            self.add(event)

    def add_row(self, table_name: str, row: Row) -> None:
        key = tuple(row[i] for i in self._key_index[table_name])
        pending = self._pending[table_name]
        if table_name in FACT_TABLES and key in pending:
            return  # a fact is written once; a duplicate is the same fact
        pending[key] = row
        self._pending_rows += 1
        if self._pending_rows >= self._batch_rows:
            self.flush()

    def defer_fact_keys(self) -> bool:
        """Before a set-wise fill of a fresh database (replay): the fact tables get their
        primary keys after loading (`add_deferred_keys`, or at close); building an index once
        costs a third of checking it on every insert. False (nothing deferred) unless the
        fact tables are all empty."""
        self._wait_for_facts()
        tables = [self._tables[name] for name in FACT_COLUMNS]
        for table in tables:
            row = self._db.execute(f"SELECT count(*) FROM {table.name}").fetchone()
            if row is None or row[0] or self._pending[table.name]:
                return False
        for table in tables:
            self._db.execute(f"DROP TABLE {table.name}")
            self._db.execute(table.ddl(with_key=False))
        self._deferred_keys = tables
        return True

    def add_deferred_keys(self) -> list[str]:
        """The primary keys `defer_fact_keys` put off. Deferred tables were loaded without
        looking for repeated keys (a key repeats only where the log repeats a record); a
        table whose rows do repeat a key is emptied and gets its key without them: the
        names of those tables are returned, to be filled again with `insert_facts(log,
        tables=...)`, which keeps the first record of each key."""
        self._wait_for_facts()
        repeated = []
        while self._deferred_keys:
            table = self._deferred_keys.pop()
            try:
                self._db.execute(table.add_key())
            except duckdb.ConstraintException:
                self._db.execute(f"DROP TABLE {table.name}")
                self._db.execute(table.ddl())
                repeated.append(table.name)
        return repeated

    def repeated_ids(self, log: pa.Table) -> frozenset[str]:
        """The identifiers that come more than once among archived log records (columns as
        in persistence/archive.py): event ids, and the natural keys the core claims (order ids
        among orders, return ids among returns). Usually none. Set-wise in DuckDB (~0.1 s
        for 1M rows)."""
        db = self.connection
        db.register("refstream_ids", log.select(["event_type", "event_id", "order_id",
                                                 "return_id"]))
        try:
            rows = db.execute(
                "SELECT event_id FROM refstream_ids WHERE event_id IS NOT NULL "
                "GROUP BY event_id HAVING count(*) > 1 "
                "UNION ALL SELECT order_id FROM refstream_ids "
                "WHERE event_type = ? AND order_id IS NOT NULL "
                "GROUP BY order_id HAVING count(*) > 1 "
                "UNION ALL SELECT return_id FROM refstream_ids "
                "WHERE event_type = ? AND return_id IS NOT NULL "
                "GROUP BY return_id HAVING count(*) > 1",
                [OrderPlaced.event_type, OrderReturned.event_type]).fetchall()
        finally:
            db.unregister("refstream_ids")
        return frozenset(row[0] for row in rows)

    def insert_facts(self, log: pa.Table, *, background: bool = False,
                     tables: Iterable[str] = FACT_COLUMNS) -> None:
        """The fact rows of archived log records (columns as in persistence/archive.py), set-wise,
        into the fact `tables` (all by default).

        Same rows as `add` builds one event at a time: the first record of a key in log
        order wins, and a key already written stays (INSERT OR IGNORE). A table whose key
        is deferred (`defer_fact_keys`) takes the rows as they are: `add_deferred_keys`
        finds any repeated key, once for the whole load.

        `background`: the insert runs on a thread of its own (DuckDB works without the GIL)
        while the caller goes on, e.g. folding the same rows through the core on another
        CPU. Every other use of the database (flush, keys, close, `connection`) waits for it
        first and raises what it raised."""
        self.flush()
        names = list(tables)
        if not background:
            self._insert_facts(self._db, log, names)
            return
        if self._facts_pool is None:
            self._facts_pool = ThreadPoolExecutor(1, thread_name_prefix="refstream-facts")
        self._facts_job = self._facts_pool.submit(self._insert_facts_in_cursor, log, names)

    def _insert_facts_in_cursor(self, log: pa.Table, names: list[str]) -> None:
        cursor = self._db.cursor()  # a connection of its own: one per thread
        try:
            self._insert_facts(cursor, log, names)
        finally:
            cursor.close()

    def _wait_for_facts(self) -> None:
        job, self._facts_job = self._facts_job, None
        if job is not None:
            job.result()

    def _insert_facts(self, db: duckdb.DuckDBPyConnection, log: pa.Table,
                      names: list[str]) -> None:
        stamps = log.column("occurred_at").cast(pa.timestamp("ms", tz="UTC"))
        log = log.set_column(log.schema.get_field_index("occurred_at"), "occurred_at", stamps)
        db.register("refstream_log", log)
        try:
            deferred = {t.name for t in self._deferred_keys}
            for name in names:
                event_type, renamed = FACT_COLUMNS[name]
                table = self._tables[name]
                select = ", ".join(f'"{renamed.get(c, c)}"' for c in table.column_names)
                rows = f"SELECT {select} FROM refstream_log WHERE event_type = ?"
                if name in deferred:
                    # No key yet: the rows as they are (a fifth of the cost was looking for
                    # repeats row by row); add_deferred_keys checks for repeats once.
                    db.execute(f"INSERT INTO {name} {rows}", [event_type])
                else:
                    key = ", ".join(f'"{renamed.get(c, c)}"' for c in table.key)
                    db.execute(
                        f"INSERT OR IGNORE INTO {name} {rows} "
                        f'QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY "offset") = 1',
                        [event_type])
        finally:
            db.unregister("refstream_log")

    def flush(self) -> None:
        """Write every buffered row; one transaction, so a reader never sees half a batch."""
        self._wait_for_facts()
        if not self._pending_rows:
            return
        self._db.execute("BEGIN TRANSACTION")
        try:
            for name, rows in self._pending.items():
                if rows:
                    self._upsert(self._tables[name], list(rows.values()))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for rows in self._pending.values():
            rows.clear()
        self._pending_rows = 0

    def _upsert(self, table: Table, rows: list[Row]) -> None:
        columns = list(zip(*rows, strict=True))
        schema = self._schemas[table.name]
        batch = pa.Table.from_arrays(
            [pa.array(col, type=schema.field(i).type) for i, col in enumerate(columns)],
            schema=schema,
        )
        verb = "INSERT OR IGNORE" if table.name in FACT_TABLES else "INSERT OR REPLACE"
        self._db.register("refstream_batch", batch)
        try:
            self._db.execute(f"{verb} INTO {table.name} SELECT * FROM refstream_batch")
        finally:
            self._db.unregister("refstream_batch")

    def table_rows(self, name: str, order_by: str | None = None) -> list[tuple[Any, ...]]:
        self.flush()
        order = order_by or ", ".join(self._tables[name].key)
        return self._db.execute(f"SELECT * FROM {name} ORDER BY {order}").fetchall()

    def close(self) -> None:
        self.flush()
        repeated = self.add_deferred_keys()
        if repeated:
            raise duckdb.ConstraintException(
                f"fact rows repeat a key in {', '.join(repeated)}: those tables were emptied; "
                "fill them with insert_facts(log, tables=...) before closing")
        if self._facts_pool is not None:
            self._facts_pool.shutdown()
        self._db.execute("CHECKPOINT")
        self._db.close()

    def publish(self, snapshot_path: str | Path) -> Path:
        """Copy the database to a read-only snapshot, swapped in atomically for readers."""
        self.flush()
        self._db.execute("CHECKPOINT")
        target = Path(snapshot_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(self.path, staging)
        os.replace(staging, target)
        return target
