"""Columnar replay (`replay_archive`) builds exactly what event-by-event replay builds.

The fast path inserts facts set-wise from Parquet columns and never decodes organic clicks;
these tests hold it to the same tables, row by row, as folding every event through
`replay_events`, and hold its organic-click test to the core's own.
"""

from __future__ import annotations

import ast
import dataclasses
import random
import zlib
from collections import Counter
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from refstream.persistence.archive import (
    ArchiveReader,
    ArchiveWriter,
    archive_log_records,
    table_events,
)
from refstream.persistence.store import ProjectionStore
from refstream.projections.pipeline import UNREAD_FIELDS, Pipeline, is_organic
from refstream.projections.tables import ALL_TABLES, CLICKS, FACT_COLUMNS, row_for
from refstream.replay import engine
from refstream.replay.engine import (
    FoldCounts,
    fold_table,
    organic_clicks,
    replay_archive,
    replay_events,
)
from refstream.replay.sources import AsOf, archive_records, events_of
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import Click, LogEvent, OrderPlaced, OrderReturned, Share, Signup
from refstream.schemas.privacy import Pseudonymiser
from refstream.tools import native
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events

RULES = load_rules(default_rules_path())
CODEC = Codec()
PARTITIONS = 3


def synthetic_log(seed: int) -> list[LogEvent]:
    pseudonymiser = Pseudonymiser(b"columnar-replay-test-secret-0000")
    config = SyntheticConfig(shops=3, customers_per_shop=300, days=20, seed=seed)
    return [pseudonymiser.to_log_event(e) for e in iter_shop_events(config)]


def write_archive(root: Path, events: list[LogEvent], duplicates: int = 0,
                  junk: int = 0) -> None:
    """Shops spread over partitions by hash; optionally some repeated events (a producer
    retry re-appends them) and some records that are not log events (passed over)."""
    rng = random.Random(5)
    per_partition: dict[int, list[bytes | None]] = {p: [] for p in range(PARTITIONS)}
    for event in events:
        partition = zlib.crc32(event.shop_id.encode()) % PARTITIONS
        per_partition[partition].append(CODEC.encode(event))
    for _ in range(duplicates):
        partition = rng.choice([p for p, values in per_partition.items() if values])
        values = per_partition[partition]
        values.insert(rng.randrange(len(values)), rng.choice(values))
    for _ in range(junk):
        values = per_partition[rng.randrange(PARTITIONS)]
        values.insert(rng.randrange(len(values) + 1), b"\x00 not a log record")
    writer = ArchiveWriter(root)
    for partition, values in per_partition.items():
        archive_log_records(writer, CODEC, iter(
            (partition, offset, 1_790_000_000_000 + offset, value)
            for offset, value in enumerate(values)))
    writer.flush()


def tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    store = ProjectionStore(db)
    try:
        return {t.name: store.table_rows(t.name) for t in ALL_TABLES}
    finally:
        store.close()


Tables = dict[str, list[tuple[object, ...]]]


def replay_both(tmp_path: Path, as_of: AsOf | None = None,
                overlap: bool | None = None) -> tuple[Tables, Tables]:
    root = tmp_path / "archive"
    slow, fast = tmp_path / "events.duckdb", tmp_path / "columns.duckdb"
    store = ProjectionStore(slow)
    slow_counts = replay_events(events_of(archive_records(root, as_of)), RULES, store)
    store.close()
    store = ProjectionStore(fast)
    fast_counts = replay_archive(root, RULES, store, as_of, overlap=overlap)
    store.close()
    assert fast_counts.events == slow_counts.events
    assert fast_counts.events_by_type == slow_counts.events_by_type
    assert fast_counts.derived_by_type == slow_counts.derived_by_type
    return tables(slow), tables(fast)


@pytest.mark.parametrize("overlap", [False, True], ids=["facts-inline", "facts-on-a-thread"])
def test_columnar_replay_builds_the_same_tables_as_event_by_event(tmp_path: Path,
                                                                  overlap: bool) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=3), duplicates=200, junk=5)
    # Columnar replay folds a partition shop by shop: it must hold interleaved shops.
    reader = ArchiveReader(tmp_path / "archive")
    assert max(len(set(reader.read_partition_table(p).column("shop_id").drop_null()
                       .to_pylist())) for p in reader.partitions()) > 1
    slow, fast = replay_both(tmp_path, overlap=overlap)
    assert sum(len(rows) for rows in slow.values()) > 1000
    assert len(slow["rewards"]) > 10 and len(slow["clicks"]) > 1000
    for name, rows in slow.items():
        assert fast[name] == rows, name


def test_columnar_replay_is_the_same_taken_in_small_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmark's partitions span many chunks of rows; these test logs fit in one. Small
    # chunks put runs of time-only rows, and shops that end, across chunk boundaries.
    monkeypatch.setattr(engine, "FOLD_CHUNK", 97)
    write_archive(tmp_path / "archive", synthetic_log(seed=3), duplicates=20, junk=3)
    reader = ArchiveReader(tmp_path / "archive")
    assert max(reader.read_partition_rows(p).num_rows
               for p in reader.partitions()) > 10 * engine.FOLD_CHUNK
    slow, fast = replay_both(tmp_path)
    assert fast == slow


@pytest.mark.parametrize("cut", [AsOf(1_790_000_000_000 + 1500), AsOf.parse(None, "0:700,2:50")])
def test_columnar_replay_honours_as_of(tmp_path: Path, cut: AsOf) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=4))
    slow, fast = replay_both(tmp_path, cut)
    assert fast == slow
    whole = ArchiveReader(tmp_path / "archive").record_count
    assert 0 < sum(len(slow[t]) for t in FACT_COLUMNS) < whole


def test_columnar_replay_with_an_as_of_that_cuts_nothing(tmp_path: Path) -> None:
    # What `refstream replay` passes without --as-of: the rows stay unordered, taken in order.
    write_archive(tmp_path / "archive", synthetic_log(seed=4))
    slow, fast = replay_both(tmp_path, AsOf.parse(None, None))
    assert fast == slow
    assert sum(len(slow[t]) for t in FACT_COLUMNS) > 0


def test_organic_clicks_agree_with_the_core(tmp_path: Path) -> None:
    rng = random.Random(11)
    campaign = RULES.campaigns[0]
    clicks: list[LogEvent] = []
    for i in range(400):
        clicks.append(Click(
            f"c{i}", "shop-a", 1_790_000_000_000 + i, f"v{i}", "https://shop.example/", "ip:x",
            "ua", referral_code=rng.choice([None, "", "CODE1"]),
            campaign_id=rng.choice([None, "", campaign.id, "no-such-campaign"]),
            utm_campaign=rng.choice([None, "", campaign.utm_campaign, "other-slug"])))
    write_archive(tmp_path / "archive", clicks)
    reader = ArchiveReader(tmp_path / "archive")
    expected, got = [], []
    for partition in reader.partitions():
        log = reader.read_partition_table(partition)
        got += organic_clicks(RULES, log).to_pylist()
        expected += [is_organic(RULES, r.event)  # type: ignore[arg-type]
                     for r in reader.iter_records(partition)]
    assert got == expected
    assert 0 < sum(got) < len(got)


def test_fact_columns_name_the_fields_the_row_mappers_read() -> None:
    for event in synthetic_log(seed=6)[:3000]:
        mapped = row_for(event)
        if mapped is None or mapped[0].name not in FACT_COLUMNS:
            continue
        table, row = mapped
        event_type, renamed = FACT_COLUMNS[table.name]
        assert event.event_type == event_type
        assert row == tuple(getattr(event, renamed.get(c, c)) for c in table.column_names)


def test_organic_clicks_of_an_empty_table() -> None:
    empty = pa.table({"event_type": pa.array([], pa.string()),
                      "referral_code": pa.array([], pa.string()),
                      "campaign_id": pa.array([], pa.string()),
                      "utm_campaign": pa.array([], pa.string())})
    assert organic_clicks(RULES, empty).to_pylist() == []


def test_the_core_reads_none_of_the_fields_replay_leaves_out() -> None:
    # Replay neither reads UNREAD_FIELDS from the archive nor fills them in ("" instead):
    # no core module may name them, and a fold must not change when they are blank.
    sources = [source for package in ("projections", "fraud", "rewards")
               for source in (native.SOURCE_ROOT / package).rglob("*.py")]
    assert len(sources) > 10
    for source in sources:
        tree = ast.parse(source.read_text())
        read = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        if source.name != "pipeline.py":  # where UNREAD_FIELDS itself names them
            read |= {node.value for node in ast.walk(tree)
                     if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not read & UNREAD_FIELDS, source
    events = synthetic_log(seed=7)
    blanked = [dataclasses.replace(e, **dict.fromkeys(UNREAD_FIELDS & {
        f.name for f in dataclasses.fields(e)}, "")) for e in events]
    assert blanked != events
    full, blank = Pipeline(RULES), Pipeline(RULES)
    outputs = [full.apply(e) for e in events]
    assert [blank.apply(e) for e in blanked] == outputs
    assert sum(map(len, outputs)) > 100


def test_replay_reads_neither_unread_fields_nor_payloads(tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=8)[:500])
    reader = ArchiveReader(tmp_path / "archive")
    log = reader.read_partition_rows(reader.partitions()[0], without=UNREAD_FIELDS)
    assert not set(log.column_names) & (UNREAD_FIELDS | {"payload"})
    clicks = [e for e in table_events(log) if isinstance(e, Click)]
    assert clicks and all(c.landing_url == c.user_agent == "" for c in clicks)
    assert all(c.visitor_id for c in clicks)


def test_identifier_columns_are_stored_plain(tmp_path: Path) -> None:
    # Table.plain: each names a column of its table, and DuckDB honours it.
    for table in ALL_TABLES:
        assert table.plain <= set(table.column_names), table.name
    assert CLICKS.plain
    write_archive(tmp_path / "archive", synthetic_log(seed=8)[:3000])
    store = ProjectionStore(tmp_path / "plain.duckdb")
    replay_archive(tmp_path / "archive", RULES, store)
    store.close()
    store = ProjectionStore(tmp_path / "plain.duckdb")
    stored = dict(store.connection.execute(
        "SELECT column_name, string_agg(DISTINCT compression) FROM "
        "pragma_storage_info('clicks') WHERE segment_type = 'VARCHAR' GROUP BY ALL").fetchall())
    store.close()
    for column in CLICKS.plain:
        assert set(stored[column].split(",")) <= {"Uncompressed", "Constant"}, column
    assert "Uncompressed" not in stored["utm_source"]


def test_a_shop_in_two_partitions_keeps_its_state_across_them(tmp_path: Path) -> None:
    # Replay forgets a shop once no later partition holds it (Pipeline.forget): a shop whose
    # log was moved to another partition midway keeps its state until its last partition.
    events = synthetic_log(seed=9)
    moved = [e for e in events if e.shop_id == "shop-001"]
    half = {id(e) for e in moved[: len(moved) // 2]}
    writer = ArchiveWriter(tmp_path / "archive")
    offsets = {0: 0, 2: 0}
    for event in events:
        partition = 0 if id(event) in half else 2
        archive_log_records(writer, CODEC, iter([(partition, offsets[partition],
                                                  1_790_000_000_000, CODEC.encode(event))]))
        offsets[partition] += 1
    writer.flush()
    reader = ArchiveReader(tmp_path / "archive")
    assert reader.shop_partitions() == {"shop-001": {0, 2}, "shop-002": {2}, "shop-003": {2}}
    slow, fast = replay_both(tmp_path)
    assert len(slow["referrals"]) > 10
    assert fast == slow


def test_replay_forgets_each_shop_after_its_last_partition(tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=10)[:4000])
    reader = ArchiveReader(tmp_path / "archive")
    (partition,) = reader.partitions()
    log = reader.read_partition_table(partition)
    shops = set(log.column("shop_id").drop_null().to_pylist())
    assert len(shops) == 3
    for keep in (set(), {"shop-002"}):
        pipeline, store = Pipeline(RULES), ProjectionStore(tmp_path / f"f{len(keep)}.duckdb")
        fold_table(pipeline, store, log, FoldCounts(), last_here=shops - keep)
        store.close()
        assert set(pipeline.state.shops) == keep


def test_a_failed_insert_on_the_facts_thread_surfaces_at_the_next_use(tmp_path: Path) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=8)[:500])
    reader = ArchiveReader(tmp_path / "archive")
    log = reader.read_partition_table(reader.partitions()[0]).drop_columns(["visitor_id"])
    store = ProjectionStore(tmp_path / "failed.duckdb")
    store.insert_facts(log, background=True)
    with pytest.raises(duckdb.BinderException, match="visitor_id"):
        store.flush()
    store.flush()  # reported once; the store stays usable
    store.close()


def test_replay_tells_the_pipeline_what_each_partition_holds_ahead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_archive(tmp_path / "archive", synthetic_log(seed=3), duplicates=50)
    reader = ArchiveReader(tmp_path / "archive")
    told: dict[int, tuple[frozenset[str] | None, frozenset[str] | None]] = {}

    def spy(pipeline: Pipeline, store: ProjectionStore, log: pa.Table, *args: object,
            **kwargs: object) -> None:
        foresight = pipeline.foresight
        assert foresight is not None
        told[log.column("partition")[0].as_py()] = (foresight.repeats,
                                                    foresight.deciding_visitors)
        fold_table(pipeline, store, log, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "fold_table", spy)
    store = ProjectionStore(tmp_path / "replay.duckdb")
    replay_archive(tmp_path / "archive", RULES, store)
    store.close()
    repeated_events = 0
    for partition in reader.partitions():
        events = [r.event for r in reader.iter_records(partition) if r.event is not None]
        ids = Counter(e.event_id for e in events)
        orders = Counter(e.order_id for e in events if isinstance(e, OrderPlaced))
        returns = Counter(e.return_id for e in events if isinstance(e, OrderReturned))
        repeats, deciding = told[partition]
        # The ids that come again: event ids, and the natural keys the core claims.
        assert repeats == {key for seen in (ids, orders, returns)
                           for key, n in seen.items() if n > 1}
        repeated_events += sum(1 for n in ids.values() if n > 1)
        # The visitors a decision may read touches of: those on signups and orders.
        assert deciding == {e.visitor_id for e in events
                            if isinstance(e, Signup | OrderPlaced) and e.visitor_id is not None}
        clicks = {e.visitor_id for e in events if isinstance(e, Click) and e.referral_code}
        assert clicks - deciding and clicks & deciding  # both kinds occur in this log
    # 50 retries re-appended a record (one may have picked a record twice)
    assert 45 <= repeated_events <= 50


def test_strangers_who_never_sign_up_still_count_as_a_codes_visitors(tmp_path: Path) -> None:
    # Replay keeps no touch of a visitor who never signs up or orders, but their clicks
    # through a code are still uses of it: broadcasting counts distinct visitors, and a
    # code posted on coupon sites is mostly clicked by strangers who never sign up.
    start, minute = 1_790_000_000_000, 60_000
    events: list[LogEvent] = [Share("s1", "shop-a", start, "cust-owner", "POSTED", "social")]
    broadcast = RULES.fraud.broadcasting
    for i in range(broadcast.min_distinct_visitors + 2):
        events.append(Click(f"c{i}", "shop-a", start + (i + 1) * minute, f"stranger-{i}",
                            "", "ip:s", "", referral_code="POSTED",
                            utm_source=f"coupon-site-{i % broadcast.min_distinct_sources}"))
    events += [Click("c-friend", "shop-a", start + 30 * minute, "v-friend", "", "ip:f", "",
                     referral_code="POSTED", utm_source="whatsapp"),
               Signup("su-friend", "shop-a", start + 31 * minute, "cust-friend", "em:f", "ip:f",
                      visitor_id="v-friend"),
               # Later: stream time passes the grace period, the friend's referral is decided.
               Click("c-later", "shop-a", start + 14 * 24 * 60 * minute, "v-later", "", "ip:l",
                     "")]
    write_archive(tmp_path / "archive", sorted(events, key=lambda e: e.occurred_at))
    slow, fast = replay_both(tmp_path)
    assert fast == slow
    assert [row[2] for row in slow["fraud_flags"]] == ["broadcasting"]
    assert [(row[2], row[4]) for row in slow["referrals"]] == [("cust-friend", "POSTED")]


def test_orders_replay_lets_only_move_time_change_nothing(tmp_path: Path) -> None:
    # Replay lets orders only move time when no output can depend on them
    # (Pipeline.only_moves_time, engine.quiet_orders); each customer here breaks exactly
    # one of its conditions, so letting their orders only move time would change the tables.
    day, hour = 24 * 3_600_000, 3_600_000
    t = 1_790_000_000_000
    shop = "shop-q"

    def order(i: int, customer: str, at: int, *, visitor: str | None = None,
              code: str | None = None, payment: str | None = None) -> OrderPlaced:
        return OrderPlaced(f"o{i}", shop, at, f"order-{i}", customer, 5_000, "EUR", "ip:o",
                           visitor, code, None, payment)

    events: list[LogEvent] = [
        # A customer from before the log (no signup) who orders, then shares a code: a
        # referrer, whose payment card a referee's order later shows (self-referral).
        order(1, "old-referrer", t, payment="card:shared"),
        Share("s1", shop, t + hour, "old-referrer", "R-OLD", "email"),
        Click("c1", shop, t + 2 * hour, "v-referee", "", "ip:r", "", referral_code="R-OLD"),
        Signup("su1", shop, t + 3 * hour, "referee", "em:r", "ip:r", visitor_id="v-referee"),
        # A signed-up customer whose first order carries no visitor id: it qualifies.
        order(2, "referee", t + 2 * day, payment="card:shared"),
        # A customer from before the log who types the code at a later checkout.
        order(3, "typist", t + hour),
        order(4, "typist", t + 3 * day, code="R-OLD"),
        # A customer from before the log on a browser a new customer signs up on later:
        # the click in between is an existing customer's, so it is no touch.
        order(5, "household", t + 4 * day, visitor="v-shared"),
        Click("c2", shop, t + 5 * day, "v-shared", "", "ip:h", "", referral_code="R-OLD"),
        Signup("su2", shop, t + 5 * day + hour, "housemate", "em:h", "ip:h",
               visitor_id="v-shared"),
        # And one who is quiet indeed.
        order(6, "quiet", t + 6 * day, visitor="v-quiet"),
        Click("c3", shop, t + 40 * day, "v-late", "", "ip:l", ""),
    ]
    write_archive(tmp_path / "archive", events)
    reader = ArchiveReader(tmp_path / "archive")
    (partition,) = reader.partitions()
    table = reader.read_partition_table(partition)
    store = ProjectionStore(tmp_path / "foresight.duckdb")
    foresight = engine.foresee(store, table)
    store.close()
    assert engine.quiet_orders(table, foresight).to_pylist() == [
        e.order_id == "order-6" if isinstance(e, OrderPlaced) else False for e in events]
    told = Pipeline(RULES, foresight=foresight)
    assert [told.only_moves_time(e) for e in events if isinstance(e, OrderPlaced)] == [
        e.order_id == "order-6" for e in events if isinstance(e, OrderPlaced)]
    slow, fast = replay_both(tmp_path)
    assert fast == slow
    referrals = {row[2]: row[7] for row in slow["referrals"]}  # referee -> status
    assert referrals == {"referee": "rejected", "typist": "rejected"}  # self-referral; old
    assert {row[2] for row in slow["fraud_flags"]} == {"self_referral"}
    assert "housemate" not in referrals  # the existing customer's click was no touch


def test_records_repeated_in_two_partitions_of_a_moved_shop(tmp_path: Path) -> None:
    # A shop whose log moved partitions, and a producer retry that re-appended records on
    # both sides of the move: the facts keep the first record of each key (their keys are
    # built after loading, and the tables with a repeated key are filled again), and the
    # pipeline, for a shop held by two partitions, remembers every id.
    events = synthetic_log(seed=9)
    moved = [e for e in events if e.shop_id == "shop-001"]
    first_half = moved[: len(moved) // 2]
    again = {id(e) for e in random.Random(2).sample(first_half, 40)}
    writer = ArchiveWriter(tmp_path / "archive")
    offsets = {0: 0, 2: 0}

    def append(partition: int, event: LogEvent) -> None:
        archive_log_records(writer, CODEC, iter([(partition, offsets[partition],
                                                  1_790_000_000_000, CODEC.encode(event))]))
        offsets[partition] += 1

    half = {id(e) for e in first_half}
    for event in events:
        append(0 if id(event) in half else 2, event)
    for event in first_half:
        if id(event) in again:
            append(2, event)
    writer.flush()
    slow, fast = replay_both(tmp_path)
    assert fast == slow
    store = ProjectionStore(tmp_path / "again.duckdb")
    entered: list[str] = []

    def record(step: str) -> AbstractContextManager[None]:
        entered.append(step)
        return nullcontext()

    replay_archive(tmp_path / "archive", RULES, store, steps=record)
    store.close()
    assert "facts with repeated keys, again" in entered
