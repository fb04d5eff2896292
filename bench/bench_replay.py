"""Replay throughput: the archived log through the core into a fresh DuckDB, in events/s.

Baseline, measured in the same run: merely reading the same archive back into Python event
objects. Prints the ratio and the projected time for 100M events. The archive is built
first from the synthetic generator (validated, pseudonymised, Avro-encoded, like ingest).
Replay is `replay_archive`, what `refstream replay --archive` runs: facts go into DuckDB
set-wise from the Parquet columns, organic clicks only move time, the rest is the core
(compiled with mypyc when `make install` could build it; the line below says which).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

from tqdm import tqdm

from refstream.replay.archive import ArchiveReader, ArchiveWriter
from refstream.replay.engine import replay_archive
from refstream.replay.sources import archive_records, events_of
from refstream.replay.store import ProjectionStore
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas import native
from refstream.schemas.codec import Codec
from refstream.schemas.privacy import Pseudonymiser
from refstream.streams.cli import tune_garbage_collector
from refstream.streams.synthetic import events_for_target, iter_shop_events

PARTITIONS = 6
HUNDRED_MILLION = 100_000_000


def build_archive(root: Path, target: int) -> int:
    codec = Codec()
    pseudonymiser = Pseudonymiser(b"refstream-benchmark-secret-000000")
    writer = ArchiveWriter(root)
    count = 0
    for shop_event in tqdm(iter_shop_events(events_for_target(target, seed=9)), total=target,
                           unit="ev", desc="build archive", file=sys.stderr, mininterval=1):
        event = pseudonymiser.to_log_event(shop_event)
        partition = zlib.crc32(event.shop_id.encode()) % PARTITIONS
        writer.append(partition, writer.next_offset(partition), event.occurred_at, event,
                      codec.encode(event))
        count += 1
        if writer.buffered >= 250_000:
            writer.flush()
    writer.flush()
    return count


def main(argv: list[str] | None = None) -> int:
    tune_garbage_collector()  # as the `refstream` command does
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_050_000)
    parser.add_argument("--archive", help="reuse (or create) this archive directory")
    args = parser.parse_args(argv)
    rules = load_rules(default_rules_path())
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.archive) if args.archive else Path(scratch) / "archive"
        if not (root / "_commits").is_dir():
            build_archive(root, args.events)
        total = ArchiveReader(root).record_count

        started = time.perf_counter()
        read = sum(1 for _ in events_of(archive_records(root)))
        baseline_s = time.perf_counter() - started

        store = ProjectionStore(Path(scratch) / "replay.duckdb")
        with tqdm(total=total, unit="ev", desc="replay", file=sys.stderr, mininterval=1) as bar:
            started = time.perf_counter()
            counts = replay_archive(root, rules, store, progress=bar.update)
            store.close()
            replay_s = time.perf_counter() - started
        derived = sum(counts.derived_by_type.values())
    replay_eps, read_eps = counts.events / replay_s, read / baseline_s
    core = "compiled with mypyc" if native.active() else "Python (no native build)"
    print(f"\narchive: {total:,} log events; replay derived {derived:,} events; core {core}")
    print(f"{'step':40} {'seconds':>8} {'events/s':>12}")
    print(f"{'baseline: read archive into Python':40} {baseline_s:8.2f} {read_eps:12,.0f}")
    print(f"{'replay: archive -> core -> DuckDB':40} {replay_s:8.2f} {replay_eps:12,.0f}")
    print(f"ratio replay/baseline: {replay_eps / read_eps:.2f}")
    print(f"projected for 100M events: {HUNDRED_MILLION / replay_eps / 60:,.1f} minutes "
          f"(one process; shops spread over partitions replay in parallel processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
