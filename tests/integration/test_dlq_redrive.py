"""Re-driving a fixed dead letter on the real broker: it reaches the canonical log exactly
once however often redrive runs, and the DLQ keeps the original dead letter untouched."""

from __future__ import annotations

import io
import json
import re
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest
from kafka import KafkaProducer

from refstream.cli.main import main
from refstream.schemas.codec import MAGIC, Codec
from refstream.schemas.events import DeadLetter
from refstream.schemas.shop import ShopOrder
from refstream.streams.dlq import DlqError, read_dlq
from refstream.streams.topics import TopicNames, ensure_topics
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_topic,
    settings_env,
    wait_for,
)

pytestmark = pytest.mark.integration
CODEC = Codec()
EVENT_ID = "shop-1-order-negative"


def negative_amount_order() -> bytes:
    """Well-formed Avro of an order with amount_minor -250: ingest must dead-letter it."""
    valid = ShopOrder(event_id=EVENT_ID, shop_id="shop-1",
                      occurred_at=datetime(2026, 10, 5, 9, 0, tzinfo=UTC), order_id="o-1",
                      customer_id="c-1", amount_minor=250, currency="EUR", ip="203.0.113.7")
    record = CODEC.to_record(valid)
    record["amount_minor"] = -250
    newest = CODEC.newest("refstream.shop.Order")
    out = io.BytesIO()
    out.write(MAGIC + struct.pack("<Q", newest.fingerprint))
    fastavro.schemaless_writer(out, newest.parsed, record)
    return out.getvalue()


def refstream_dlq(*argv: str) -> int:
    """Run `refstream dlq ...` in-process, exactly as the CLI parses it."""
    return main(["dlq", *argv])


def counter(metrics_text: str, name: str, topic: str) -> float:
    match = re.search(rf'^{name}{{topic="{re.escape(topic)}"}} (\S+)$', metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def test_fixed_dead_letter_redriven_twice_reaches_the_log_once(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)  # the in-process CLI reads the same settings
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    bad = negative_amount_order()
    sent = producer.send(names.shop("order"), key=b"shop-1", value=bad).get(timeout=30)
    producer.close()

    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    try:
        read_topic(kafka_bootstrap, names.dlq, expect=1)

        exported = tmp_path / "dlq.jsonl"
        assert refstream_dlq("export", "--out", str(exported)) == 0
        lines = [json.loads(line) for line in exported.read_text().splitlines()]
        assert len(lines) == 1
        letter: dict[str, Any] = lines[0]
        assert letter["source"] == {"topic": names.shop("order"), "partition": sent.partition,
                                    "offset": sent.offset}
        assert "amount_minor" in letter["error"]
        assert letter["event"]["amount_minor"] == -250

        letter["event"]["amount_minor"] = 250
        fixed = tmp_path / "fixed.jsonl"
        fixed.write_text(json.dumps(letter) + "\n")
        capsys.readouterr()
        assert refstream_dlq("redrive", str(fixed)) == 0
        first = capsys.readouterr().out
        assert refstream_dlq("redrive", str(fixed)) == 0
        second = capsys.readouterr().out
        assert "re-drove 1 dead letters" in first
        assert "re-drove 0 dead letters" in second and "1 were re-driven before" in second

        # The shop topic holds the bad original and one fixed copy: the second run sent nothing.
        shop_records = read_topic(kafka_bootstrap, names.shop("order"), expect=2, settle=1.0)
        assert len(shop_records) == 2
        # Once ingest has consumed both, the log holds the fixed event exactly once.
        wait_for(lambda: counter(worker.metrics(), "refstream_events_in_total",
                                 names.shop("order")) >= 2, 60, "ingest to read both records")
        log_records = read_topic(kafka_bootstrap, names.log, expect=1, settle=1.0)
        on_log = [e for e in (CODEC.decode(r.value) for r in log_records)
                  if e.event_id == EVENT_ID]
        assert len(on_log) == 1
        assert on_log[0].amount_minor == 250

        dlq_records = read_topic(kafka_bootstrap, names.dlq, expect=1, settle=1.0)
        assert len(dlq_records) == 1
        original = CODEC.decode(dlq_records[0].value)
        assert isinstance(original, DeadLetter)
        assert original.original == bad
        assert (original.source_partition, original.source_offset) == (sent.partition,
                                                                        sent.offset)

        capsys.readouterr()
        assert refstream_dlq("list", "--format", "json") == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(row["offset"], row["shop"], row["redriven"]) for row in listed] == [
            (sent.offset, "shop-1", "yes")]
    finally:
        exit_code = worker.stop()
    assert exit_code == 0, worker.log_tail()


def test_a_dlq_topic_that_does_not_exist_is_named_after_the_metadata_wait(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)  # no topics created
    with pytest.raises(DlqError, match=f"topic {TopicNames.from_settings(settings).dlq} does "
                                       "not exist"):
        read_dlq(settings, CODEC, timeout_s=2.0)
