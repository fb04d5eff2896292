"""Writes tests/unit/streams/golden/ingest_records.json: what ingest and the pipeline put on
the wire for a fixed list of shop records (the good, the repeated, the conflicting, the
malformed), so a faster codec or validation path is held to the same bytes.

The file was made from main at 874ddc1, before the hot path was compiled (issue #23):
    git worktree add /tmp/main874 874ddc1
    cd /tmp/main874 && PYTHONPATH=. ../<worktree>/.venv/bin/python \
        -m tests.unit.streams.make_ingest_golden
Only re-run it when the output is meant to change (a new schema version, a new rule), and
say so in the commit. `test_ingest_golden.py` replays the stored inputs through the
current code and compares every output record byte for byte.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

from refstream.persistence.checkpoint import CheckpointStore
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import Tick
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.registry import single_object_header
from refstream.streams.ingest import (
    Accepted,
    EventTimeBounds,
    Ingestor,
    Rejected,
    SourceRef,
)
from refstream.streams.pipeline_runtime import Applied, PipelineRuntime
from refstream.streams.topics import TopicNames
from refstream.tools.synthetic import events_for_target, iter_shop_events

GOLDEN = Path(__file__).parent / "golden" / "ingest_records.json"
SECRET = b"golden-secret-golden-secret-0001"
NAMES = TopicNames("shop", "refstream")
SYNTHETIC_EVENTS = 1500
DAY_MS = 86_400_000


def _raw(codec: Codec, file_name: str, record: dict[str, Any]) -> bytes:
    """A record written with fastavro under one shipped schema version, bypassing the models
    (so it can hold what validation must refuse or normalise)."""
    version = next(v for v in codec.versions if v.file_name == file_name)
    out = io.BytesIO()
    out.write(single_object_header(version.fingerprint))
    fastavro.schemaless_writer(out, version.parsed, record)
    return out.getvalue()


def _click(event_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_type": "click", "event_id": event_id, "shop_id": "shop-g",
        "occurred_at": 1_790_000_000_000, "visitor_id": "v-1",
        "landing_url": "https://shop.example/p?ref=R1", "ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0", "referral_code": "R1", "campaign_id": None,
        "utm_source": None, "utm_medium": None, "utm_campaign": None, "device_id": "d-1"}
    record.update(changes)
    return record


def _order(event_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_type": "order", "event_id": event_id, "shop_id": "shop-g",
        "occurred_at": 1_790_000_100_000, "order_id": f"o-{event_id}", "customer_id": "c-1",
        "amount_minor": 4599, "currency": "EUR", "ip": "203.0.113.9", "visitor_id": "v-1",
        "discount_code": None, "device_id": None, "payment_fingerprint": "pm_1",
        "shipping_address": " 1 Main St,  Springfield "}
    record.update(changes)
    return record


def _signup(event_id: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_type": "signup", "event_id": event_id, "shop_id": "shop-g",
        "occurred_at": 1_790_000_050_000, "customer_id": "c-1",
        "email": "Jane.Doe+promo@GoogleMail.com", "ip": "203.0.113.9", "visitor_id": "v-1",
        "referral_code": "R1", "device_id": "d-1"}
    record.update(changes)
    return record


def crafted(codec: Codec) -> Iterator[tuple[str, bytes, bytes]]:
    """(event type of the topic, key, value) for the edge cases."""
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", _click("pad", visitor_id=" v-1 ",
                                                                    ip="\u00a0203.0.113.9"))
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", _click("ctl", visitor_id="\x1cv"))
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", _click("nul", campaign_id=""))
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", _click("unicode", visitor_id="ü✓"))
    v1 = {k: v for k, v in _click("v1").items() if k != "device_id"}
    yield "click", b"shop-g", _raw(codec, "shop_click.v1.avsc", v1)
    for length in (256, 257):
        yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc",
                                       _click("long", visitor_id="v" * length))
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc",
                                   _click("url", landing_url="https://x/" + "u" * 4090))
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", {**_click("empty"), "event_id": ""})
    yield "click", b"shop-g", _raw(codec, "shop_click.v2.avsc", _click("blank", shop_id="   "))
    yield "signup", b"shop-g", _raw(codec, "shop_signup.v1.avsc", _signup("s-1"))
    yield "signup", b"shop-g", _raw(codec, "shop_signup.v1.avsc", _signup("s-2", email="nope"))
    yield "signup", b"shop-g", _raw(codec, "shop_signup.v1.avsc", _signup("s-3", email="a@b"))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-1"))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-1"))  # a retry
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc",
                                   _order("o-1", amount_minor=1))  # a conflict
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc",
                                   _order("o-1", shipping_address="1 Main St,  Springfield"))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-2", amount_minor=-5))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc",
                                   _order("o-3", amount_minor=10**13 + 1))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-4", currency="eur"))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-5", currency="EURO"))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc",
                                   _order("o-6", occurred_at=1_790_000_000_000 + 400 * DAY_MS))
    yield "order", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-7", occurred_at=0))
    yield "click", b"shop-g", _raw(codec, "shop_order.v1.avsc", _order("o-8"))  # wrong topic
    good = _raw(codec, "shop_order.v1.avsc", _order("o-9"))
    yield "order", b"shop-g", good[:-3]  # truncated body
    yield "order", b"shop-g", good + b"\x00"  # trailing byte
    yield "order", b"shop-g", b""
    yield "order", b"shop-g", b"not avro at all"
    yield "order", b"shop-g", b"\xc3\x01" + b"\x11" * 8 + b"\x02"
    yield "order", b"", good.replace(b"EUR", b"\xff\xfe\xfd")  # not UTF-8


def inputs(codec: Codec) -> list[tuple[str, bytes, bytes]]:
    records = [(e.event_type, e.shop_id.encode(), codec.encode(e))
               for e in iter_shop_events(events_for_target(SYNTHETIC_EVENTS, seed=11))]
    records = records[:SYNTHETIC_EVENTS]
    records += records[100:120]  # producer retries of accepted events
    records += list(crafted(codec))
    return records


def outputs(codec: Codec, records: list[tuple[str, bytes, bytes]], now_ms: int
            ) -> list[tuple[str, bytes, bytes]]:
    """What the ingest stage sends (log appends and dead letters, in input order; ticks), then
    what the pipeline stage sends for that log."""
    ingestor = Ingestor(codec, Pseudonymiser(SECRET),
                        event_time_bounds=EventTimeBounds(3_600_000, 365 * DAY_MS))
    sent: list[tuple[str, bytes, bytes]] = []
    for offset, (event_type, key, value) in enumerate(records):
        topic = NAMES.shop(event_type)
        outcome = ingestor.accept(value, SourceRef(topic, 0, offset), event_type, now_ms=now_ms)
        if isinstance(outcome, Accepted):
            sent.append((NAMES.log, outcome.event.shop_id.encode(), codec.encode(outcome.event)))
        elif isinstance(outcome, Rejected):
            sent.append((NAMES.dlq, key, codec.encode(outcome.dead_letter)))
    sent.append((NAMES.log, b"shop-g", codec.encode(Tick("tick:shop-g:1", "shop-g", now_ms))))
    rules = load_rules(default_rules_path())
    with tempfile.TemporaryDirectory() as tmp:
        runtime = PipelineRuntime(rules, codec, CheckpointStore(Path(tmp) / "cp.sqlite"), NAMES)
        log_values = [value for topic, _, value in sent if topic == NAMES.log]
        for offset, value in enumerate(log_values):
            decision = runtime.handle(0, offset, value)
            assert isinstance(decision, Applied)
            sent += [(out.topic, out.key, out.value) for out in decision.outputs]
    return sent


def now_ms_for(codec: Codec, records: list[tuple[str, bytes, bytes]]) -> int:
    """Ingest's clock for the run: an hour after the latest synthetic event."""
    latest = 0
    for _, _, value in records[:SYNTHETIC_EVENTS]:
        latest = max(latest, codec.decode(value).occurred_at_ms)
    return latest + 3_600_000


def main() -> None:
    codec = Codec()
    records = inputs(codec)
    now_ms = now_ms_for(codec, records)
    sent = outputs(codec, records, now_ms)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({
        "now_ms": now_ms,
        "inputs": [[t, k.hex(), v.hex()] for t, k, v in records],
        "outputs": [[t, k.hex(), v.hex()] for t, k, v in sent],
    }, indent=0) + "\n")
    kinds: dict[str, int] = {}
    for topic, _, _ in sent:
        kinds[topic] = kinds.get(topic, 0) + 1
    print(f"{GOLDEN}: {len(records)} inputs -> {kinds}")


if __name__ == "__main__":
    main()
