"""The registry edge: an unreachable registry stops ingest instead of dead-lettering, and
finance treats one message in any framing as the same payload."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from refstream.deploy.kafka_launcher import free_port
from refstream.schemas.codec import HEADER_LEN, Codec
from refstream.schemas.events import RewardDue
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.registry import confluent_id_header, legacy_single_object_header
from refstream.streams.finance import FinanceLedger
from refstream.streams.ingest import Ingestor, SourceRef
from refstream.streams.schema_registry import (
    HttpSchemaRegistry,
    RegistryConfig,
    RegistryUnavailable,
    output_records,
)
from refstream.streams.topics import TopicNames

DUE = RewardDue("rw-1", "s", 1, "v1", "ref-1", "c-1", "referrer", "credit", 1000, "EUR", 2,
                "first_order", "o-1")


def test_unreachable_registry_raises_instead_of_dead_lettering() -> None:
    registry = HttpSchemaRegistry(RegistryConfig(f"http://127.0.0.1:{free_port()}",
                                                 timeout_s=1.0, retries=1))
    ingestor = Ingestor(Codec(resolver=registry), Pseudonymiser(b"k" * 32))
    with pytest.raises(RegistryUnavailable, match=r"did not answer GET /schemas/ids/3"):
        ingestor.accept(confluent_id_header(3) + b"\x02", SourceRef("shop.order", 0, 5), "order")


def test_finance_sees_one_payload_in_every_framing(tmp_path: Path) -> None:
    spec = Codec().encode(DUE)
    legacy = legacy_single_object_header(Codec().newest(
        "refstream.derived.RewardDue").fingerprint) + spec[HEADER_LEN:]
    registry_codec = Codec(registry_ids={"refstream.derived.RewardDue": 4})
    framed = registry_codec.encode(DUE)
    assert len({spec, legacy, framed}) == 3
    ledger = FinanceLedger(tmp_path / "finance.sqlite")
    assert ledger.handle(legacy, registry_codec).action == "paid"  # written before the fix
    assert ledger.handle(spec, registry_codec).action == "duplicate"
    assert ledger.handle(framed, registry_codec).action == "duplicate"
    changed = Codec().encode(dataclasses.replace(DUE, amount_minor=999))
    assert ledger.handle(changed, registry_codec).action == "conflict"


def test_every_output_record_has_a_subject() -> None:
    names = TopicNames("shop", "refstream")
    records = [r for rs in output_records(names).values() for r in rs]
    assert sorted(records) == sorted({
        "refstream.derived.Attribution", "refstream.derived.FraudFlag",
        "refstream.derived.RewardDue", "refstream.derived.RewardReversal",
        "refstream.derived.RewardStatus"})


def test_dead_letters_name_what_arrived_and_what_was_expected() -> None:
    from refstream.streams.ingest import Rejected
    from tests.conformance.samples import shop_events

    codec = Codec()
    ingestor = Ingestor(codec, Pseudonymiser(b"k" * 32))
    order = next(e for e in shop_events() if e.event_type == "order")
    good = codec.encode(order)
    source = SourceRef("shop.order", 1, 9)
    cases = {
        confluent_id_header(12) + good[HEADER_LEN:]: [
            "Confluent Schema Registry framing (schema id) (magic 00), schema id 12",
            "set REFSTREAM_SCHEMA_REGISTRY_URL", "first bytes 00 00 00 00 0c"],
        good[:2] + bytes(8) + good[HEADER_LEN:]: [
            "unknown writer schema fingerprint 0000000000000000",
            "nearest known schema (reads the body exactly): refstream.shop.Order v1"],
        b'{"event_type": "order"}': [
            "not Avro single-object encoding: starts with 7b22 (first bytes 7b 22 65 76",
            "expected c3 01 + 8-byte fingerprint"],
    }
    for value, expected in cases.items():
        outcome = ingestor.accept(value, source, "order")
        assert isinstance(outcome, Rejected)
        letter = outcome.dead_letter
        assert (letter.source_topic, letter.source_offset, letter.original) == (
            "shop.order", 9, value)
        for part in expected:
            assert part in letter.error, letter.error
