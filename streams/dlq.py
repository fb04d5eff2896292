"""Dead-letter tooling (`refstream dlq list|export|redrive`): read the DLQ, export it for fixing,
re-drive fixed records to their shop topics, once each, recorded in a local SQLite ledger.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from refstream.schemas.codec import Codec
from refstream.schemas.errors import EXIT_INPUT_REJECTED, EXIT_USAGE, DecodeError, RefstreamError
from refstream.schemas.events import DeadLetter
from refstream.schemas.jsonl import parse_line, read_lines
from refstream.schemas.shop import ShopEvent
from refstream.streams.exit_codes import EXIT_OK, EXIT_PROBLEM
from refstream.streams.ingest import SourceRef
from refstream.streams.schema_registry import reader_codec
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames

LEDGER_FILE = "dlq-redrive.sqlite"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHOP_RECORD_PREFIX = "refstream.shop."


class DlqError(RefstreamError):
    """The DLQ or a fixed file cannot be used as asked; the message says what to do."""

    exit_code: ClassVar[int] = EXIT_USAGE


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One dead letter as it sits on the DLQ topic."""

    dlq_partition: int
    dlq_offset: int
    letter: DeadLetter
    key: bytes | None = None

    @property
    def source(self) -> SourceRef:
        return SourceRef(self.letter.source_topic, self.letter.source_partition,
                         self.letter.source_offset)

    @property
    def shop_id(self) -> str | None:
        # Ingest forwards the rejected record's key; it is the shop id for any sane producer.
        if self.letter.shop_id:
            return self.letter.shop_id
        if self.key:
            return self.key.decode("utf-8", "replace")
        return None


@dataclass(frozen=True)
class DlqScan:
    """Everything on the DLQ, plus records there that are not dead letters at all."""

    topic: str
    entries: list[DlqEntry]
    unreadable: list[str]


def source_label(source: SourceRef) -> str:
    return f"{source.topic}[{source.partition}]@{source.offset}"


def read_dlq(settings: Settings, codec: Codec, timeout_s: float = 60.0) -> DlqScan:
    """Every record of the DLQ topic, from offset 0 to its current end (no consumer group)."""
    from kafka import KafkaConsumer, TopicPartition
    from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

    from refstream.streams.exit_codes import BrokerUnavailable

    topic = TopicNames.from_settings(settings).dlq
    # Every wait on the broker is bounded by the read's timeout: no answer is exit 4.
    bound_ms = int(min(timeout_s, settings.client_timeout_s) * 1000)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, max_partition_fetch_bytes=32 << 20,
                             fetch_max_bytes=64 << 20, bootstrap_timeout_ms=bound_ms,
                             request_timeout_ms=max(1000, min(30_000, bound_ms // 2)),
                             **settings.kafka_security())
    entries: list[DlqEntry] = []
    unreadable: list[str] = []
    try:
        deadline = time.monotonic() + timeout_s
        try:
            # Metadata of a topic seen for the first time can lag a moment.
            partitions = Retrying(stop=stop_after_delay(min(timeout_s, 5.0)),
                                  wait=wait_fixed(0.2), retry=retry_if_result(lambda p: not p),
                                  )(consumer.partitions_for_topic, topic)
        except RetryError:
            raise DlqError(f"topic {topic} does not exist on {settings.kafka_bootstrap}, or "
                           "this principal may not describe it; check REFSTREAM_KAFKA_BOOTSTRAP "
                           "and REFSTREAM_TOPIC_PREFIX, run `refstream topics create`, or see "
                           "`refstream acls show`") from None
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        pending = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        while pending:
            if time.monotonic() > deadline:
                behind = ", ".join(f"{tp.partition}: {consumer.position(tp)}/{ends[tp]}"
                                   for tp in sorted(pending, key=lambda t: t.partition))
                raise BrokerUnavailable(
                    f"reading {topic} took longer than {timeout_s:.0f}s (partition: "
                    f"position/end {behind}); check the broker, or retry with a larger "
                    "--timeout")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    try:
                        letter = codec.decode(record.value or b"")
                    except DecodeError as exc:
                        letter = exc
                    if isinstance(letter, DeadLetter):
                        entries.append(DlqEntry(record.partition, record.offset, letter,
                                                record.key))
                    else:
                        what = letter if isinstance(letter, DecodeError) else (
                            f"a {type(letter).__name__}, not a dead letter")
                        unreadable.append(f"{topic}[{record.partition}]@{record.offset}: {what}")
            pending = {tp for tp in pending if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close()
    entries.sort(key=lambda e: (e.dlq_partition, e.dlq_offset))
    return DlqScan(topic, entries, unreadable)


# ------------------------------------------------------------------------------ export


def iso_millis(epoch_ms: int) -> str:
    """2026-10-03T12:30:00.000Z, the JSON Lines form of a timestamp."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_form(original: bytes, codec: Codec) -> tuple[dict[str, Any] | None, str | None]:
    """The original record as a JSON Lines shop event, decoded as far as the bytes allow.

    (event, None) when the Avro decodes to a shop record, even one that fails validation:
    that is the record an operator fixes. (None, why) when the bytes cannot be read at all.
    """
    try:
        name, record = codec.decode_record(original)
    except DecodeError as exc:
        return None, str(exc)
    if not name.startswith(_SHOP_RECORD_PREFIX):
        return None, f"the original is a {name} record, not a shop event"
    form: dict[str, Any] = {}
    for field_name, value in record.items():
        if value is None:
            continue
        if isinstance(value, bytes):
            form[field_name] = base64.b64encode(value).decode("ascii")
        else:
            form[field_name] = value
    occurred_at = record.get("occurred_at")
    if isinstance(occurred_at, int):
        # Out of range stays epoch ms: the operator sees the impossible value and fixes it.
        with contextlib.suppress(OverflowError):
            form["occurred_at"] = iso_millis(occurred_at)
    return form, None


def export_object(entry: DlqEntry, codec: Codec) -> dict[str, Any]:
    """One line of `dlq export`: where the record came from, why it failed, and the record."""
    letter = entry.letter
    event, problem = event_form(letter.original, codec)
    exported: dict[str, Any] = {
        "source": {"topic": letter.source_topic, "partition": letter.source_partition,
                   "offset": letter.source_offset},
        "dlq": {"partition": entry.dlq_partition, "offset": entry.dlq_offset},
        "shop_id": entry.shop_id,
        "error": letter.error,
        "failed_at": iso_millis(letter.failed_at),
        "original_bytes": len(letter.original),
        "event": event,
    }
    if event is None:
        exported["undecodable"] = problem
        exported["original_base64"] = base64.b64encode(letter.original).decode("ascii")
    return exported


def write_export(entries: Iterable[DlqEntry], codec: Codec, out: Path) -> tuple[int, int]:
    """Write the JSON Lines export atomically; returns (lines written, lines without event)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    written = undecodable = 0
    with partial.open("w", encoding="utf-8") as stream:
        for entry in entries:
            exported = export_object(entry, codec)
            stream.write(json.dumps(exported, ensure_ascii=False, separators=(",", ":")))
            stream.write("\n")
            written += 1
            undecodable += exported["event"] is None
    partial.replace(out)
    return written, undecodable


# ------------------------------------------------------------------------------ redrive


@dataclass(frozen=True)
class FixedRecord:
    """A line of a fixed export: the dead letter it replaces and the corrected event."""

    line: int
    source: SourceRef
    event: ShopEvent


def _source_of(value: Any) -> SourceRef | None:
    if not isinstance(value, dict):
        return None
    topic, partition, offset = value.get("topic"), value.get("partition"), value.get("offset")
    if not isinstance(topic, str) or not topic:
        return None
    if type(partition) is not int or type(offset) is not int:
        return None
    return SourceRef(topic, partition, offset)


def read_fixed(path: Path) -> tuple[list[FixedRecord], list[str]]:
    """The valid lines of a fixed export, and a `file:line: problem` for every other line."""
    if not path.is_file():
        raise DlqError(f"no file at {path}; create it with `refstream dlq export --out {path}` "
                       "and fix the `event` of each line")
    records: list[FixedRecord] = []
    problems: list[str] = []
    first_line: dict[SourceRef, int] = {}
    with path.open(encoding="utf-8") as stream:
        for number, line in read_lines(stream):
            where = f"{path}:{number}"
            try:
                exported = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
                continue
            source = _source_of(exported.get("source")) if isinstance(exported, dict) else None
            if source is None:
                problems.append(f"{where}: needs \"source\": {{\"topic\", \"partition\", "
                                "\"offset\"}} of the dead letter, as `dlq export` wrote it")
                continue
            label = source_label(source)
            if source in first_line:
                problems.append(f"{where}: dead letter {label} again (first on line "
                                f"{first_line[source]}); keep one line per dead letter")
                continue
            first_line[source] = number
            event = exported.get("event")
            if not isinstance(event, dict):
                problems.append(f"{where}: dead letter {label} has no decoded \"event\" (its "
                                "bytes were unreadable); write the corrected event as a JSON "
                                "object into \"event\", or delete the line")
                continue
            try:
                fixed = parse_line(json.dumps(event))
            except ValueError as exc:
                problems.append(f"{where}: dead letter {label}: {exc}; fix \"event\" and run "
                                "redrive again")
                continue
            records.append(FixedRecord(number, source, fixed))
    return records, problems


class RedriveLedger:
    """Which dead letters were re-driven (by source topic/partition/offset), in SQLite."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS redriven ("
            " source_topic TEXT NOT NULL, source_partition INTEGER NOT NULL,"
            " source_offset INTEGER NOT NULL, event_id TEXT NOT NULL, shop_id TEXT NOT NULL,"
            " target_topic TEXT NOT NULL, redriven_at REAL NOT NULL,"
            " PRIMARY KEY (source_topic, source_partition, source_offset))"
        )

    def redriven(self) -> set[SourceRef]:
        return {SourceRef(t, p, o) for t, p, o in self._db.execute(
            "SELECT source_topic, source_partition, source_offset FROM redriven")}

    def record(self, done: Sequence[tuple[SourceRef, ShopEvent, str]]) -> None:
        """Record re-driven dead letters, all in one transaction."""
        now = time.time()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO redriven VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(s.topic, s.partition, s.offset, e.event_id, e.shop_id, target, now)
                 for s, e, target in done])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()


Publisher = Callable[[Settings, Iterable[ShopEvent]], int]


def _publish_with_produce_path(settings: Settings, events: Iterable[ShopEvent]) -> int:
    # The same producer as `refstream produce`: Avro single-object, shop topic, shop-id key.
    from refstream.streams.producer import publish_shop_events

    return publish_shop_events(settings, events)


@dataclass(frozen=True)
class RedriveResult:
    published: list[FixedRecord]
    already_redriven: list[FixedRecord]


def redrive(settings: Settings, records: Sequence[FixedRecord], ledger: RedriveLedger, *,
            publish: Publisher = _publish_with_produce_path,
            dry_run: bool = False) -> RedriveResult:
    """Publish the records not yet in the ledger, then record them there.

    At least once: a crash between the broker's acknowledgement and the ledger commit
    republishes on the next run, and ingest then drops the repeat by its event id.
    """
    done = ledger.redriven()
    todo = [r for r in records if r.source not in done]
    already = [r for r in records if r.source in done]
    if todo and not dry_run:
        publish(settings, [r.event for r in todo])
        names = TopicNames.from_settings(settings)
        ledger.record([(r.source, r.event, names.shop(r.event.event_type)) for r in todo])
    return RedriveResult(todo, already)


# ------------------------------------------------------------------------------ CLI


def _ledger_path(ledger: Path | None, settings: Settings) -> Path:
    return ledger if ledger is not None else settings.data_dir / LEDGER_FILE


def _selected(scan: DlqScan, shop: str | None, redriven: set[SourceRef], *,
              include_redriven: bool = True) -> list[DlqEntry]:
    entries = scan.entries
    if shop:
        entries = [e for e in entries if e.shop_id == shop]
    if not include_redriven:
        entries = [e for e in entries if e.source not in redriven]
    return entries


def _warn_unreadable(scan: DlqScan) -> None:
    for problem in scan.unreadable:
        print(f"warning: not a dead letter, left out: {problem}", file=sys.stderr)


def _known_redriven(path: Path) -> set[SourceRef]:
    if not path.exists():
        return set()
    ledger = RedriveLedger(path)
    try:
        return ledger.redriven()
    finally:
        ledger.close()


def _scan_selected(settings: Settings, codec: Codec, *, shop: str | None, timeout_s: float,
                   ledger: Path | None, include_redriven: bool = True
                   ) -> tuple[DlqScan, set[SourceRef], list[DlqEntry]]:
    """The DLQ as read now, which entries were re-driven, and those the arguments select."""
    scan = read_dlq(settings, codec, timeout_s)
    _warn_unreadable(scan)
    redriven = _known_redriven(_ledger_path(ledger, settings))
    return scan, redriven, _selected(scan, shop, redriven, include_redriven=include_redriven)


DEAD_LETTER_COLUMNS: tuple[str, ...] = ("dlq", "source_topic", "partition", "offset", "shop",
                                         "failed_at", "bytes", "redriven", "error")


def dead_letter_rows(settings: Settings, *, shop: str | None, timeout_s: float,
                     ledger: Path | None, clip: int | None
                     ) -> tuple[list[tuple[object, ...]], str]:
    """One row per dead letter (columns `DEAD_LETTER_COLUMNS`: source, shop, size, error
    clipped to `clip` characters, whether re-driven) and a summary line for people."""
    codec = reader_codec(settings)  # registry-framed originals decode too
    scan, redriven, entries = _scan_selected(settings, codec, shop=shop, timeout_s=timeout_s,
                                             ledger=ledger)
    rows: list[tuple[object, ...]] = [
        (f"{e.dlq_partition}@{e.dlq_offset}", e.letter.source_topic, e.letter.source_partition,
         e.letter.source_offset, e.shop_id or "", iso_millis(e.letter.failed_at),
         len(e.letter.original), "yes" if e.source in redriven else "",
         _clip(e.letter.error, clip))
        for e in entries
    ]
    done = sum(1 for e in entries if e.source in redriven)
    summary = (f"{len(entries)} dead letters on {scan.topic}"
               + (f" for shop {shop}" if shop else "") + f", {done} of them re-driven")
    return rows, summary


def _clip(text: str, width: int | None) -> str:
    single = " ".join(text.split())
    if width is None or len(single) <= width:
        return single
    return single[: width - 3] + "..."


def export_dead_letters(settings: Settings, out: Path, *, shop: str | None, timeout_s: float,
                        ledger: Path | None, include_redriven: bool) -> int:
    """Write the dead letters as JSON Lines for fixing."""
    codec = reader_codec(settings)  # registry-framed originals decode too
    scan, _, entries = _scan_selected(settings, codec, shop=shop, timeout_s=timeout_s,
                                      ledger=ledger, include_redriven=include_redriven)
    written, undecodable = write_export(entries, codec, out)
    skipped = len(scan.entries) - len(entries)
    print(f"exported {written} dead letters from {scan.topic} to {out}"
          + (f" ({skipped} left out: re-driven already or other shops)" if skipped else ""))
    if undecodable:
        print(f"{undecodable} of them could not be decoded: their \"event\" is null and "
              "\"original_base64\" holds the bytes; write the corrected event into \"event\" "
              "or delete those lines")
    if written:
        print(f"fix each line's \"event\", then: refstream dlq redrive {out}")
    return EXIT_OK


class InvalidFixes(DlqError):
    """A fixed file with invalid lines: nothing was published."""

    exit_code: ClassVar[int] = EXIT_INPUT_REJECTED


def redrive_file(settings: Settings, path: Path, *, ledger: Path | None, skip_invalid: bool,
                 dry_run: bool) -> int:
    """Publish the fixed events of a `dlq export` file, once per dead letter; exit 1 when
    invalid lines were skipped, 3 (nothing published) when they were not."""
    records, problems = read_fixed(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and not skip_invalid:
        raise InvalidFixes(f"{len(problems)} invalid line(s) in {path}, nothing published; "
                           "fix them, or pass --skip-invalid to re-drive only the valid ones")
    ledger_path = _ledger_path(ledger, settings)
    redrive_ledger = RedriveLedger(ledger_path)
    try:
        result = redrive(settings, records, redrive_ledger, dry_run=dry_run)
    finally:
        redrive_ledger.close()
    names = TopicNames.from_settings(settings)
    verb = "would re-drive" if dry_run else "re-drove"
    for record in result.published:
        print(f"{verb} {source_label(record.source)} as {record.event.event_type} "
              f"{record.event.event_id} -> {names.shop(record.event.event_type)}")
    print(f"{verb} {len(result.published)} dead letters to {settings.kafka_bootstrap}; "
          f"{len(result.already_redriven)} were re-driven before (ledger {ledger_path})"
          + (f"; {len(problems)} invalid line(s) skipped" if problems else ""))
    return EXIT_PROBLEM if problems else EXIT_OK
