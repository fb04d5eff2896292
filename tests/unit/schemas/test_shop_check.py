"""The generated shop-record checks against pydantic, the reference they stand in for: a
record a check passes is one pydantic accepts with every value unchanged, and ingest gives
the same outcome for any record, valid or not, with the checks as with pydantic alone."""

from __future__ import annotations

import io
import struct
import sys
from typing import Annotated, Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from refstream.schemas.codec import MAGIC, Codec
from refstream.schemas.epoch import from_epoch_ms
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.shop import SHOP_MODELS, ShopEvent, ShopOrder
from refstream.schemas.shop_check import LATEST_MS, check_source, record_check
from refstream.streams.ingest import Ingestor, RecentIds, SourceRef
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events

CODEC = Codec()
CHECKED = {kind: model for kind, model in SHOP_MODELS.items() if check_source(model)}
# Characters pydantic strips (str_strip_whitespace), Python's isspace, and ones only one of
# them counts, at either end of a value.
EDGES = [" ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u180e",
         "\u2003", "\u200b", "\u2028", "\u202f", "\u3000", "\ufeff"]


def test_every_character_pydantic_strips_is_one_python_calls_whitespace() -> None:
    class Stripped(BaseModel):
        model_config = ConfigDict(str_strip_whitespace=True)
        value: str

    stripped = [c for c in map(chr, range(sys.maxunicode + 1))
                if not 0xD800 <= ord(c) <= 0xDFFF
                and Stripped(value=f"{c}x").value == "x"]
    assert stripped, "pydantic strips nothing: the probe is broken"
    assert [c for c in stripped if not c.isspace()] == []


def test_str_strip_strips_exactly_the_characters_python_calls_whitespace() -> None:
    # The checks refuse a value with `v.strip() != v`: at either end, every isspace
    # character, and no other, must make that true.
    for c in map(chr, range(sys.maxunicode + 1)):
        if 0xD800 <= ord(c) <= 0xDFFF:
            continue
        assert (f"{c}x".strip() != f"{c}x") is c.isspace(), hex(ord(c))
        assert (f"x{c}".strip() != f"x{c}") is c.isspace(), hex(ord(c))


def test_the_hot_shop_types_have_checks_and_an_unknown_constraint_gives_none() -> None:
    assert set(CHECKED) >= {"share", "click", "signup", "order", "return"}
    assert "review" not in CHECKED  # an enum field: not a constraint the generator knows


def test_a_constraint_the_generator_does_not_know_leaves_the_model_to_pydantic() -> None:
    class OtherPattern(ShopOrder):
        currency: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]

    class ModelLevel(ShopOrder):
        @model_validator(mode="after")
        def _anything(self) -> ModelLevel:
            return self

    class Lax(ShopOrder):
        amount_minor: int  # not strict: pydantic would turn "5" or 5.0 into 5

    assert check_source(ShopOrder) is not None
    assert [check_source(m) for m in (OtherPattern, ModelLevel, Lax)] == [None, None, None]


def test_nearly_every_synthetic_record_passes_its_check() -> None:
    events = list(iter_shop_events(SyntheticConfig(seed=3, shops=2, customers_per_shop=200,
                                                   days=10)))
    checks = {model: record_check(model) for model in SHOP_MODELS.values()}
    passed = 0
    for event in events:
        _, record = CODEC.decode_record(CODEC.encode(event))
        check = checks[type(event)]
        passed += bool(check and check(record))
    assert passed >= 0.95 * len(events), (passed, len(events))


def text(longest: int = 300) -> st.SearchStrategy[str]:
    plain = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
    sized = st.sampled_from([0, 1, 2, 3, 255, 256, 257, 4095, 4096, 4097]).map(
        lambda n: "a" * n)
    edged = st.tuples(st.sampled_from(["", *EDGES]), plain, st.sampled_from(["", *EDGES])
                      ).map("".join)
    shaped = st.sampled_from(["a@b.c", "@b.c", "a@bc", "a@b.", "a@@b.c", "EUR", "eur", "EU",
                              "EURO", "E1R", "ÉUR", "\uff25\uff35\uff32", "order", "click"])
    return st.one_of(plain, sized, edged, shaped)


def values(model: type[ShopEvent], field: str) -> st.SearchStrategy[Any]:
    info = model.model_fields[field]
    if field == "occurred_at":
        return st.one_of(st.sampled_from([-1, 0, 1, 1_790_000_000_123, LATEST_MS,
                                          LATEST_MS + 1]),
                         st.integers(min_value=-(2**40), max_value=2**48))
    if info.annotation is int:
        return st.one_of(st.sampled_from([-1, 0, 1, 10**13, 10**13 + 1]),
                         st.integers(min_value=-(2**63), max_value=2**63 - 1))
    if field == "event_type":
        return st.sampled_from([model.model_fields["event_type"].default, "order", "share "])
    if info.is_required():
        return text()
    return st.one_of(st.none(), text())


def records(model: type[ShopEvent]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({field: values(model, field) for field in model.model_fields})


@pytest.mark.parametrize("kind", sorted(CHECKED))
def test_a_record_a_check_passes_is_one_pydantic_takes_unchanged(kind: str) -> None:
    model = CHECKED[kind]
    check = record_check(model)
    assert check is not None

    @settings(max_examples=400, deadline=None)
    @given(records(model))
    def agrees(record: dict[str, Any]) -> None:
        if not check(dict(record)):
            return
        try:
            validated = model.model_validate(
                {**record, "occurred_at": from_epoch_ms(record["occurred_at"])})
        except ValidationError as exc:
            raise AssertionError(f"the check passed what pydantic refuses: {exc}") from exc
        assert validated.__dict__ == {**record,
                                      "occurred_at": from_epoch_ms(record["occurred_at"])}

    agrees()


def encoded(kind: str, record: dict[str, Any]) -> bytes | None:
    """The record as another Avro writer (fastavro) sends it, or None if Avro cannot carry
    it (a long out of range)."""
    schema = CODEC.newest(CODEC.record_name(SHOP_MODELS[kind]))
    buffer = io.BytesIO()
    buffer.write(MAGIC + struct.pack("<Q", schema.fingerprint))
    try:
        fastavro.schemaless_writer(buffer, schema.parsed, record)
    except (ValueError, TypeError, OverflowError, struct.error):
        return None
    return buffer.getvalue()


def outcomes(batch: list[bytes], expected_type: str | None, known_shops: frozenset[str]
             ) -> tuple[list[Any], list[Any]]:
    """Each record's outcome from an ingestor with the checks and from one without."""
    def make(**options: Any) -> Ingestor:
        return Ingestor(CODEC, Pseudonymiser(b"k" * 32), known_shops, recent_ids=RecentIds(),
                        **options)

    checked, reference = make(), make(pydantic_only=True)
    source = SourceRef("shop.any", 0, 0)
    return ([checked.accept(v, source, expected_type, now_ms=7) for v in batch],
            [reference.accept(v, source, expected_type, now_ms=7) for v in batch])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_ingest_decides_every_record_as_pydantic_alone_does(data: st.DataObject) -> None:
    batch = []
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        kind = data.draw(st.sampled_from(sorted(CHECKED)))
        record = data.draw(records(CHECKED[kind]))
        value = encoded(kind, record)
        if value is None:
            continue
        batch.append(value)
        if data.draw(st.booleans()):  # a copy: the same, or with padding pydantic strips
            edge = data.draw(st.sampled_from(["", " ", "\t"]))
            copy = encoded(kind, {**record, "event_id": f"{edge}{record['event_id']}{edge}"})
            if copy is not None:
                batch.append(copy)
    expected_type = data.draw(st.sampled_from([None, None, "order", "click"]))
    known = data.draw(st.sampled_from([frozenset(), frozenset({"a", "shop-1"})]))
    checked, reference = outcomes(batch, expected_type, known)
    assert checked == reference
