"""Right to erasure: make one person of one shop unrecoverable, keep every total.

The log names the person only by their vault token (REFSTREAM_PERSON_VAULT). Erasure
rewrites the person's identifier values in the Parquet archive to one-time keyed hashes,
consistently, so every equality the core relies on survives a replay; then it deletes the
vault row, after which the token links to no customer id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refstream.persistence.archive import (
    ARCHIVE_SCHEMA,
    EVENT_FIELDS,
    ArchiveReader,
    commit_markers,
    segment_shop,
    write_segment,
)
from refstream.persistence.vault import PersonNotFound, PersonVault
from refstream.schemas.codec import Codec
from refstream.schemas.errors import EXIT_USAGE, RefstreamError
from refstream.schemas.events import LOG_EVENT_TYPES, LogEvent
from refstream.streams.settings import Settings

# Columns that name the person: their events are those whose value here is their token.
PERSON_COLUMNS = ("customer_id", "referrer_id")
# Identifier values seen on the person's events (and on clicks of their visitor ids). Not
# the user agent: a browser's version string is shared by a crowd and names nobody, and
# rewriting it for everyone would only blur the click data (one browser string can also
# contain another, which no whole-value rewrite can untangle).
IDENTIFIER_COLUMNS = ("email_hash", "ip_hash", "device_id", "payment_hash", "shipping_hash",
                      "visitor_id")
# The person's own referral codes (often built from the customer id, like "R-cust-000042")
# and wherever they were typed or linked.
CODE_COLUMNS = ("referral_code", "discount_code")
URL_COLUMNS = ("landing_url",)
REWRITTEN_COLUMNS = PERSON_COLUMNS + IDENTIFIER_COLUMNS + CODE_COLUMNS + URL_COLUMNS
STRING_COLUMNS = tuple(f.name for f in ARCHIVE_SCHEMA
                       if pa.types.is_string(f.type) and f.name != "event_type")
# Columns whose every value is one whole identifier (as opposed to free text).
_WHOLE_VALUE_COLUMNS = frozenset(PERSON_COLUMNS + IDENTIFIER_COLUMNS + CODE_COLUMNS)
ERASED_PREFIX = "erased:"
# Characters that may surround a value inside a URL (path segment, query key or value).
_URL_DELIMITERS = "/?&=#;"


class ErasureError(RefstreamError):
    """Erasure could not be completed; nothing in the archive was changed."""

    exit_code: ClassVar[int] = EXIT_USAGE


@dataclass
class ErasureReceipt:
    """What was done, without any personal data: written as the JSON receipt."""

    erasure_id: str
    shop_id: str
    erased_at: str
    archive: str | None
    archive_end_offsets: dict[int, int] = field(default_factory=dict)
    person_records: int = 0
    files_rewritten: int = 0
    records_rewritten: int = 0
    distinct_values_replaced: dict[str, int] = field(default_factory=dict)
    occurrences_replaced: dict[str, int] = field(default_factory=dict)
    vault_entry_deleted: bool = False
    topic_truncated_below: dict[int, int] | None = None
    other_topics_records_deleted: dict[str, int] | None = None
    checkpoints_rebuilt: dict[str, dict[int, int]] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        from dataclasses import asdict

        return json.dumps(asdict(self), indent=2, sort_keys=True)


@dataclass
class _PersonalValues:
    """The person's values, per column where they were found; never leaves this module."""

    by_column: dict[str, set[str]] = field(default_factory=dict)
    person_records: int = 0

    def add(self, column: str, values: Iterable[Any]) -> None:
        found = self.by_column.setdefault(column, set())
        found.update(v for v in values if isinstance(v, str) and v)

    def all_values(self) -> set[str]:
        return set().union(*self.by_column.values()) if self.by_column else set()


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    # ParquetFile, not read_table: a single file inside shop_id=…/date=… folders must not
    # grow hive partition columns.
    return pq.ParquetFile(path).read(columns=columns)


def _committed_files(root: Path, shop_id: str) -> tuple[list[Path], list[Path]]:
    """(the shop's committed files, the committed passed-over files)."""
    shop_files: list[Path] = []
    passed_over: list[Path] = []
    for marker in commit_markers(root):
        for name in marker["files"]:
            owner = segment_shop(name)
            if owner == shop_id:
                shop_files.append(root / name)
            elif owner is None:
                passed_over.append(root / name)
    return shop_files, passed_over


def _collect(files: list[Path], person_ids: set[str]) -> _PersonalValues:
    """The identifier values of the person's events, then of clicks by their visitor ids."""
    values = _PersonalValues()
    ids = pa.array(sorted(person_ids), pa.string())
    wanted = ["event_type", *PERSON_COLUMNS, *IDENTIFIER_COLUMNS, "referral_code"]
    for path in files:
        table = _read(path, wanted)
        mine = pc.or_kleene(pc.is_in(table["customer_id"], ids),
                            pc.is_in(table["referrer_id"], ids))
        mine = pc.fill_null(mine, False)
        rows = table.filter(mine)
        if rows.num_rows == 0:
            continue
        values.person_records += rows.num_rows
        for column in IDENTIFIER_COLUMNS:
            values.add(column, rows[column].to_pylist())
        shares = rows.filter(pc.is_in(rows["event_type"], pa.array(["share", "code_issued"])))
        values.add("referral_code", shares["referral_code"].to_pylist())
    visitors = pa.array(sorted(values.by_column.get("visitor_id", ())), pa.string())
    if len(visitors):
        for path in files:
            table = _read(path, ["event_type", "visitor_id", "ip_hash", "device_id"])
            clicks = table.filter(pc.fill_null(pc.and_kleene(
                pc.equal(table["event_type"], "click"),
                pc.is_in(table["visitor_id"], visitors)), False))
            for column in ("ip_hash", "device_id"):
                values.add(column, clicks[column].to_pylist())
    return values


class _Rewriter:
    """Replaces each personal value by one one-time keyed hash, the same everywhere."""

    def __init__(self, values: set[str], person_ids: dict[str, str]) -> None:
        nonce = os.urandom(32)  # never stored: nobody can recompute the replacements
        self.replacement = {
            value: ERASED_PREFIX + hmac.new(nonce, value.encode(), hashlib.sha256).hexdigest()[:32]
            for value in values}
        del nonce
        # Raw customer ids (from history ingested before the vault) become the token.
        self.person_ids = person_ids
        self.occurrences: Counter[str] = Counter()
        self.distinct: dict[str, set[str]] = {}
        if self.replacement:
            alternatives = "|".join(re.escape(v) for v in sorted(self.replacement, key=len,
                                                                   reverse=True))
            delim = re.escape(_URL_DELIMITERS)
            self._in_url: re.Pattern[str] | None = re.compile(
                rf"(?<![^{delim}])(?:{alternatives})(?![^{delim}])")
        else:
            self._in_url = None
        self._matchable = pa.array(sorted(set(self.replacement) | set(person_ids)), pa.string())

    def touches(self, table: pa.Table) -> bool:
        for column in (*PERSON_COLUMNS, *IDENTIFIER_COLUMNS, *CODE_COLUMNS):
            if pc.any(pc.is_in(table[column], self._matchable)).as_py():
                return True
        if self._in_url is not None:
            pattern = self._in_url
            return any(isinstance(url, str) and pattern.search(url)
                       for url in table["landing_url"].to_pylist())
        return False

    def _swap(self, column: str, value: str) -> str:
        self.occurrences[column] += 1
        self.distinct.setdefault(column, set()).add(value)
        return self.replacement[value]

    def _url_swapper(self, column: str) -> Callable[[re.Match[str]], str]:
        return lambda match: self._swap(column, match.group(0))

    def rewrite_row(self, row: dict[str, Any]) -> bool:
        changed = False
        for column in PERSON_COLUMNS:
            value = row[column]
            if value in self.person_ids:
                row[column] = self.person_ids[value]
                self.occurrences[column] += 1
                self.distinct.setdefault(column, set()).add(value)
                changed = True
        for column in IDENTIFIER_COLUMNS + CODE_COLUMNS:
            value = row[column]
            if value in self.replacement:
                row[column] = self._swap(column, value)
                changed = True
        for column in URL_COLUMNS:
            url = row[column]
            if isinstance(url, str) and self._in_url is not None:
                new_url = self._in_url.sub(self._url_swapper(column), url)
                if new_url != url:
                    row[column] = new_url
                    changed = True
        return changed


def _event_of(row: dict[str, Any]) -> LogEvent:
    event_type = row["event_type"]
    cls = LOG_EVENT_TYPES[event_type]
    return cls(**{name: row[name] for name in EVENT_FIELDS[event_type]})


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.erasure.tmp")


def _rewrite_file(path: Path, rewriter: _Rewriter, codec: Codec) -> int:
    """Write the rewritten copy of one file to its staging name; returns rows changed."""
    table = _read(path).select(ARCHIVE_SCHEMA.names)
    if not rewriter.touches(table):
        return 0
    rows = table.to_pylist()
    changed = 0
    for row in rows:
        if row["event_type"] in LOG_EVENT_TYPES and rewriter.rewrite_row(row):
            # The payload is re-encoded from the rewritten event: no original byte remains.
            row["payload"] = codec.encode(_event_of(row))
            changed += 1
    if changed:
        write_segment(pa.Table.from_pylist(rows, schema=ARCHIVE_SCHEMA), _staging(path))
    return changed


def _leaks(path: Path, forbidden: set[str], codec: Codec) -> list[str]:
    """Where (column names, never values) a forbidden value is still found.

    Columns that hold whole identifiers are checked for equal values: a device id that
    merely starts with the person's is someone else's. Free text (URLs, notes) is searched
    for the value as a whole word: "R-cust-1" inside "R-cust-12" is someone else's code.
    """
    table = _read(path).select(ARCHIVE_SCHEMA.names)
    alternatives = "|".join(re.escape(v) for v in sorted(forbidden, key=len, reverse=True))
    pattern = rf"(^|[^A-Za-z0-9])(?:{alternatives})([^A-Za-z0-9]|$)"
    exact = pa.array(sorted(forbidden), pa.string())
    found = [column for column in STRING_COLUMNS
             if pc.any(pc.fill_null(
                 pc.is_in(table[column], exact) if column in _WHOLE_VALUE_COLUMNS
                 else pc.match_substring_regex(table[column], pattern), False)).as_py()]
    # Payload bytes: a cheap byte search first, then the decoded event's strings.
    in_bytes = re.compile(b"|".join(re.escape(v.encode()) for v in forbidden))
    in_text = re.compile(pattern)

    def leaks(name: str, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return value in forbidden if name in _WHOLE_VALUE_COLUMNS else bool(
            in_text.search(value))

    for payload in table["payload"].to_pylist():
        if not in_bytes.search(payload):
            continue
        event = codec.decode_log_event(payload)
        if event is None or any(leaks(name, getattr(event, name))
                                for name in EVENT_FIELDS[event.event_type]):
            found.append("payload")
            break
    return found


def rewrite_archive(root: Path, shop_id: str, customer_id: str, token: str, *,
                    receipt: ErasureReceipt, codec: Codec | None = None) -> None:
    """Rewrite the person's values in every committed file of the shop, all or nothing."""
    codec = codec or Codec()
    reader = ArchiveReader(root)  # refuses an archive with gaps before anything is touched
    receipt.archive_end_offsets = reader.next_offsets()
    shop_files, passed_over = _committed_files(root, shop_id)
    person_ids = {token, customer_id}
    values = _collect(shop_files, person_ids)
    receipt.person_records = values.person_records
    personal = values.all_values()
    rewriter = _Rewriter(personal, {customer_id: token})
    staged: list[Path] = []
    try:
        for path in shop_files:
            changed = _rewrite_file(path, rewriter, codec)
            if changed:
                staged.append(path)
                receipt.records_rewritten += changed
        forbidden = personal | {customer_id}
        leaks: list[str] = []
        for path in shop_files + passed_over:
            checked = _staging(path) if path in staged else path
            leaks += [f"{path.relative_to(root)}:{column}"
                      for column in _leaks(checked, forbidden, codec)]
        if leaks:
            raise ErasureError(
                f"the person's data would remain in {len(leaks)} place(s) after the rewrite "
                f"({', '.join(leaks[:10])}); nothing was changed. These columns are not "
                "rewritten by erasure: remove the value by hand or extend tools/erasure.py")
    except BaseException:
        for path in staged:
            _staging(path).unlink(missing_ok=True)
        raise
    for path in staged:
        os.replace(_staging(path), path)
    receipt.files_rewritten = len(staged)
    receipt.distinct_values_replaced = {c: len(v) for c, v in sorted(rewriter.distinct.items())}
    receipt.occurrences_replaced = dict(sorted(rewriter.occurrences.items()))


def check_checkpoints_behind_archive(store_path: Path, archive: Path, shop_id: str,
                                     settings: Settings) -> None:
    """Refuse (before anything changes) a checkpoint ahead of the archive: rebuilding it
    from the archive would move it back, and its outputs would be re-derived differently."""
    from refstream.persistence.checkpoint import CheckpointStore
    from refstream.streams.topics import TopicNames

    if not store_path.is_file():
        raise ErasureError(f"no checkpoint store at {store_path} (REFSTREAM_DATA_DIR/"
                           "checkpoints.sqlite of a worker)")
    reader = ArchiveReader(archive)
    ends = reader.next_offsets()
    log_topic = TopicNames.from_settings(settings).log
    store = CheckpointStore(store_path)
    try:
        for partition in sorted(reader.shop_partitions().get(shop_id, set())):
            current = store.load(log_topic, partition)
            # Its outputs are acknowledged up to resume_offset: the rebuilt one must reach it.
            if current is not None and current.resume_offset > ends[partition]:
                raise ErasureError(
                    f"{store_path}: the checkpoint of {log_topic}[{partition}] is at offset "
                    f"{current.resume_offset}, the archive ends at {ends[partition]}: bring the "
                    "archive up to date (refstream archive) with the workers stopped, then "
                    "erase again; nothing was changed")
    finally:
        store.close()


def rebuild_checkpoints(store_path: Path, archive: Path, shop_id: str, rules: Any,
                        settings: Settings) -> dict[int, int]:
    """Replace the checkpoints of the shop's log partitions with the core folded over the
    rewritten archive (so no state keeps the person's values); returns partition -> offset.

    The worker that owns the store must be stopped. A checkpoint ahead of the archive
    would be moved back and its outputs re-derived differently: refused, archive first."""
    from refstream.persistence.checkpoint import Checkpoint, CheckpointStore
    from refstream.projections.pipeline import Pipeline
    from refstream.streams.topics import TopicNames

    check_checkpoints_behind_archive(store_path, archive, shop_id, settings)
    reader = ArchiveReader(archive)
    partitions = sorted(reader.shop_partitions().get(shop_id, set()))
    ends = reader.next_offsets()
    log_topic = TopicNames.from_settings(settings).log
    store = CheckpointStore(store_path)
    try:
        rebuilt: list[Checkpoint] = []
        for partition in partitions:
            pipeline = Pipeline(rules)
            for event in reader.iter_events(partition):
                pipeline.apply(event)
            rebuilt.append(Checkpoint(log_topic, partition, ends[partition], rules.version,
                                      pipeline.snapshot()))
        store.replace(rebuilt)
    finally:
        store.close()
    return {cp.partition: cp.next_offset for cp in rebuilt}


def truncate_derived_and_shop_topics(settings: Settings) -> dict[str, int]:
    """Delete the records of the topics that repeat the person's values in clear: the
    derived topics that carry referral codes and entity keys (attributions, fraud-flags;
    the replay of the rewritten archive re-derives what the projections need), and the
    shop topics below what ingest has consumed (the raw events, customer ids in clear).
    reward-due and rewards carry only tokens, unlinkable once the vault entry is gone, and
    stay for finance. Returns topic -> records deleted."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    from refstream.streams.topics import TopicNames, stage_group

    names = TopicNames.from_settings(settings)
    bound_ms = int(settings.client_timeout_s * 1000)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             group_id=stage_group(settings.app_id, "ingest"),
                             enable_auto_commit=False,
                             request_timeout_ms=max(1000, min(30_000, bound_ms // 2)),
                             **settings.kafka_security())
    derived = (names.attributions, names.fraud_flags)
    targets: dict[TopicPartition, int] = {}
    deleted = dict.fromkeys((*derived, *names.shop_topics), 0)
    try:
        for topic in deleted:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ends = consumer.end_offsets(tps)
            starts = consumer.beginning_offsets(tps)
            for tp in tps:
                # Shop topics: only what ingest has consumed (its group's committed offset).
                below = ends[tp] if topic in derived else min(ends[tp], consumer.committed(tp)
                                                                or 0)
                if below > starts[tp]:
                    targets[tp] = below
                    deleted[topic] += below - starts[tp]
    finally:
        consumer.close()
    if targets:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                                 client_id="refstream-erase", **settings.kafka_security())
        try:
            admin.delete_records(targets)
        finally:
            admin.close()
    return dict(sorted(deleted.items()))


def truncate_log_topic(settings: Settings, end_offsets: dict[int, int]) -> dict[int, int]:
    """Delete the log topic's records below the archive's committed end, per partition."""
    from kafka import KafkaAdminClient, TopicPartition

    from refstream.streams.topics import TopicNames

    topic = TopicNames.from_settings(settings).log
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap,
                             client_id="refstream-erase", **settings.kafka_security())
    try:
        admin.delete_records({TopicPartition(topic, partition): offset
                              for partition, offset in end_offsets.items() if offset > 0})
    finally:
        admin.close()
    return dict(sorted(end_offsets.items()))


def erase_person(shop_id: str, customer_id: str, vault_path: Path, archive: Path | None, *,
                 settings: Settings | None = None, truncate_topic: bool = False,
                 checkpoints: list[Path] | None = None, rules: Any = None
                 ) -> ErasureReceipt:
    """The whole erasure: archive rewrite, checkpoints rebuilt from it, vault shredding,
    optional topic truncation (the log below the archive's end, the derived topics that
    carry codes, the consumed shop topics)."""
    receipt = ErasureReceipt(erasure_id=str(uuid.uuid4()), shop_id=shop_id,
                             erased_at=datetime.now(UTC).isoformat(timespec="seconds"),
                             archive=str(archive) if archive is not None else None)
    if not vault_path.is_file():
        raise ErasureError(f"no person vault at {vault_path}; pass --vault or set "
                           "REFSTREAM_PERSON_VAULT to the file the workers use")
    with PersonVault(vault_path) as vault:
        token = vault.lookup(shop_id, customer_id)
        if token is None:
            raise PersonNotFound(
                f"customer {customer_id!r} of shop {shop_id!r} is not in the vault "
                f"{vault_path}: never ingested with this vault, or already erased")
        if checkpoints and archive is None:
            raise ErasureError("--checkpoints needs --archive: checkpoints are rebuilt from "
                               "the rewritten archive")
        for store in checkpoints or []:
            assert archive is not None
            check_checkpoints_behind_archive(store, archive, shop_id, settings or Settings())
        if archive is not None:
            rewrite_archive(archive, shop_id, customer_id, token, receipt=receipt)
        for store in checkpoints or []:
            assert archive is not None
            receipt.checkpoints_rebuilt[str(store)] = rebuild_checkpoints(
                store, archive, shop_id, rules, settings or Settings())
        vault.erase(shop_id, customer_id)
        receipt.vault_entry_deleted = True
    if truncate_topic:
        if archive is None:
            raise ErasureError("--truncate-topic needs --archive: only records the archive "
                               "holds may be deleted from the log topic")
        receipt.topic_truncated_below = truncate_log_topic(settings or Settings(),
                                                           receipt.archive_end_offsets)
        receipt.other_topics_records_deleted = truncate_derived_and_shop_topics(
            settings or Settings())
    receipt.next_steps = [
        "rebuild the projections from the rewritten archive: refstream replay --archive "
        f"{archive or 'DIR'} --db NEW.duckdb, then publish NEW.duckdb in place of the old one",
        "delete or let expire every copy made before this erasure: older DuckDB files and "
        "snapshots, archive and vault backups",
    ]
    if not truncate_topic:
        receipt.next_steps.append(
            "the log topic still holds the original records: truncate it below the archive "
            "end (--truncate-topic) or wait for its retention")
    return receipt


# ---------------------------------------------------------------------------- CLI


def erase(settings: Settings, rules: Any, *, shop: str, customer: str,
          vault: Path | None, archive: Path | None, receipt_path: Path | None,
          truncate_topic: bool, checkpoints: list[Path]) -> int:
    """Erase one customer of one shop and print the receipt (JSON, no personal data)."""
    vault_path = vault if vault is not None else settings.person_vault
    if vault_path is None:
        raise ErasureError("no person vault: pass --vault PATH or set REFSTREAM_PERSON_VAULT")
    if archive is None:
        print("warning: no --archive: only the vault entry is deleted; the archived log "
              "keeps the person's keyed hashes", file=sys.stderr)
    receipt = erase_person(shop, customer, vault_path, archive, settings=settings,
                           truncate_topic=truncate_topic, checkpoints=checkpoints, rules=rules)
    text = receipt.as_json()
    if receipt_path is not None:
        receipt_path.write_text(text + "\n", encoding="utf-8")
    print(text)
    if archive is not None and receipt.person_records == 0:
        print("warning: the archive holds no record of this person; is it up to date "
              "(refstream archive)?", file=sys.stderr)
    return 0


def resolve_token(settings: Settings, *, shop: str, token: str, vault: Path | None) -> int:
    """Print the shop's customer id behind a vault token."""
    vault_path = vault if vault is not None else settings.person_vault
    if vault_path is None or not vault_path.is_file():
        raise ErasureError("no person vault: pass --vault PATH or set REFSTREAM_PERSON_VAULT")
    with PersonVault(vault_path) as opened:
        print(opened.resolve(shop, token))
    return 0
