"""Benchmark of the projector and the reports: log + derived events per second written to DuckDB
through ProjectionStore (batched upserts), and the scorecard's query time over that database.

The baseline, measured in the same run on the same events, is building their rows with
`projections.tables.row_for` without writing: the ratio says what DuckDB adds, across hosts.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from refstream.persistence.store import ProjectionStore
from refstream.projections.tables import ALL_TABLES, row_for
from refstream.reports.definitions import REPORTS, SCORECARD
from refstream.reports.results import kpi_rows, run_report, scorecard
from refstream.schemas.events import (
    Attribution,
    Click,
    FraudFlag,
    OrderPlaced,
    OrderReturned,
    RewardDue,
    RewardReversal,
    RewardStatus,
    Share,
    Signup,
)

DEFAULT_EVENTS = 1_000_000
DEFAULT_BATCH_ROWS = 200_000
QUERY_REPEATS = 3
PII_SECRET = b"bench-secret-bench-secret-bench!"

START_MS = 1_790_000_000_000  # October 2026
DAY_MS = 86_400_000
BUILDER_DAYS = 30
BUILDER_SHOPS = 3
# The builder's funnel, as "one in N" (deterministic, no randomness): a customer shares, a
# share brings clicks, a click signs up, a signup orders, an order is returned, a referral is
# held for fraud review.
SHARER_EVERY = 12
CLICKS_PER_SHARE = 6
SIGNUP_EVERY = 4
ORDER_EVERY = 2
RETURN_EVERY = 10
HELD_EVERY = 25
REWARD_MINOR = 1_000
ORDER_MINOR = 4_599
PROBE_CUSTOMERS = 12_000


# ------------------------------------------------------------------------------ event sources


def builder_events(target: int) -> Iterator[Any]:
    """A deterministic shop log with its derived events, about `target` events in all."""
    # Events per existing customer in this funnel, measured on a small probe shop so the
    # whole log lands near the target.
    per_customer = sum(1 for _ in _builder_shop("probe", PROBE_CUSTOMERS)) / PROBE_CUSTOMERS
    customers = max(1, round(target / (BUILDER_SHOPS * per_customer)))
    for shop_no in range(BUILDER_SHOPS):
        yield from _builder_shop(f"shop-{shop_no + 1:03d}", customers)


def _builder_shop(shop: str, customers: int) -> Iterator[Any]:
    span = BUILDER_DAYS * DAY_MS
    referrals = 0
    for n in range(customers):
        customer = f"c{n:07d}"
        at = START_MS + n * span // customers
        yield OrderPlaced(f"{shop}-o-{n}", shop, at, f"o-{n}", customer, ORDER_MINOR, "EUR",
                          "ip")
        if n % SHARER_EVERY:
            continue
        code = f"code-{n}"
        yield Share(f"{shop}-s-{n}", shop, at, customer, code, "email", "c2c")
        for k in range(CLICKS_PER_SHARE):
            visitor = f"v{n}-{k}"
            click_id = f"{shop}-k-{n}-{k}"
            yield Click(click_id, shop, at + k, visitor, "https://shop/", "ip", "ua", code,
                        "c2c")
            if k % SIGNUP_EVERY:
                continue
            referee = f"r{n}-{k}"
            referral_id = f"ref-{shop}-{referee}"
            referrals += 1
            yield Signup(f"{shop}-u-{n}-{k}", shop, at + k + 1, referee, "em", "ip", visitor)
            held = referrals % HELD_EVERY == 0
            status = "held" if held else "attributed"
            yield Attribution(referral_id, shop, at + k + 1, "bench", status, referee, customer,
                              code, "c2c", "last_click", None, click_id,
                              f"{shop}-u-{n}-{k}")
            if held:
                yield FraudFlag(f"flag-{referral_id}", shop, at + k + 1, "bench", "ip_velocity",
                                "ip", "ip", 5, 6, 3_600_000, "hold", (click_id,), referral_id)
                continue
            if referrals % ORDER_EVERY:
                continue
            order_id = f"o-{n}-{k}"
            yield OrderPlaced(f"{shop}-o-{n}-{k}", shop, at + k + 2, order_id, referee,
                              ORDER_MINOR, "EUR", "ip", visitor)
            yield Attribution(referral_id, shop, at + k + 2, "bench", "qualified", referee,
                              customer, code, "c2c", "last_click", None, click_id,
                              f"{shop}-u-{n}-{k}", order_id, 1)
            reward_id = f"rw-{referral_id}"
            due_at = at + k + 2 + BUILDER_DAYS * DAY_MS
            yield RewardStatus(reward_id, shop, at + k + 2, "bench", "pending", referral_id,
                               customer, "referrer", "credit", REWARD_MINOR, "EUR", due_at,
                               "first order", order_id)
            yield RewardStatus(reward_id, shop, due_at, "bench", "due", referral_id, customer,
                               "referrer", "credit", REWARD_MINOR, "EUR", due_at,
                               "first order", order_id, 1)
            yield RewardDue(reward_id, shop, due_at, "bench", referral_id, customer,
                            "referrer", "credit", REWARD_MINOR, "EUR", due_at, "first order",
                            order_id)
            if referrals % RETURN_EVERY == 0:
                yield OrderReturned(f"{shop}-ret-{n}-{k}", shop, due_at + 1, f"ret-{n}-{k}",
                                    order_id, referee, ORDER_MINOR, "EUR")
                yield RewardReversal(f"rev-{reward_id}", reward_id, shop, due_at + 1, "bench",
                                     customer, REWARD_MINOR, "EUR", "returned",
                                     f"ret-{n}-{k}")


def synthetic_events(target: int) -> Iterator[Any]:
    """The synthetic shop generator through pseudonymisation and the real pipeline."""
    from refstream.projections.pipeline import Pipeline
    from refstream.rewards.rules import default_rules_path, load_rules
    from refstream.schemas.privacy import Pseudonymiser
    from refstream.tools.synthetic import events_for_target, iter_shop_events

    pseudonymiser = Pseudonymiser(PII_SECRET)
    pipeline = Pipeline(load_rules(default_rules_path()))
    # About 10% of the stream are derived events; size the log so the total reaches target.
    config = events_for_target(round(target / 1.1))
    for shop_event in iter_shop_events(config):
        event = pseudonymiser.to_log_event(shop_event)
        yield event
        yield from pipeline.apply(event)


def pick_source(name: str) -> tuple[str, Callable[[int], Iterator[Any]]]:
    if name in {"auto", "synthetic"}:
        try:
            import refstream.projections.pipeline
            import refstream.tools.synthetic  # noqa: F401
        except ImportError:
            if name == "synthetic":
                raise
            return "builder", builder_events
        return "synthetic + pipeline", synthetic_events
    return "builder", builder_events


# ------------------------------------------------------------------------------ measuring


def _materialise(source: Callable[[int], Iterator[Any]], target: int) -> list[Any]:
    return list(source(target))


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def best_of(action: Callable[[], Any], repeats: int = QUERY_REPEATS) -> float:
    return min(timed(action)[0] for _ in range(repeats))


def build_rows(events: list[Any]) -> int:
    rows = 0
    for event in events:
        if row_for(event) is not None:
            rows += 1
    return rows


def write_store(events: list[Any], path: Path, batch_rows: int) -> None:
    store = ProjectionStore(path, batch_rows=batch_rows)
    add = store.add
    for event in events:
        add(event)
    store.close()


def print_table(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                        help="about this many log + derived events (default 1,000,000)")
    parser.add_argument("--source", choices=("auto", "synthetic", "builder"), default="auto",
                        help="synthetic generator + pipeline (auto, when installed) or the "
                             "bench's own deterministic builder")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS,
                        help="ProjectionStore batch size (rows buffered per transaction)")
    parser.add_argument("--keep", help="keep the DuckDB file at this path")
    args = parser.parse_args(argv)

    source_name, source = pick_source(args.source)
    prepare, events = timed(partial(_materialise, source, args.events))
    kinds = Counter(type(e).__name__ for e in events)
    log_count = sum(kinds[k] for k in ("Share", "Click", "Signup", "OrderPlaced",
                                       "OrderReturned", "ReviewDecided", "Tick"))
    print(f"source: {source_name}: {len(events):,} events ({log_count:,} log, "
          f"{len(events) - log_count:,} derived) prepared in {prepare:.1f} s")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.keep) if args.keep else Path(folder) / "bench.duckdb"
        path.unlink(missing_ok=True)
        baseline, rows = timed(partial(build_rows, events))
        write, _ = timed(partial(write_store, events, path, args.batch_rows))
        events.clear()  # the queries below should not compete with a million objects
        size_mb = path.stat().st_size / 1e6
        print_table("Projector throughput", ("step", "seconds", "events/s", "vs baseline"), [
            ("baseline: row_for only (no DuckDB)", f"{baseline:.2f}",
             f"{kinds.total() / baseline:,.0f}", "1.0x"),
            (f"ProjectionStore.add + close (batch {args.batch_rows:,})", f"{write:.2f}",
             f"{kinds.total() / write:,.0f}", f"{write / baseline:.1f}x"),
        ])
        print(f"{rows:,} rows built and upserted (latest state per key kept); "
              f"database {size_mb:,.0f} MB")

        conn = duckdb.connect(str(path), read_only=True)
        try:
            counts = {t.name: conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()
                      for t in ALL_TABLES}
            print("  " + ", ".join(f"{name} {c[0]:,}" for name, c in counts.items() if c))
            query_rows: list[tuple[str, ...]] = [
                ("scorecard (all KPIs)", f"{best_of(partial(scorecard, conn)):.3f}")]
            query_rows += [(f"  {kpi.name}", f"{best_of(partial(kpi_rows, conn, kpi)):.3f}")
                           for kpi in SCORECARD]
            query_rows += [(f"report {name}", f"{best_of(partial(run_report, conn, name)):.3f}")
                           for name in REPORTS]
            print_table(f"Query time over the {kinds.total():,}-event database "
                        f"(best of {QUERY_REPEATS}, read-only)", ("query", "seconds"),
                        query_rows)
        finally:
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
