"""Replay's shortcuts, held to the core's promise over generated shop logs (tests/property/logs.py):

- the rows columnar replay lets only move time are exactly those `Pipeline.only_moves_time`
  names, told the `Foresight` replay computed for the partition;
- columnar replay of the archive (`replay_archive`: facts set-wise, the core told what each
  partition holds ahead) builds the same tables, row by row, as folding every event
  (`replay_events`, which knows nothing ahead).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.persistence.archive import ArchiveReader, ArchiveWriter, archive_log_records
from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import Pipeline
from refstream.projections.tables import ALL_TABLES
from refstream.replay import engine
from refstream.replay.engine import replay_archive, replay_events
from refstream.replay.sources import archive_records, events_of
from refstream.rewards.rules import Rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import LogEvent
from tests.property.logs import RULE_VARIANTS, IndexChooser, build_log
from tests.property.test_event_time_properties import _with_lateness
from tests.unit.core.builders import HOUR

pytestmark = pytest.mark.slow  # ~1 min: an archive and two DuckDB stores per example
CODEC = Codec()
PARTITIONS = 2
MAX_LOG = 80
DRAWS_PER_EVENT = 16
VARIANTS = (*RULE_VARIANTS, _with_lateness(RULE_VARIANTS[0], 3 * HOUR))
Tables = dict[str, list[tuple[object, ...]]]


@st.composite
def shop_logs(draw: st.DrawFn) -> list[LogEvent]:
    length = draw(st.integers(1, MAX_LOG))
    choices = draw(st.binary(min_size=length * DRAWS_PER_EVENT,
                             max_size=length * DRAWS_PER_EVENT))
    return build_log(IndexChooser(choices), length)


def write_archive(root: Path, events: list[LogEvent]) -> None:
    """Each shop's events in one partition (by hash of its id), in log order."""
    values: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    for event in events:
        values[zlib.crc32(event.shop_id.encode()) % PARTITIONS].append(CODEC.encode(event))
    writer = ArchiveWriter(root)
    archive_log_records(writer, CODEC, iter(
        (partition, offset, 1_790_000_000_000 + offset, value)
        for partition, rows in values.items() for offset, value in enumerate(rows)))
    writer.flush()


def tables(store: ProjectionStore) -> Tables:
    return {t.name: store.table_rows(t.name) for t in ALL_TABLES}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(shop_logs(), st.sampled_from(VARIANTS))
def test_columnar_replay_keeps_the_cores_promise_and_builds_what_folding_builds(
        log: list[LogEvent], rules: Rules) -> None:
    with TemporaryDirectory() as scratch:
        root = Path(scratch) / "archive"
        write_archive(root, log)
        reader = ArchiveReader(root)
        for partition in reader.partitions():
            table = reader.read_partition_table(partition)
            events = [r.event for r in reader.iter_records(partition)]
            store = ProjectionStore(Path(scratch) / f"ahead-{partition}.duckdb")
            foresight, time_only = engine.look_ahead(store, rules, table, whole_log=True)
            store.close()
            told = Pipeline(rules, foresight=foresight)
            assert time_only.to_pylist() == [
                e is not None and told.only_moves_time(e) for e in events]

        folded = ProjectionStore(Path(scratch) / "events.duckdb")
        replay_events(events_of(archive_records(root)), rules, folded)
        columnar = ProjectionStore(Path(scratch) / "columns.duckdb")
        replay_archive(root, rules, columnar, overlap=False)
        for store in (folded, columnar):
            store.flush()
        expected, got = tables(folded), tables(columnar)
        folded.close()
        columnar.close()
        for name, rows in expected.items():
            assert got[name] == rows, name
