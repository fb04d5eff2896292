"""The log archive: the canonical log as Parquet segments, partitioned by shop and date.

A flush writes one contiguous offset range of one log partition: its Parquet files (one per
shop and date, each written to a temporary name and renamed), then a commit marker naming
them. Only committed files count, so a crash never leaves a gap or a duplicate offset;
uncommitted files are removed when the writer opens the archive again.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from refstream.schemas.codec import Codec
from refstream.schemas.epoch import from_epoch_ms
from refstream.schemas.errors import EXIT_INPUT_REJECTED, RefstreamError
from refstream.schemas.events import LOG_EVENT_CONSTRUCTORS, LOG_EVENT_TYPES, LogEvent

COMMITS = "_commits"

PASSED_OVER = "passed_over"
# The folder of records that are not log events (no shop to file them under).
_PASSED_OVER_SHOP = "_passed_over"
_SHOP_FOLDER = "shop_id="

# Every field of every log event type, as typed nullable columns, so replay rebuilds the
# events from columns without decoding Avro; `payload` keeps the exact log bytes for audit.
_FIELD_TYPES: dict[str, pa.DataType] = {}
for _cls in LOG_EVENT_TYPES.values():
    for _f in fields(_cls):
        _FIELD_TYPES.setdefault(_f.name, pa.int64() if _f.type in ("int", int) else pa.string())
_FIELD_TYPES["occurred_at"] = pa.int64()
# Each log event type's fields, in constructor order.
EVENT_FIELDS = {name: tuple(f.name for f in fields(cls)) for name, cls in LOG_EVENT_TYPES.items()}

ARCHIVE_SCHEMA = pa.schema([
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("log_timestamp", pa.int64()),
    ("event_type", pa.string()),
    *[(name, typ) for name, typ in _FIELD_TYPES.items()],
    ("payload", pa.binary()),
])
_DATA_COLUMNS = [n for n in ARCHIVE_SCHEMA.names if n != "payload"]

# Columns written without a Parquet dictionary: identifiers, hashes, times and payloads,
# nearly every value distinct. A per-file dictionary of distinct values only adds a copy and
# a lookup per value on reading (segments are small: one shop's day of one flush); without
# it the benchmark's 1M-row archive read in 1.19-1.22 s instead of 1.58-1.86 s and was 8%
# smaller (136 -> 125 MB). Codes, campaigns, channels, types keep their dictionaries.
PLAIN_COLUMNS = frozenset({
    "offset", "log_timestamp", "occurred_at", "event_id", "visitor_id", "ip_hash", "device_id",
    "customer_id", "email_hash", "order_id", "payment_hash", "shipping_hash", "return_id",
    "referral_id", "payload"})
_DICTIONARY_COLUMNS = [n for n in ARCHIVE_SCHEMA.names if n not in PLAIN_COLUMNS]


def write_segment(table: pa.Table, path: Path) -> None:
    """One Parquet segment, written as every segment of the archive is (see PLAIN_COLUMNS)."""
    pq.write_table(table, path, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)


# (offset, log timestamp, event or None, payload bytes)
_Buffered = tuple[int, int, LogEvent | None, bytes]


class ArchiveError(RefstreamError):
    """The archive on disk is not what refstream wrote (a gap, an overlap, a bad marker)."""

    exit_code: ClassVar[int] = EXIT_INPUT_REJECTED


@dataclass(frozen=True, slots=True)
class ArchivedRecord:
    partition: int
    offset: int
    log_timestamp: int
    event: LogEvent | None  # None: a record the core passes over (not a log event)
    payload: bytes


def shop_folder(shop_id: str) -> str:
    """The folder (under the archive root) of a shop's segments."""
    return f"{_SHOP_FOLDER}{shop_id}"


def segment_shop(name: str) -> str | None:
    """The shop of a committed segment (its path under the root, as commit markers list it);
    None for a segment of records passed over."""
    shop_id = Path(name).parts[0].removeprefix(_SHOP_FOLDER)
    return None if shop_id == _PASSED_OVER_SHOP else shop_id


def _day(ms: int) -> str:
    return from_epoch_ms(ms).strftime("%Y-%m-%d")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with staging.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(staging, path)


class ArchiveWriter:
    """Appends log records partition by partition; `next_offset` says where to resume."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / COMMITS).mkdir(parents=True, exist_ok=True)
        self._buffers: dict[int, list[_Buffered]] = defaultdict(list)
        self._next: dict[int, int] = {}
        committed: set[str] = set()
        for marker in commit_markers(self.root):
            committed.update(marker["files"])
            self._next[marker["partition"]] = max(self._next.get(marker["partition"], 0),
                                                  marker["last_offset"] + 1)
        for stray in self.root.glob(f"{_SHOP_FOLDER}*/date=*/*.parquet"):
            if str(stray.relative_to(self.root)) not in committed:
                stray.unlink()  # written by a flush that crashed before its commit marker

    def forget(self, partitions: set[int]) -> None:
        """Partitions this writer no longer owns: drop their unflushed records and re-read
        where their committed segments end (another worker may have extended them)."""
        for partition in partitions:
            self._buffers.pop(partition, None)
            self._next.pop(partition, None)
        for marker in commit_markers(self.root):
            if marker["partition"] in partitions:
                self._next[marker["partition"]] = max(self._next.get(marker["partition"], 0),
                                                      marker["last_offset"] + 1)

    def next_offset(self, partition: int) -> int:
        """The first offset of `partition` not yet archived (0 for a new partition)."""
        return self._next.get(partition, 0) + len(self._buffers.get(partition, ()))

    def append(self, partition: int, offset: int, log_timestamp: int, event: LogEvent | None,
               payload: bytes) -> None:
        expected = self.next_offset(partition)
        if offset != expected:
            raise ArchiveError(f"partition {partition}: offset {offset} appended, "
                               f"{expected} expected; the archive never skips or repeats")
        self._buffers[partition].append((offset, log_timestamp, event, payload))

    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def flush(self) -> int:
        """Commit every buffered record; returns how many."""
        written = 0
        for partition in sorted(self._buffers):
            records = self._buffers[partition]
            if records:
                self._flush_partition(partition, records)
                written += len(records)
        self._buffers.clear()
        return written

    def _flush_partition(self, partition: int, records: list[_Buffered]) -> None:
        first, last = records[0][0], records[-1][0]
        groups: dict[tuple[str, str], list[_Buffered]] = defaultdict(list)
        for record in records:
            event = record[2]
            if event is None:  # no shop or time to file it under: keep it with its partition
                groups[(_PASSED_OVER_SHOP, _day(record[1]))].append(record)
            else:
                groups[(event.shop_id, _day(event.occurred_at))].append(record)
        files: list[str] = []
        for (shop_id, day), group in sorted(groups.items()):
            folder = self.root / shop_folder(shop_id) / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"p{partition:04d}-{first:012d}-{last:012d}.parquet"
            staging = path.with_name(f".{path.name}.tmp")
            write_segment(_to_table(partition, group), staging)
            os.replace(staging, path)
            files.append(str(path.relative_to(self.root)))
        marker = {"partition": partition, "first_offset": first, "last_offset": last,
                  "records": len(records), "files": files}
        _atomic_write_bytes(self.root / COMMITS / f"p{partition:04d}-{last:012d}.json",
                            json.dumps(marker).encode())
        self._next[partition] = last + 1


def _to_table(partition: int, group: list[_Buffered]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in ARCHIVE_SCHEMA.names}
    for offset, log_timestamp, event, payload in group:
        columns["partition"].append(partition)
        columns["offset"].append(offset)
        columns["log_timestamp"].append(log_timestamp)
        columns["event_type"].append(event.event_type if event is not None else PASSED_OVER)
        columns["payload"].append(payload)
        present = EVENT_FIELDS[event.event_type] if event is not None else ()
        for name in _FIELD_TYPES:
            columns[name].append(getattr(event, name) if name in present else None)
    return pa.Table.from_pydict(columns, schema=ARCHIVE_SCHEMA)


def commit_markers(root: Path) -> list[dict[str, Any]]:
    """The commit markers of an archive (one per flush), by partition and first offset."""
    folder = root / COMMITS
    if not folder.is_dir():
        return []
    markers = [json.loads(p.read_text()) for p in sorted(folder.glob("p*.json"))]
    return sorted(markers, key=lambda m: (m["partition"], m["first_offset"]))


def use_system_memory_pool() -> None:
    """Arrow allocates through the C library's malloc from here on (process-wide).

    Arrow's default pool, mimalloc, returns freed pages to the OS soon and takes them back on
    the next allocation; on Linux with transparent huge pages each comeback is a fault that
    zeroes 2 MB (`clear_page_erms` under `do_huge_pmd_anonymous_page` was 13% of a replay in
    perf). Reading a 1M-row archive partition took 3.5-4.9 s of CPU with it and 2.3 s with
    malloc; a whole replay 26.3 s -> 22.6 s, peak RSS 1.67 -> 1.46 GB.
    """
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


class ArchiveReader:
    """Reads committed segments back, per partition in exact offset order."""

    def __init__(self, root: str | Path) -> None:
        use_system_memory_pool()
        self.root = Path(root)
        self.markers = commit_markers(self.root)
        if not self.markers:
            raise ArchiveError(f"no committed segments under {self.root}; "
                               "run the archiver (or `refstream archive`) first")
        self._check_contiguous()

    def _check_contiguous(self) -> None:
        expected: dict[int, int] = {}
        for marker in self.markers:
            partition = marker["partition"]
            start = expected.get(partition, 0)
            if marker["first_offset"] != start:
                raise ArchiveError(f"partition {partition}: segment starts at "
                                   f"{marker['first_offset']}, {start} expected (gap or overlap)")
            expected[partition] = marker["last_offset"] + 1

    @property
    def record_count(self) -> int:
        return sum(int(m["records"]) for m in self.markers)

    def partitions(self) -> list[int]:
        return sorted({int(m["partition"]) for m in self.markers})

    def shop_partitions(self) -> dict[str, set[int]]:
        """The partitions that hold rows of each shop, read from the committed segment
        paths (one, unless the shop's log moved to another partition at some point)."""
        held: dict[str, set[int]] = defaultdict(set)
        for marker in self.markers:
            for name in marker["files"]:
                shop_id = segment_shop(name)
                if shop_id is not None:
                    held[shop_id].add(int(marker["partition"]))
        return dict(held)

    def next_offsets(self) -> dict[int, int]:
        ends: dict[int, int] = {}
        for m in self.markers:
            ends[m["partition"]] = m["last_offset"] + 1
        return ends

    def read_partition_table(self, partition: int, with_payload: bool = False) -> pa.Table:
        """All committed rows of a partition, in offset order."""
        table = self.read_partition_rows(partition, with_payload)
        return table.take(pc.sort_indices(table.column("offset")))

    def read_partition_rows(self, partition: int, with_payload: bool = False,
                            without: frozenset[str] = frozenset()) -> pa.Table:
        """All committed rows of a partition in no particular order (sort by "offset" for
        the log's). Columns in `without` are not read (replay skips what neither the core
        nor a table uses)."""
        columns = [name for name in (ARCHIVE_SCHEMA.names if with_payload else _DATA_COLUMNS)
                   if name not in without]
        files = [str(self.root / name)
                 for m in self.markers if m["partition"] == partition for name in m["files"]]
        # One dataset scan reads the many small per-shop-and-day files in parallel.
        table = ds.dataset(files, format="parquet", schema=ARCHIVE_SCHEMA).to_table(
            columns=columns)
        # One chunk per column: taking rows across ~100s of small files' chunks is several
        # times slower than the copy.
        return table.combine_chunks()

    def iter_records(self, partition: int | None = None, with_payload: bool = False
                     ) -> Iterator[ArchivedRecord]:
        """Records of one partition (or all, partition by partition), in offset order."""
        for p in ([partition] if partition is not None else self.partitions()):
            table = self.read_partition_table(p, with_payload)
            yield from _records(table, with_payload)

    def iter_events(self, partition: int | None = None) -> Iterator[LogEvent]:
        for record in self.iter_records(partition):
            if record.event is not None:
                yield record.event


def table_events(table: pa.Table) -> list[LogEvent | None]:
    """The log events of archived rows, in row order; None for a passed-over record.

    An event field whose column the table lacks is "" (replay does not read the fields no
    part of the core reads: projections.pipeline.UNREAD_FIELDS)."""
    events: list[LogEvent | None] = [None] * table.num_rows
    types = table.column("event_type")
    present = set(table.column_names)
    # Build each event type column-wise (map over columns), then put events back in
    # offset order by their row indices: several times faster than row by row.
    for event_type in LOG_EVENT_TYPES:
        mask = pc.equal(types, event_type)
        rows = pc.indices_nonzero(mask).to_pylist()
        if not rows:
            continue
        names = EVENT_FIELDS[event_type]
        subset = table.select([name for name in names if name in present]).filter(mask)
        columns: list[Iterable[Any]] = [
            subset.column(name).to_pylist() if name in present else repeat("")
            for name in names]
        built: Iterator[LogEvent] = map(LOG_EVENT_CONSTRUCTORS[event_type], *columns)
        for row, event in zip(rows, built, strict=True):
            events[row] = event
    return events


def _records(table: pa.Table, with_payload: bool) -> Iterator[ArchivedRecord]:
    events = table_events(table)
    partitions = table.column("partition").to_pylist()
    offsets = table.column("offset").to_pylist()
    stamps = table.column("log_timestamp").to_pylist()
    payloads = table.column("payload").to_pylist() if with_payload else None
    for i, maybe_event in enumerate(events):
        yield ArchivedRecord(partitions[i], offsets[i], stamps[i], maybe_event,
                             payloads[i] if payloads is not None else b"")


def archive_log_records(writer: ArchiveWriter, codec: Codec,
                        records: Iterator[tuple[int, int, int, bytes | None]]) -> int:
    """Append (partition, offset, log timestamp, value) records as the log holds them; a
    record that is not a log event is archived as passed over, as the pipeline treats it."""
    appended = 0
    for partition, offset, log_timestamp, value in records:
        writer.append(partition, offset, log_timestamp, codec.decode_log_event(value),
                      value or b"")
        appended += 1
    return appended
