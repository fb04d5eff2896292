"""The replay engine: the pure core over a sequence of log events, into a projection store.

The embedded runner, `refstream replay` and recovery all fold events through `apply_event`,
so every projection set is built by the same code from the same log.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from refstream.persistence.archive import PASSED_OVER, ArchiveReader, table_events
from refstream.persistence.store import ProjectionStore, usable_cpus
from refstream.projections.pipeline import UNREAD_FIELDS, Foresight, Pipeline
from refstream.replay.collector import collector_paused
from refstream.replay.sources import AsOf
from refstream.rewards.rules import Rules
from refstream.schemas.events import (
    Click,
    CodeIssued,
    DerivedEvent,
    LogEvent,
    OrderPlaced,
    Share,
    Signup,
)

ProgressCallback = Callable[[int], None]
PROGRESS_EVERY = 10_000
# Entered around each named step of a columnar replay ("core", "reading the archive", ...):
# the benchmark passes a timer there to show where the time goes (bench/bench_replay.py);
# replay itself reads no clock per step.
StepHook = Callable[[str], AbstractContextManager[object]]


def no_step_hook(step: str) -> AbstractContextManager[None]:
    """The default StepHook: nothing around any step."""
    return nullcontext()


@dataclass
class FoldCounts:
    """What a fold applied and derived."""

    events: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    derived_by_type: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def apply_event(pipeline: Pipeline, store: ProjectionStore, event: LogEvent,
                counts: FoldCounts) -> list[Any]:
    """One log event: its own rows, then the core's derived events and their rows."""
    counts.events += 1
    counts.events_by_type[event.event_type] += 1
    store.add(event)
    derived = pipeline.apply(event)
    for item in derived:
        counts.derived_by_type[item.event_type] += 1
        store.add(item)
    return derived


def replay_events(events: Iterable[LogEvent], rules: Rules, store: ProjectionStore,
                  progress: ProgressCallback | None = None) -> FoldCounts:
    """A fresh pipeline over `events`; the store receives every row. Flushes at the end."""
    pipeline = Pipeline(rules)
    counts = FoldCounts()
    store.write_campaigns(rules)
    started = time.perf_counter()
    with collector_paused():
        for event in events:
            apply_event(pipeline, store, event, counts)
            if progress is not None and counts.events % PROGRESS_EVERY == 0:
                progress(PROGRESS_EVERY)
        store.flush()
    counts.seconds = time.perf_counter() - started
    if progress is not None:
        progress(counts.events % PROGRESS_EVERY)
    return counts


# ------------------------------------------------------------------- columnar replay


def organic_clicks(rules: Rules, log: pa.Table) -> pa.ChunkedArray:
    """Rows that are clicks through no referral code and no campaign of the rules: the
    column-wise twin of `projections.pipeline.is_organic`. The core only moves time for
    them, so replay never builds them as objects."""
    def named(column: str, known: Iterable[str]) -> pa.ChunkedArray:
        return pc.fill_null(pc.is_in(log.column(column), pa.array(sorted(known), pa.string())),
                            False)

    coded = pc.fill_null(pc.not_equal(log.column("referral_code"), ""), False)
    campaign = pc.or_(named("campaign_id", rules.campaign_by_id),
                      named("utm_campaign", rules.campaign_by_slug))
    click = pc.equal(log.column("event_type"), Click.event_type)
    return pc.and_not(pc.and_not(click, coded), campaign)


def foresee(store: ProjectionStore, log: pa.Table) -> Foresight:
    """What `log`, the whole log of its shops, holds ahead, as the core asks to be told
    (`projections.pipeline.Foresight`): computed here column-wise, read by the core."""
    types = log.column("event_type")
    signups = pc.equal(types, Signup.event_type)
    orders = pc.equal(types, OrderPlaced.event_type)
    typed = pc.and_(orders, pc.fill_null(pc.not_equal(log.column("discount_code"), ""), False))
    sharers = pc.is_in(types, value_set=pa.array([Share.event_type, CodeIssued.event_type]))

    def distinct(column: str, rows: pa.ChunkedArray | pa.Array) -> frozenset[str]:
        return frozenset(pc.unique(log.column(column).filter(rows)).drop_null().to_pylist())

    return Foresight(
        repeats=store.repeated_ids(log),
        deciding_visitors=distinct("visitor_id", pc.or_(signups, orders)),
        active_customers=(distinct("customer_id", pc.or_(signups, typed))
                          | distinct("referrer_id", sharers)),
        signup_visitors=distinct("visitor_id", signups))


def _known(values: frozenset[str]) -> pa.Array:
    return pa.array(sorted(values), pa.string())


def untouched_clicks(log: pa.Table, foresight: Foresight,
                     organic: pa.ChunkedArray) -> pa.ChunkedArray:
    """Clicks through a campaign (not `organic`, no referral code) by visitors outside
    the deciding visitors: column-wise, the click case of `Pipeline.only_moves_time`."""
    coded = pc.fill_null(pc.not_equal(log.column("referral_code"), ""), False)
    click = pc.equal(log.column("event_type"), Click.event_type)
    campaign = pc.and_not(pc.and_not(click, coded), organic)
    return pc.and_not(campaign, _among(log, "visitor_id", _known(foresight.deciding_visitors),
                                       campaign, missing=False))


def _among(log: pa.Table, column: str, known: pa.Array, rows: pa.ChunkedArray, *,
           missing: bool) -> pa.Array:
    """True where `rows` is and `column` holds one of `known` (a null: `missing`). Looked
    up for those rows alone: the lookup is most of the cost, and they are a few of many."""
    mask = rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows
    values = log.column(column).take(pc.indices_nonzero(mask))
    found = pc.fill_null(pc.is_in(values, value_set=known.drop_null()), missing)
    return pc.replace_with_mask(mask, mask, found.combine_chunks())


def quiet_orders(log: pa.Table, foresight: Foresight) -> pa.ChunkedArray:
    """Orders of a customer outside the active customers, by a visitor on none of the
    signups (or none): column-wise, the order case of `Pipeline.only_moves_time`, which
    says why the core's outputs cannot depend on them. Identifiers are not qualified by
    shop: a collision across shops only makes fewer orders quiet."""
    orders = pc.equal(log.column("event_type"), OrderPlaced.event_type)
    inactive = pc.and_not(orders, _among(log, "customer_id",
                                         _known(foresight.active_customers), orders,
                                         missing=True))
    return pc.and_not(inactive, _among(log, "visitor_id", _known(foresight.signup_visitors),
                                       inactive, missing=False))


def look_ahead(store: ProjectionStore, rules: Rules, log: pa.Table, *,
               whole_log: bool) -> tuple[Foresight | None, pa.ChunkedArray]:
    """For one partition: the `Foresight` to tell the pipeline if `log` is its shops' whole
    log (else None), and the rows that only move their shop's time, column-wise as
    `Pipeline.only_moves_time` decides them row by row (tests/property/
    test_replay_properties.py holds the two equal)."""
    organic = organic_clicks(rules, log)
    if not whole_log:
        return None, organic
    foresight = foresee(store, log)
    unread = pc.or_(untouched_clicks(log, foresight, organic), quiet_orders(log, foresight))
    if foresight.repeats:
        repeats = _known(foresight.repeats)
        for column in ("event_id", "order_id"):
            unread = pc.and_not(unread, _among(log, column, repeats, unread, missing=False))
    return foresight, pc.or_(organic, unread)


def cut_rows(log: pa.Table, as_of: AsOf) -> pa.Table:
    """The rows of one partition (in any order) that come before its first row, in offset
    order, past `as_of`."""
    if not log.num_rows:
        return log
    order = pc.sort_indices(log.column("offset"))
    past = []
    if as_of.time_ms is not None:
        past.append(pc.greater(log.column("log_timestamp").take(order), as_of.time_ms))
    limit = as_of.offsets.get(log.column("partition")[0].as_py())
    if limit is not None:
        past.append(pc.greater_equal(log.column("offset").take(order), limit))
    if not past:
        return log
    first_past = pc.indices_nonzero(past[0] if len(past) == 1 else pc.or_(*past))
    return log.take(order.slice(0, first_past[0].as_py())) if len(first_past) else log


# Rows taken at a time: objects built together sit together in memory, and the core reads
# each event once, soon after it was built (a whole partition built type by type scattered
# each event's fields and cost the core a third more time). While every row was built, 8k
# rows measured best; now that a third of them are (the rest only move time), the whole
# 1M-event replay took 8.24-8.79 s with 64k rows against 9.09-9.67 s with 8k (3 alternating
# rounds; 128k and 256k: no better, and more memory).
FOLD_CHUNK = 65_536


def shop_order(log: pa.Table) -> pa.Array:
    """Row indices that put one partition's rows shop by shop, each shop in offset order
    (records passed over, with no shop, last).

    The core keeps each shop's state apart and every derived id names its shop, so folding
    a partition shop after shop builds exactly the tables that folding it in offset order
    does; but only one shop's state is in use at a time, and the core runs ~15% faster for
    the memory caches (a 3-shop log of 1M events: 9.4 s -> 7.9 s of core time)."""
    return pc.sort_indices(log, sort_keys=[("shop_id", "ascending"), ("offset", "ascending")])


def fold_table(pipeline: Pipeline, store: ProjectionStore, log: pa.Table,
               counts: FoldCounts, *, time_only: pa.ChunkedArray | None = None,
               progress: ProgressCallback | None = None,
               last_here: Collection[str] = (), overlap: bool = False,
               steps: StepHook = no_step_hook) -> None:
    """One partition's archived rows (in any order) through the core into the store.

    Facts go in set-wise from the columns (order-free: the first record per key by offset
    wins); then the rows go through the core shop by shop, each shop's in offset order (see
    `shop_order`); only rows the core reads are built as events. The rows of `time_only`
    just move their shop's time (default: the organic clicks, which `Pipeline.apply` treats
    so; `look_ahead` adds the rows no output can depend on). The shops in `last_here` (no
    later partition holds them) are forgotten by the pipeline as soon as their rows are
    done. `overlap`: the fact rows go in on a thread of their own while the
    core folds (worth it only with a second CPU). `steps` is entered around each step.
    """
    with steps("fact rows into DuckDB"):
        store.insert_facts(log, background=overlap)
    for kind, number in zip(*log.column("event_type").value_counts().flatten(), strict=True):
        if kind.as_py() != PASSED_OVER:
            counts.events_by_type[kind.as_py()] += number.as_py()
            counts.events += number.as_py()
    derived, add = counts.derived_by_type, store.add

    def emit(item: DerivedEvent) -> None:
        derived[item.event_type] += 1
        add(item)

    def forget_done(before: str | None) -> None:
        """Forget the shops of `last_here` sorting before `before` (None: all of them)."""
        with steps("forgetting finished shops"):
            for shop_id in [s for s in pipeline.state.shops
                            if s in last_here and (before is None or s < before)]:
                pipeline.forget(shop_id)

    order = shop_order(log)
    time_only_rows = organic_clicks(pipeline.rules, log) if time_only is None else time_only
    shop_ids, times_column = log.column("shop_id"), log.column("occurred_at")
    for start in range(0, log.num_rows, FOLD_CHUNK):
        with steps("building events"):
            rows = order.slice(start, FOLD_CHUNK)
            chunk_shops = shop_ids.take(rows)
            times = times_column.take(rows).to_pylist()
            time_only = pc.and_not(time_only_rows.take(rows),
                                   late_rows(pipeline, chunk_shops.to_pylist(), times))
            # Only the rows the core reads are taken whole (a third, in the benchmark).
            read = pc.indices_nonzero(pc.invert(time_only))
            events: list[LogEvent | None] = [None] * len(rows)
            for position, event in zip(read.to_pylist(), table_events(log.take(rows.take(read))),
                                       strict=True):
                events[position] = event
            shops = pc.if_else(time_only, chunk_shops, None).to_pylist()
        with steps("core"):
            pipeline.fold(events, shops, times, emit)
            del events
        # Shops sort ascending (no shop last): every shop before the chunk's last is done.
        forget_done(chunk_shops[-1].as_py())
        if progress is not None:
            progress(len(rows))
    forget_done(None)


def late_rows(pipeline: Pipeline, shops: list[str | None], times: list[int]) -> pa.Array:
    """Rows (shop by shop, each in log order) that may come after their shop's watermark
    passed them: the core reports those (a LateArrival), so replay builds them as events
    even if they would only move time otherwise. A row counts as late against the largest
    time before it, which is at least the core's stream time (the core does not move time
    for repeats): some rows are built that need not be, none is missed."""
    lateness = pipeline.rules.event_time.allowed_lateness_ms
    late = [False] * len(times)
    current: str | None = None
    latest: int | None = None
    for row, shop_id in enumerate(shops):
        if shop_id != current:
            current, latest = shop_id, pipeline.stream_time(shop_id) if shop_id else None
        at = times[row]
        if latest is None or at > latest:
            latest = at
        elif at < latest - lateness:
            late[row] = True
    return pa.array(late, pa.bool_())


def replay_archive(root: str | Path, rules: Rules, store: ProjectionStore,
                   as_of: AsOf | None = None,
                   progress: ProgressCallback | None = None, *,
                   overlap: bool | None = None, steps: StepHook = no_step_hook
                   ) -> FoldCounts:
    """A fresh pipeline over the archive (partition by partition, each cut at `as_of` in
    offset order, then shop by shop): the same projections as `replay_events` over the same
    records, faster. `overlap` (default: when this process may use a second CPU): DuckDB
    inserts a partition's fact rows on a thread of its own while the core folds them.
    `steps` is entered around each step of the replay (a timer, in the benchmark)."""
    if overlap is None:
        overlap = usable_cpus() > 1
    reader = ArchiveReader(root)
    held = reader.shop_partitions()
    pipeline = Pipeline(rules)
    counts = FoldCounts()
    store.write_campaigns(rules)
    started = time.perf_counter()
    store.defer_fact_keys()
    with collector_paused():
        for partition in reader.partitions():
            with steps("reading the archive"):
                log = read_for_replay(reader, partition, as_of)
            shops_here = {s for s, partitions in held.items() if partition in partitions}
            with steps("looking ahead in the partition"):
                # A shop also held by another partition may repeat an id, or sign a visitor
                # up, there: this partition is not its whole log.
                foresight, time_only = look_ahead(store, rules, log, whole_log=not any(
                    len(held[s]) > 1 for s in shops_here))
            pipeline = pipeline.with_foresight(foresight)
            fold_table(pipeline, store, log, counts, time_only=time_only, progress=progress,
                       last_here={s for s in shops_here if max(held[s]) == partition},
                       overlap=overlap, steps=steps)
        with steps("derived rows and keys into DuckDB"):
            store.flush()
            repeated = store.add_deferred_keys()
        if repeated:
            # Rare (a producer retry re-appended records): those fact tables again, the
            # first record of each key winning as in the live projector.
            with steps("facts with repeated keys, again"):
                for partition in reader.partitions():
                    store.insert_facts(read_for_replay(reader, partition, as_of),
                                       tables=repeated)
    counts.seconds = time.perf_counter() - started
    return counts


def read_for_replay(reader: ArchiveReader, partition: int, as_of: AsOf | None) -> pa.Table:
    """A partition's rows as replay folds them: no unread fields, cut at `as_of`."""
    log = reader.read_partition_rows(partition, without=UNREAD_FIELDS)
    return log if as_of is None else cut_rows(log, as_of)  # the facts, too, stop at the cut
