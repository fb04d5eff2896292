"""The jobs that talk to Kafka from the command line: publish a file, create the topics,
archive the log, run a worker or the projector, and the reference finance consumer."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refstream.jobs.common import progress_bar
from refstream.jobs.rules import announced_rules
from refstream.schemas.errors import InputFileError, RefstreamError
from refstream.streams.exit_codes import EXIT_OK, EXIT_PROBLEM
from refstream.streams.settings import Settings


def produce(settings: Settings, path: Path, *, skip_invalid: bool) -> int:
    """Validate each line of `path` and publish it to its shop topic; an invalid line stops
    the run (exit 3) unless `skip_invalid`."""
    from refstream.schemas.jsonl import parse_line
    from refstream.streams.embedded import numbered_lines
    from refstream.streams.producer import publish_shop_events
    from refstream.streams.topics import ensure_topics

    if not path.is_file():
        raise RefstreamError(f"no events file at {path}")
    ensure_topics(settings)

    def events() -> Iterator[Any]:
        with path.open("rb") as stream:
            for number, line in numbered_lines(stream):
                try:
                    if isinstance(line, bytes):
                        raise ValueError("not UTF-8 text; re-export the file as UTF-8")
                    yield parse_line(line)
                except ValueError as exc:
                    if skip_invalid:
                        print(f"{path}:{number}: skipped: {exc}", file=sys.stderr)
                        continue
                    raise InputFileError(str(path), number, str(exc)) from exc

    with progress_bar(None, "ev", f"produce {path.name}") as advance:
        sent = publish_shop_events(settings, events(), advance)
    print(f"published {sent} events from {path} to {settings.kafka_bootstrap}")
    return EXIT_OK


def list_topics(settings: Settings) -> int:
    """Print the topic specs (partitions, retention, cleanup) as code defines them."""
    from refstream.streams.topics import TopicNames, topic_specs

    for spec in topic_specs(TopicNames.from_settings(settings), settings.partitions,
                            replication_factor=settings.replication_factor,
                            own_topic_shops=settings.shop_principals.values()):
        print(f"{spec.name:28} partitions={spec.partitions} {spec.config}  # {spec.purpose}")
    return EXIT_OK


def create_topics(settings: Settings) -> int:
    """Create the topics the broker lacks."""
    from refstream.streams.topics import ensure_topics

    created = ensure_topics(settings, strict=True)
    print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return EXIT_OK


def projector(settings: Settings, db: Path, snapshot: Path | None, publish_every: float, *,
              rules_path: str | None, loglevel: str) -> int:
    """Keep `db` up to date with the live topics, publishing a read-only copy to `snapshot`."""
    from refstream.streams.projector import run_projector
    from refstream.streams.topics import ensure_topics

    ensure_topics(settings)
    return run_projector(settings, announced_rules(rules_path), db, snapshot, publish_every,
                         loglevel=loglevel)


def worker(settings: Settings, *, rules_path: str | None, ingest: bool, pipeline: bool,
           archive: Path | None, loglevel: str) -> int:
    """A live worker (ingest and/or pipeline) until SIGTERM/SIGINT."""
    from refstream.streams.worker import run_worker

    # Ingest needs the rules too: their allowed lateness is what counts as a late append.
    return run_worker(settings, announced_rules(rules_path), with_ingest=ingest,
                      with_pipeline=pipeline, archive=archive, loglevel=loglevel)


def archive_log(settings: Settings, archive: Path) -> int:
    """Copy the canonical log topic to the Parquet archive, from where the archive ends."""
    from refstream.persistence.archive import ArchiveWriter, archive_log_records
    from refstream.replay.sources import topic_raw_records
    from refstream.schemas.codec import Codec
    from refstream.streams.topics import TopicNames

    topic = TopicNames.from_settings(settings).log
    writer = ArchiveWriter(archive)
    codec = Codec()
    records = topic_raw_records(settings.kafka_bootstrap, topic, settings.kafka_security(),
                                start_at=writer.next_offset,
                                stall_timeout_s=settings.client_timeout_s)
    total = 0
    try:
        with progress_bar(None, "rec", "archive") as advance:
            for record in records:
                total += archive_log_records(writer, codec, iter([record]))
                if writer.buffered >= 100_000:
                    writer.flush()
                advance(1)
    except FileNotFoundError as exc:
        raise RefstreamError(str(exc)) from exc
    writer.flush()
    print(f"archived {total} records of {topic} into {archive}")
    return EXIT_OK


def finance_tail(settings: Settings, *, group: str, ledger_path: Path,
                 idle_exit: float | None, quiet: bool) -> int:
    """Pay each reward id once from refstream.reward-due; exit 1 on a conflicting repeat."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from refstream.streams.exit_codes import broker_error
    from refstream.streams.finance import BoundedConsumer, FinanceLedger, PaymentOutcome, tail
    from refstream.streams.metrics import Health, ProcessMetrics, serve_http
    from refstream.streams.schema_registry import reader_codec
    from refstream.streams.topics import TopicNames

    topic = TopicNames.from_settings(settings).reward_due
    bound_ms = int(settings.client_timeout_s * 1000)
    try:
        raw_consumer = KafkaConsumer(
            topic, bootstrap_servers=settings.kafka_bootstrap, group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            bootstrap_timeout_ms=bound_ms,
            request_timeout_ms=max(1000, min(30_000, bound_ms // 2)),
            **settings.kafka_security())
    except KafkaError as exc:
        raise broker_error("reading reward-due", settings.kafka_bootstrap, exc,
                           settings.client_timeout_s) from exc
    metrics, health = ProcessMetrics(), Health()
    health.assigned("finance")  # ready: the consumer above has reached the broker
    server = serve_http(metrics, health, settings.metrics_host, settings.metrics_port)
    print(f"metrics on http://{settings.metrics_host}:{server.server_port}/metrics",
          file=sys.stderr)
    consumer = BoundedConsumer(raw_consumer, settings.kafka_bootstrap, settings.client_timeout_s,
                               metrics=metrics)
    ledger = FinanceLedger(ledger_path)

    def report(outcome: PaymentOutcome) -> None:
        if outcome.action in ("paid", "clawed_back"):
            print(f"{outcome.action.upper():11} {outcome.message_id} {outcome.beneficiary_id} "
                  f"{outcome.amount_minor} {outcome.currency}", flush=True)
        elif not quiet:
            print(f"{outcome.action.upper():11} {outcome.message_id}", flush=True)

    try:
        conflicts = tail(consumer, ledger, reader_codec(settings), report, idle_exit)
    finally:
        health.stopping.set()
        server.shutdown()
        raw_consumer.close()
        totals = ledger.totals()
        ledger.close()
    print(f"ledger totals: {totals}; conflicts: {conflicts}")
    return EXIT_PROBLEM if conflicts else EXIT_OK
