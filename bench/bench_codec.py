"""Benchmark of ingest's decode step for each wire framing, in one run on the same events.

Each framing's records go through `Ingestor.accept` (frame + writer schema lookup + Avro
body + validation + pseudonymisation), as the ingest agent runs it. Framings: Avro
single-object encoding (the baseline), the legacy byte-reversed single-object header, and
Confluent Schema Registry framing (4-byte id). The registry is asked once per schema id and
the answer is cached, so its round trip is not in the figure (here the resolver answers
from memory; with a real registry it is one HTTP call per id per worker). Rounds alternate
framings, so drift of the machine's speed hits each alike; the best round counts.
`--hot-path` and `--ingest-path` time narrower slices of ingest's per-record work instead.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import sys
import time
from collections.abc import Callable

import fastavro

from refstream.schemas.codec import HEADER_LEN, Codec
from refstream.schemas.events import LogEvent
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.registry import confluent_id_header, legacy_single_object_header
from refstream.schemas.shop import ShopEvent
from refstream.streams.ingest import Accepted, Ingestor, RecentIds, SourceRef
from refstream.streams.merge import Batch, EventTimeMerge
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events

PII_SECRET = b"bench-secret-bench-secret-bench!"


class MemoryRegistry:
    """Schema ids assigned in memory to refstream's newest shop schemas."""

    def __init__(self, codec: Codec) -> None:
        names = sorted({v.full_name for v in codec.versions})
        self.ids = {name: 100 + i for i, name in enumerate(names)}
        self.texts = {i: json.dumps(codec.newest(n).declared) for n, i in self.ids.items()}

    def schema_by_id(self, schema_id: int) -> str:
        return self.texts[schema_id]

    def schema_by_guid(self, guid: str) -> str:
        raise KeyError(guid)


def framed(codec: Codec, registry: MemoryRegistry, events: list[ShopEvent]
           ) -> dict[str, list[tuple[bytes, str]]]:
    records: dict[str, list[tuple[bytes, str]]] = {"single-object": [], "legacy header": [],
                                                   "registry id": []}
    for event in events:
        name = codec.record_name(type(event))
        newest = codec.newest(name)
        spec = codec.encode(event)
        body = spec[HEADER_LEN:]
        kind = event.event_type
        records["single-object"].append((spec, kind))
        records["legacy header"].append(
            (legacy_single_object_header(newest.fingerprint) + body, kind))
        out = io.BytesIO()
        out.write(confluent_id_header(registry.ids[name]))
        fastavro.schemaless_writer(out, newest.parsed, codec.to_record(event))
        records["registry id"].append((out.getvalue(), kind))
    return records


def timed_ingest(codec: Codec, records: list[tuple[bytes, str]]) -> float:
    ingestor = Ingestor(codec, Pseudonymiser(PII_SECRET), recent_ids=RecentIds(len(records) + 1))
    source = SourceRef("shop.bench", 0, 0)
    accept: Callable[..., object] = ingestor.accept
    gc.collect()
    started = time.perf_counter()
    for value, kind in records:
        outcome = accept(value, source, kind)
        if not isinstance(outcome, Accepted):
            raise SystemExit(f"bench record rejected: {outcome}")
    return time.perf_counter() - started


def hot_path(codecs: dict[str, Codec], events: list[ShopEvent], rounds: int) -> None:
    """CPU time per event of what the live stages do per record in process: ingest's
    accept (frame, decode, validate, dedupe, pseudonymise) + encoding the log event, and the
    pipeline's decoding of that log event; best of `rounds` (CPU time: less moved by
    other processes on a shared machine than wall time). Each codec (the fast path exec'd,
    and compiled with mypyc when its build is current) runs in every round, alternately."""
    first = next(iter(codecs.values()))
    records = [(first.encode(event), event.event_type) for event in events]
    source = SourceRef("shop.bench", 0, 0)
    best_ingest = dict.fromkeys(codecs, float("inf"))
    best_decode = dict.fromkeys(codecs, float("inf"))
    outputs: dict[str, list[bytes]] = {}
    for _ in range(rounds):
        for label, codec in codecs.items():
            ingestor = Ingestor(codec, Pseudonymiser(PII_SECRET),
                                recent_ids=RecentIds(len(records) + 1))
            gc.collect()
            started = time.process_time()
            log_values = []
            for value, kind in records:
                outcome = ingestor.accept(value, source, kind)
                if not isinstance(outcome, Accepted):
                    raise SystemExit(f"bench record rejected: {outcome}")
                log_values.append(codec.encode(outcome.event))
            best_ingest[label] = min(best_ingest[label], time.process_time() - started)
            started = time.process_time()
            for value in log_values:
                codec.decode(value)
            best_decode[label] = min(best_decode[label], time.process_time() - started)
            outputs[label] = log_values
    if len({tuple(values) for values in outputs.values()}) != 1:
        raise SystemExit("the codecs wrote different log bytes")
    print(f"hot path, {len(records):,} synthetic shop events, best of {rounds} alternating "
          "rounds (CPU time):")
    for label in codecs:
        print(f"  {label:26} ingest accept + log encode "
              f"{best_ingest[label] / len(records) * 1e6:.1f} µs/event; "
              f"pipeline log decode {best_decode[label] / len(records) * 1e6:.1f} µs/event")


# As the ingest stage runs: records taken a fetch batch at a time from partition p of each
# shop.<type> topic, merged per shop by event time.
INGEST_FETCH = 500
INGEST_PARTITIONS = 4
INGEST_MERGE_IDLE_S = 0.05
INGEST_FETCH_GAP_S = 0.02  # a fetch of 500 records at 25k events/s


IngestRecord = tuple[str, int, bytes, str]  # topic, partition, value, event type


def ingest_round(codec: Codec, records: list[IngestRecord]) -> tuple[float, list[bytes]]:
    """One pass of `records` through ingest's per-record work: (CPU seconds, log bytes in
    append order)."""
    ingestor = Ingestor(codec, Pseudonymiser(PII_SECRET), recent_ids=RecentIds(len(records) + 1))
    merge: EventTimeMerge[LogEvent | None] = EventTimeMerge(INGEST_MERGE_IDLE_S)
    offsets: dict[tuple[str, int], int] = {}
    done: dict[tuple[str, int], int] = {}
    log_values: list[bytes] = []
    encode = codec.encode

    def drain(batch: Batch[LogEvent | None]) -> None:
        for released in batch.appends:
            log_values.append(encode(released.item))
        done.update(batch.acked)

    clock = 0.0
    gc.collect()
    started = time.process_time()
    for first in range(0, len(records), INGEST_FETCH):
        for topic, partition, value, kind in records[first:first + INGEST_FETCH]:
            tp = (topic, partition)
            offset = offsets[tp] = offsets.get(tp, -1) + 1
            outcome = ingestor.accept(value, SourceRef(topic, partition, offset), kind)
            if not isinstance(outcome, Accepted):
                raise SystemExit(f"bench record rejected: {outcome}")
            log_event = outcome.event
            merge.push(tp, offset, log_event, clock,
                       shop=log_event.shop_id, occurred_at=log_event.occurred_at)
        drain(merge.release(clock))
        clock += INGEST_FETCH_GAP_S
    drain(merge.release(clock + INGEST_MERGE_IDLE_S))  # what still waits leaves
    elapsed = time.process_time() - started
    if len(log_values) != len(records) or merge.buffered or len(done) != len(offsets):
        raise SystemExit(f"{len(log_values)} of {len(records)} records appended")
    return elapsed, log_values


def ingest_path(codec: Codec, events: list[ShopEvent], rounds: int) -> None:
    """CPU time per event of the ingest stage's per-record work without Kafka, as
    `IngestStage._ingest` and `_release` do it: accept (decode, validate, dedupe,
    pseudonymise), the event-time merge's push, its release per fetch batch, and the log
    event's encode; best of `rounds`. Prints which modules ran compiled, and a digest of the
    log bytes in append order, so runs of different builds can be compared."""
    shops = sorted({event.shop_id for event in events})
    partition_of = {shop: i % INGEST_PARTITIONS for i, shop in enumerate(shops)}
    records = [(f"shop.{event.event_type}", partition_of[event.shop_id], codec.encode(event),
                event.event_type) for event in events]
    best, log_values = float("inf"), list[bytes]()
    for _ in range(rounds):
        elapsed, log_values = ingest_round(codec, records)
        best = min(best, elapsed)
    digest = hashlib.sha256(b"".join(log_values)).hexdigest()[:16]
    # Which of the path's modules were loaded from an extension rather than their sources.
    modules = {"merge": EventTimeMerge, "ingest": Ingestor, "privacy": Pseudonymiser}
    compiled = [name for name, kind in modules.items()
                if not str(sys.modules[kind.__module__].__file__).endswith(".py")]
    fast_path = "compiled" if codec.schema_compiled else "exec'd"
    print(f"ingest path, {len(records):,} synthetic shop events, best of {rounds} rounds "
          f"(CPU time): {best / len(records) * 1e6:.1f} µs/event = "
          f"{len(records) / best:,.0f} events/s; modules compiled: "
          f"{', '.join(compiled) or 'none'}; codec fast path {fast_path}; "
          f"log sha256 {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="synthetic days (events ∝ days)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per framing")
    parser.add_argument("--hot-path", action="store_true",
                        help="only the per-event CPU cost of ingest and of the pipeline's "
                             "decode, in process")
    parser.add_argument("--ingest-path", action="store_true",
                        help="only the ingest stage's per-record CPU cost in process: accept, "
                             "the event-time merge, and the log encode (no Kafka)")
    args = parser.parse_args()
    events = list(iter_shop_events(SyntheticConfig(seed=5, shops=3, customers_per_shop=2000,
                                                   days=args.days)))
    if args.ingest_path:
        ingest_path(Codec(), events, max(args.rounds, 5))
        return
    if args.hot_path:
        codecs = {"fast path exec'd": Codec(schema_compiled=False)}
        compiled = Codec()
        if compiled.schema_compiled:
            codecs["fast path compiled (mypyc)"] = compiled
        else:
            print("the codec's mypyc build is missing or stale (`make native`): "
                  "exec'd fast path only")
        hot_path(codecs, events, max(args.rounds, 5))
        return
    plain = Codec()
    registry = MemoryRegistry(plain)
    codec = Codec(resolver=registry)
    records = framed(plain, registry, events)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for framing, values in records.items():
            elapsed = timed_ingest(codec, values)
            best[framing] = min(best.get(framing, elapsed), elapsed)
    baseline = len(events) / best["single-object"]
    print(f"ingest decode, {len(events):,} synthetic shop events, best of {args.rounds} "
          "alternating rounds")
    for framing, elapsed in best.items():
        rate = len(events) / elapsed
        print(f"  {framing:14} {rate:>10,.0f} events/s   ratio to single-object "
              f"{rate / baseline:.2f}")


if __name__ == "__main__":
    main()
