"""Benchmark of the synthetic shop: events per second for about a million events, and writing them.
A baseline (as many minimal dicts, built in the same run) gives a ratio that travels between hosts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from refstream.tools.synthetic import events_for_target, iter_event_dicts, write_jsonl


def _baseline_seconds(count: int) -> float:
    """Building `count` minimal event dicts: the floor any pure-Python generator sits on."""
    started = time.perf_counter()
    records = [{"event_type": "click", "event_id": f"evt_{n:016x}", "shop_id": "shop-001",
                "occurred_at": n} for n in range(count)]
    elapsed = time.perf_counter() - started
    del records
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="target event count")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="fail (exit 1) if generating the events takes longer")
    parser.add_argument("--skip-write", action="store_true", help="only time iter_event_dicts")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    config = events_for_target(args.events, seed=args.seed)
    sizing = time.perf_counter() - started
    print(f"config: {config.shops} shops x {config.customers_per_shop:,} customers x "
          f"{config.days} days (sized in {sizing:.2f} s)")

    started = time.perf_counter()
    count = sum(1 for _ in iter_event_dicts(config))
    generate = time.perf_counter() - started
    baseline = _baseline_seconds(count)
    print(f"iter_event_dicts: {count:,} events in {generate:.2f} s = {count / generate:,.0f} ev/s")
    print(f"baseline (minimal dicts): {baseline:.2f} s = {count / baseline:,.0f} ev/s; "
          f"generator costs {generate / baseline:.1f}x the baseline")

    if not args.skip_write:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            summary = write_jsonl(config, Path(folder) / "bench.jsonl")
            write = time.perf_counter() - started
        print(f"write_jsonl: {summary.events:,} events, {summary.bytes_written / 1e6:,.0f} MB "
              f"in {write:.2f} s = {summary.events / write:,.0f} ev/s")

    if generate > args.max_seconds:
        print(f"FAIL: generating took {generate:.1f} s, over the {args.max_seconds:.0f} s limit",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
