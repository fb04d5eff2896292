"""DLQ tooling without a broker: a dead letter exports as a fixable event, a fixed file is
validated line by line, and the ledger makes a second redrive publish nothing."""

from __future__ import annotations

import base64
import io
import json
import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from refstream.cli.dlq import dlq as dlq_group
from refstream.cli.main import main
from refstream.schemas.codec import MAGIC, Codec
from refstream.schemas.events import DeadLetter
from refstream.schemas.shop import ShopEvent, ShopOrder
from refstream.streams.dlq import (
    DlqEntry,
    FixedRecord,
    RedriveLedger,
    export_object,
    read_fixed,
    redrive,
)
from refstream.streams.exit_codes import EXIT_USAGE
from refstream.streams.ingest import SourceRef
from refstream.streams.settings import Settings

CODEC = Codec()
WHEN = datetime(2026, 10, 3, 12, 30, tzinfo=UTC)


def order(**changes: object) -> ShopOrder:
    fields: dict[str, object] = dict(event_id="e-81", shop_id="shop-001", occurred_at=WHEN,
                                     order_id="o-17", customer_id="cust-42", amount_minor=4599,
                                     currency="EUR", ip="203.0.113.9")
    fields.update(changes)
    return ShopOrder.model_validate(fields)


def avro_order_with(**record_changes: object) -> bytes:
    """Well-formed Avro of an order whose content ingest rejects."""
    record = CODEC.to_record(order())
    record.update(record_changes)
    newest = CODEC.newest("refstream.shop.Order")
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<Q", newest.fingerprint))
    fastavro.schemaless_writer(out, newest.parsed, record)
    return out.getvalue()


def entry(original: bytes, offset: int = 7) -> DlqEntry:
    letter = DeadLetter("shop.order", 2, offset, "amount_minor: Input should be greater than "
                        "or equal to 0", original, None, 1_791_000_000_000)
    return DlqEntry(0, offset, letter, b"shop-001")


def test_a_rejected_order_exports_as_its_json_lines_event_with_source_and_error() -> None:
    exported = export_object(entry(avro_order_with(amount_minor=-250)), CODEC)

    assert exported["source"] == {"topic": "shop.order", "partition": 2, "offset": 7}
    assert exported["shop_id"] == "shop-001"
    assert "amount_minor" in exported["error"]
    assert exported["event"] == {
        "event_type": "order", "event_id": "e-81", "shop_id": "shop-001",
        "occurred_at": "2026-10-03T12:30:00.000Z", "order_id": "o-17",
        "customer_id": "cust-42", "amount_minor": -250, "currency": "EUR",
        "ip": "203.0.113.9"}
    assert "original_base64" not in exported


def test_unreadable_bytes_export_as_base64_with_the_reason() -> None:
    corrupt = avro_order_with()[:-5]
    exported = export_object(entry(corrupt), CODEC)

    assert exported["event"] is None
    assert base64.b64decode(exported["original_base64"]) == corrupt
    assert "corrupt refstream.shop.Order body" in exported["undecodable"]


def write_lines(path: Path, objects: Iterable[object]) -> Path:
    path.write_text("".join(
        (o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objects))
    return path


def test_fixed_file_is_validated_line_by_line_with_file_and_line(tmp_path: Path) -> None:
    good = export_object(entry(avro_order_with(amount_minor=-250), offset=1), CODEC)
    good["event"]["amount_minor"] = 250
    still_bad = export_object(entry(avro_order_with(amount_minor=-1), offset=2), CODEC)
    undecoded = export_object(entry(b"\x00garbage", offset=3), CODEC)
    path = write_lines(tmp_path / "fixed.jsonl", [
        good, "{not json", {"event": good["event"]}, good, still_bad, undecoded])

    records, problems = read_fixed(path)

    assert [(r.line, r.source, r.event.amount_minor) for r in records  # type: ignore[attr-defined]
            ] == [(1, SourceRef("shop.order", 2, 1), 250)]
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6)]
    assert "not JSON" in problems[0]
    assert "needs \"source\"" in problems[1]
    assert "again (first on line 1)" in problems[2]
    assert "amount_minor" in problems[3] and "fix \"event\"" in problems[3]
    assert "no decoded \"event\"" in problems[4]


def test_a_second_redrive_publishes_nothing_even_from_a_new_ledger_handle(
        tmp_path: Path) -> None:
    published: list[ShopEvent] = []

    def publish(settings: Settings, events: Iterable[ShopEvent]) -> int:
        batch = list(events)
        published.extend(batch)
        return len(batch)

    records = [FixedRecord(1, SourceRef("shop.order", 2, 7), order(amount_minor=250)),
               FixedRecord(2, SourceRef("shop.order", 0, 3), order(event_id="e-82"))]
    settings = Settings(data_dir=tmp_path)
    for _ in range(2):
        ledger = RedriveLedger(tmp_path / "ledger.sqlite")
        try:
            result = redrive(settings, records, ledger, publish=publish)
        finally:
            ledger.close()

    assert [e.event_id for e in published] == ["e-81", "e-82"]
    assert result.published == [] and result.already_redriven == records


def test_dry_run_publishes_and_records_nothing(tmp_path: Path) -> None:
    def publish(settings: Settings, events: Iterable[ShopEvent]) -> int:
        raise AssertionError("a dry run must not publish")

    record = FixedRecord(1, SourceRef("shop.order", 2, 7), order())
    ledger = RedriveLedger(tmp_path / "ledger.sqlite")
    result = redrive(Settings(), [record], ledger, publish=publish, dry_run=True)

    assert result.published == [record]
    assert ledger.redriven() == set()
    ledger.close()


def test_dlq_subcommands_parse_their_options() -> None:
    def parse(*argv: str) -> dict[str, Any]:
        command = dlq_group.commands[argv[0]]
        return command.make_context(argv[0], list(argv[1:])).params

    listing = parse("list", "--shop", "shop-1", "--format", "json")
    export = parse("export", "--out", "x.jsonl")
    again = parse("redrive", "x.jsonl", "--dry-run")

    assert listing["shop"] == "shop-1" and listing["fmt"] == "json"
    assert export["include_redriven"] is False and export["timeout"] == 60.0
    assert again["dry_run"] is True and again["skip_invalid"] is False
    assert main(["dlq", "export"]) == EXIT_USAGE  # --out is required
