"""The log archive: exact order back, resumable, never a gap or a duplicate offset."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refstream.persistence import archive
from refstream.persistence.archive import (
    ArchiveError,
    ArchiveReader,
    ArchiveWriter,
    archive_log_records,
)
from refstream.schemas.codec import Codec
from refstream.schemas.events import (
    Click,
    LogEvent,
    OrderPlaced,
    Signup,
    Tick,
)

CODEC = Codec()
DAY = 86_400_000
T0 = 1_790_000_000_000


def events(n: int, shop: str) -> list[LogEvent]:
    out: list[LogEvent] = []
    for i in range(n):
        when = T0 + i * DAY // 3  # crosses several dates
        match i % 4:
            case 0:
                out.append(Click(f"{shop}-c{i}", shop, when, f"v{i}", "https://x", "ip:1", "ua",
                                 "R-1", None, "email", None, "friends", f"d{i}"))
            case 1:
                out.append(Signup(f"{shop}-s{i}", shop, when, f"c{i}", "email:1", "ip:1", f"v{i}"))
            case 2:
                out.append(OrderPlaced(f"{shop}-o{i}", shop, when, f"o{i}", f"c{i}", 1500 + i,
                                       "EUR", "ip:2", payment_hash="payment:9"))
            case _:
                out.append(Tick(f"{shop}-t{i}", shop, when))
    return out


def write(root: Path, log: dict[int, list[LogEvent]], batch: int) -> None:
    writer = ArchiveWriter(root)
    for partition, items in log.items():
        for offset, event in enumerate(items):
            if offset < writer.next_offset(partition):
                continue
            writer.append(partition, offset, T0 + offset, event, CODEC.encode(event))
            if writer.buffered >= batch:
                writer.flush()
    writer.flush()


def test_reading_back_yields_each_partition_in_exact_order(tmp_path: Path) -> None:
    log = {0: events(25, "shop-a") + events(5, "shop-b"), 2: events(17, "shop-c")}
    write(tmp_path, log, batch=7)
    reader = ArchiveReader(tmp_path)
    assert reader.partitions() == [0, 2]
    assert reader.record_count == 47
    for partition, items in log.items():
        records = list(reader.iter_records(partition, with_payload=True))
        assert [r.offset for r in records] == list(range(len(items)))
        assert [r.event for r in records] == items
        assert [CODEC.decode(r.payload) for r in records] == items
    assert {p.parent.parent.name for p in tmp_path.glob("shop_id=*/date=*/*.parquet")} == {
        "shop_id=shop-a", "shop_id=shop-b", "shop_id=shop-c"}


def test_identifier_columns_are_written_without_a_dictionary(tmp_path: Path) -> None:
    write(tmp_path, {0: events(40, "shop-a")}, batch=100)
    assert set(archive.ARCHIVE_SCHEMA.names) >= archive.PLAIN_COLUMNS
    for path in tmp_path.glob("shop_id=*/date=*/*.parquet"):
        group = pq.ParquetFile(path).metadata.row_group(0)
        encoded = {group.column(i).path_in_schema: group.column(i).encodings
                   for i in range(group.num_columns)}
        for name, encodings in encoded.items():
            dictionary = any("DICTIONARY" in e for e in encodings)
            assert dictionary == (name not in archive.PLAIN_COLUMNS), name


def test_resume_continues_where_the_last_commit_ended(tmp_path: Path) -> None:
    log = {1: events(20, "shop-a")}
    writer = ArchiveWriter(tmp_path)
    for offset, event in enumerate(log[1][:12]):
        writer.append(1, offset, 0, event, CODEC.encode(event))
    writer.flush()
    assert ArchiveWriter(tmp_path).next_offset(1) == 12
    write(tmp_path, log, batch=5)  # a second run skips what is archived already
    assert [r.event for r in ArchiveReader(tmp_path).iter_records(1)] == log[1]


def test_files_of_a_flush_that_crashed_before_its_commit_are_ignored_and_removed(
        tmp_path: Path) -> None:
    log = {0: events(10, "shop-a")}
    write(tmp_path, log, batch=100)
    stray = (tmp_path / "shop_id=shop-a" / "date=2026-09-21"
             / "p0000-000000000010-000000000019.parquet")
    stray.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"x": [1]}), stray)
    assert ArchiveReader(tmp_path).record_count == 10
    writer = ArchiveWriter(tmp_path)
    assert not stray.exists()
    assert writer.next_offset(0) == 10


def test_an_offset_out_of_sequence_is_refused(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path)
    event = events(1, "s")[0]
    writer.append(0, 0, 0, event, b"")
    with pytest.raises(ArchiveError, match="offset 5 appended, 1 expected"):
        writer.append(0, 5, 0, event, b"")
    with pytest.raises(ArchiveError, match="offset 0 appended, 1 expected"):
        writer.append(0, 0, 0, event, b"")


def test_a_gap_between_commits_is_reported(tmp_path: Path) -> None:
    write(tmp_path, {0: events(6, "s")}, batch=3)
    marker = sorted((tmp_path / "_commits").glob("*.json"))[0]
    marker.unlink()
    with pytest.raises(ArchiveError, match="segment starts at 3, 0 expected"):
        ArchiveReader(tmp_path)


def test_records_that_are_not_log_events_keep_their_offset(tmp_path: Path) -> None:
    good = events(3, "s")
    raw = [CODEC.encode(good[0]), b"garbage", CODEC.encode(good[1]), None, CODEC.encode(good[2])]
    writer = ArchiveWriter(tmp_path)
    archive_log_records(writer, CODEC, iter((0, o, 0, v) for o, v in enumerate(raw)))
    writer.flush()
    reader = ArchiveReader(tmp_path)
    assert [r.offset for r in reader.iter_records(0)] == [0, 1, 2, 3, 4]
    assert list(reader.iter_events(0)) == good
