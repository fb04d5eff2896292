"""Replay as of a time or an offset: exactly the log prefix appended by then."""

from __future__ import annotations

from pathlib import Path

from refstream.persistence.archive import ArchiveWriter
from refstream.replay.sources import AsOf, archive_records, events_of
from refstream.schemas.codec import Codec
from refstream.schemas.events import LogEvent
from tests.unit.core.builders import ShopLog, when

CODEC = Codec()


def archived(tmp_path: Path) -> tuple[Path, dict[int, list[LogEvent]]]:
    logs = {0: ShopLog("shop-a"), 1: ShopLog("shop-b")}
    for partition, log in logs.items():
        for day in range(10):
            log.click(f"v{partition}-{day}", at=when(day))
    writer = ArchiveWriter(tmp_path)
    for partition, log in logs.items():
        for offset, event in enumerate(log.events):
            # appended a minute after it happened
            writer.append(partition, offset, event.occurred_at + 60_000, event,
                          CODEC.encode(event))
    writer.flush()
    return tmp_path, {p: log.events for p, log in logs.items()}


def test_as_of_offsets_cuts_each_partition_below_its_offset(tmp_path: Path) -> None:
    root, logs = archived(tmp_path)
    got = list(events_of(archive_records(root, AsOf.parse(None, "0:3,1:7"))))
    assert got == logs[0][:3] + logs[1][:7]


def test_as_of_time_keeps_what_was_appended_by_then(tmp_path: Path) -> None:
    root, logs = archived(tmp_path)
    # day 4's clicks were appended at day 4 + 1 minute: after day 4 + 30 s they are not in.
    cut = AsOf(when(4, seconds=30))
    got = list(events_of(archive_records(root, cut)))
    assert got == logs[0][:4] + logs[1][:4]
    assert list(events_of(archive_records(root, AsOf(when(4, minutes=1))))) == (
        logs[0][:5] + logs[1][:5])
