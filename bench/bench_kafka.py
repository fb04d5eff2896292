"""Throughput and latency through the real broker, against raw aiokafka in the same run.

  ingest    shop topics -> ingest -> refstream.log                     (issue: foundation)
  pipeline  shop topics -> ingest -> log -> pipeline -> derived topics (issue: live pipeline)
  latency   append to refstream.log -> derived event sent, at a steady rate (p50/p99)

Baseline: one aiokafka consumer + producer copying the same bytes from the shop topics to a
sink topic, measured on the same broker in the same run. Uses KAFKA_BOOTSTRAP_SERVERS, or
starts a LocalKafka broker on free ports. Run from the repository root with PYTHONPATH=.
(it reuses the test helpers that run a worker process).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from refstream.deploy.kafka_launcher import LocalKafka, free_ports
from refstream.schemas.codec import Codec
from refstream.streams.producer import kafka_producer
from refstream.streams.synthetic import events_for_target, iter_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic


def encoded_events(count: int) -> list[tuple[str, bytes, bytes]]:
    """(event type, key, Avro bytes) for about `count` generated shop events."""
    codec = Codec()
    out = []
    for event in iter_shop_events(events_for_target(count, seed=42)):
        out.append((event.event_type, event.shop_id.encode(), codec.encode(event)))
        if len(out) >= count:
            break
    return out


def publish(settings: object, names: TopicNames, events: list[tuple[str, bytes, bytes]],
            rate: float | None = None) -> None:
    producer = kafka_producer(settings)  # type: ignore[arg-type]
    started = time.perf_counter()
    for i, (event_type, key, value) in enumerate(events):
        producer.send(names.shop(event_type), key=key, value=value)
        if rate is not None:
            ahead = i / rate - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()


async def raw_copy(bootstrap: str, topics: list[str], sink: str, count: int) -> float:
    """Seconds for a plain aiokafka consumer+producer to copy `count` records."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=f"raw-{sink}",
                                auto_offset_reset="earliest", enable_auto_commit=True,
                                max_partition_fetch_bytes=4 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await consumer.start()
    await producer.start()
    copied = 0
    started = time.perf_counter()
    try:
        while copied < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batch.values():
                for record in records:
                    await producer.send(sink, key=record.key, value=record.value)
                    copied += 1
        await producer.flush()
        return time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def metric(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantile(text: str, name: str, q: float) -> float:
    buckets = []
    for line in text.splitlines():
        match = re.match(rf'{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)', line)
        if match:
            buckets.append((float(match.group(1)), float(match.group(2))))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= q * total and total:
            if bound == float("inf"):
                return previous_bound
            share = (q * total - previous_count) / max(count - previous_count, 1e-9)
            return previous_bound + share * (bound - previous_bound)
        previous_bound, previous_count = bound, count
    return float("nan")


def run_path(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
             pipeline: bool) -> tuple[float, float]:
    """(refstream seconds, raw aiokafka seconds) for the same events."""
    settings = isolated_settings(bootstrap, tmp / ("pipeline" if pipeline else "ingest"),
                                 tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    publish(settings, names, events)
    _create_topic(bootstrap, names.prefix + ".raw", settings.partitions)
    baseline = asyncio.run(raw_copy(bootstrap, list(names.shop_topics), names.prefix + ".raw",
                                    len(events)))
    worker = WorkerProcess(settings, [] if pipeline else ["--no-pipeline"]).start()
    started = time.perf_counter()
    try:
        if pipeline:
            deadline = time.monotonic() + 600
            while metric(worker.metrics(), "refstream_events_in_total",
                         f'topic="{names.log}"') < len(events):
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.1)
        else:
            read_topic(bootstrap, names.log, expect=len(events), timeout=600)
        seconds = time.perf_counter() - started
    finally:
        worker.stop()
    return seconds, baseline


def run_latency(bootstrap: str, tmp: Path, events: list[tuple[str, bytes, bytes]],
                rate: float, split: bool) -> tuple[float, float, int]:
    settings = isolated_settings(bootstrap, tmp / f"latency-{split}", tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    ingest = None
    if split:  # ingest in its own process and consumer group; the worker runs the pipeline
        ingest = WorkerProcess(settings.model_copy(update={
            "app_id": settings.app_id + "-ingest", "data_dir": tmp / "ingest"}),
            ["--no-pipeline"]).start()
    worker = WorkerProcess(settings, ["--no-ingest"] if split else []).start()
    try:
        publish(settings, names, events, rate=rate)
        deadline = time.monotonic() + 120
        while metric(worker.metrics(), "refstream_events_in_total",
                     f'topic="{names.log}"') < len(events) and time.monotonic() < deadline:
            time.sleep(0.2)
        text = worker.metrics()
    finally:
        worker.stop()
        if ingest is not None:
            ingest.stop()
    name = "refstream_processing_latency_seconds"
    return (histogram_quantile(text, name, 0.5), histogram_quantile(text, name, 0.99),
            int(metric(text, f"{name}_count")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s for latency")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=["ingest", "pipeline", "latency"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if not bootstrap:
            port, controller = free_ports(2)
            broker = LocalKafka(port=port, controller_port=controller, data_dir=tmp / "kafka",
                                die_with_parent=True, heap="1g").start(timeout=240)
            bootstrap = broker.bootstrap
        try:
            print(f"broker {bootstrap}; preparing {args.events:,} events", file=sys.stderr)
            events = encoded_events(args.events)
            rows = []
            for mode in ("ingest", "pipeline"):
                if args.only in (None, mode):
                    seconds, baseline = run_path(bootstrap, tmp, events, mode == "pipeline")
                    rows.append((mode, len(events) / seconds, len(events) / baseline))
            print(f"\n{'path':10} {'events/s':>12} {'raw aiokafka/s':>15} {'ratio':>7}")
            for mode, eps, raw in rows:
                print(f"{mode:10} {eps:12,.0f} {raw:15,.0f} {eps / raw:7.2f}")
            if args.only in (None, "latency"):
                count = int(args.rate * args.latency_seconds)
                for split in (False, True):
                    p50, p99, samples = run_latency(bootstrap, tmp, events[:count], args.rate,
                                                    split)
                    layout = ("ingest and pipeline in separate processes" if split
                              else "one worker process")
                    print(f"\nlatency at {args.rate:,.0f} events/s for "
                          f"{args.latency_seconds:.0f}s, {layout} (append to refstream.log -> "
                          f"derived event sent, {samples:,} samples): "
                          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        finally:
            if broker is not None:
                broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
