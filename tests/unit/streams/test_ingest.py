"""Ingest decisions without a broker: every bad record becomes a dead letter that says why."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refstream.schemas.codec import Codec
from refstream.schemas.events import OrderPlaced
from refstream.schemas.privacy import Pseudonymiser
from refstream.schemas.registry import single_object_header
from refstream.schemas.shop import ShopClick, ShopOrder
from refstream.streams.ingest import (
    DLQ_ORIGINAL_LIMIT,
    Accepted,
    Duplicate,
    Ingestor,
    RecentIds,
    Rejected,
    SourceRef,
    content_digest,
)

CODEC = Codec()
WHEN = datetime(2026, 10, 3, tzinfo=UTC)
REF = SourceRef("shop.order", 3, 17)


def make_ingestor(**kwargs: object) -> Ingestor:
    return Ingestor(CODEC, Pseudonymiser(b"k" * 32), **kwargs)  # type: ignore[arg-type]


def order_bytes(event_id: str = "e-1", shop_id: str = "shop-1", **changes: object) -> bytes:
    fields: dict[str, object] = dict(event_id=event_id, shop_id=shop_id, occurred_at=WHEN,
                                     order_id="o-1", customer_id="c-1", amount_minor=100,
                                     currency="EUR", ip="10.1.1.1")
    fields.update(changes)
    return CODEC.encode(ShopOrder.model_validate(fields))


def test_good_record_becomes_a_pseudonymised_log_event() -> None:
    outcome = make_ingestor().accept(order_bytes(), REF, "order")
    assert isinstance(outcome, Accepted)
    assert isinstance(outcome.event, OrderPlaced)
    assert outcome.event.ip_hash.startswith("ip:") and "10.1.1.1" not in repr(outcome.event)


def test_duplicate_event_id_is_dropped_as_duplicate_not_silently() -> None:
    ingestor = make_ingestor()
    assert isinstance(ingestor.accept(order_bytes(), REF, "order"), Accepted)
    assert ingestor.accept(order_bytes(), REF, "order") == Duplicate("e-1")
    # the same event id in another shop is another event
    assert isinstance(ingestor.accept(order_bytes(shop_id="shop-2"), REF, "order"), Accepted)


@pytest.mark.parametrize(("value", "expected_error"), [
    (b"", "empty record value"),
    (b"\xc3\x01\x00", "truncated message: 3 bytes"),
    (b"hello world!", "not Avro single-object encoding: starts with 6865"),
    (b"\xc3\x01" + b"\xff" * 8 + b"body", "unknown writer schema fingerprint ffffffffffffffff"),
])
def test_bad_bytes_become_dead_letters_with_source_and_error(value: bytes,
                                                            expected_error: str) -> None:
    outcome = make_ingestor().accept(value, REF, "order", now_ms=99)
    assert isinstance(outcome, Rejected)
    letter = outcome.dead_letter
    assert expected_error in letter.error
    where = (letter.source_topic, letter.source_partition, letter.source_offset)
    assert where == ("shop.order", 3, 17)
    assert letter.original == value
    assert letter.failed_at == 99


def test_event_on_the_wrong_topic_is_rejected() -> None:
    click = CODEC.encode(ShopClick(event_id="c", shop_id="s", occurred_at=WHEN, visitor_id="v",
                                   landing_url="u", ip="1.1.1.1", user_agent="ua"))
    outcome = make_ingestor().accept(click, REF, "order")
    assert isinstance(outcome, Rejected)
    assert outcome.dead_letter.error.startswith("a click event was published to the order topic")


def test_unknown_shop_is_rejected_when_shops_are_configured() -> None:
    outcome = make_ingestor(known_shops=frozenset({"shop-1"})).accept(
        order_bytes(shop_id="shop-9"), REF, "order")
    assert isinstance(outcome, Rejected)
    assert "unknown shop 'shop-9'" in outcome.dead_letter.error


def test_derived_event_published_to_a_shop_topic_is_rejected() -> None:
    from refstream.schemas.events import Tick

    outcome = make_ingestor().accept(CODEC.encode(Tick("t", "s", 1)), REF, "order")
    assert isinstance(outcome, Rejected)
    assert "Tick is not a shop event" in outcome.dead_letter.error


def test_oversized_record_is_kept_truncated_with_length_and_hash() -> None:
    huge = order_bytes(shipping_address="x" * (10 * 1024 * 1024))
    outcome = make_ingestor().accept(huge, REF, "order")
    assert isinstance(outcome, Rejected)
    letter = outcome.dead_letter
    assert f"record of {len(huge)} bytes exceeds the 1048576-byte event limit" in letter.error
    assert "sha256" in letter.error
    assert letter.original == huge[:DLQ_ORIGINAL_LIMIT]


def test_a_repeated_event_id_with_other_content_is_a_conflict_in_the_dlq() -> None:
    ingestor = make_ingestor()
    assert isinstance(ingestor.accept(order_bytes(), REF, "order"), Accepted)
    conflict = ingestor.accept(order_bytes(amount_minor=5000), REF, "order")
    assert isinstance(conflict, Rejected)
    letter = conflict.dead_letter
    assert "conflicting duplicate" in letter.error and "'e-1'" in letter.error
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "shop.order", 3, 17)
    assert letter.shop_id == "shop-1" and letter.original == order_bytes(amount_minor=5000)
    # The first copy stands: an exact repeat of it is still a plain duplicate.
    assert ingestor.accept(order_bytes(), REF, "order") == Duplicate("e-1")


@settings(max_examples=200, deadline=None)
@given(first=st.fixed_dictionaries({
    "amount_minor": st.sampled_from([0, 1, 100, 2**40]),
    "currency": st.sampled_from(["EUR", "USD"]),
    "ip": st.sampled_from(["10.1.1.1", " 10.1.1.1", "10.1.1.2"]),
    "visitor_id": st.sampled_from([None, "v", "v "]),
    "occurred_at": st.sampled_from([WHEN, WHEN + timedelta(milliseconds=1)])}),
    second=st.fixed_dictionaries({
        "amount_minor": st.sampled_from([0, 1, 100, 2**40]),
        "currency": st.sampled_from(["EUR", "USD"]),
        "ip": st.sampled_from(["10.1.1.1", " 10.1.1.1", "10.1.1.2"]),
        "visitor_id": st.sampled_from([None, "v", "v "]),
        "occurred_at": st.sampled_from([WHEN, WHEN + timedelta(milliseconds=1)])}))
def test_a_repeat_is_silent_exactly_when_its_validated_content_is_the_first_copys(
        first: dict[str, object], second: dict[str, object]) -> None:
    """Live ingest's in-memory content hash decides as the stored digest does (the
    reference: `content_digest`, what `run --append` keeps)."""
    ingestor = make_ingestor()
    one, two = order_bytes(**first), order_bytes(**second)
    assert isinstance(ingestor.accept(one, REF, "order"), Accepted)
    outcome = ingestor.accept(two, REF, "order")
    same = content_digest(CODEC.decode(one)) == content_digest(CODEC.decode(two))
    assert (outcome == Duplicate("e-1")) == same
    assert isinstance(outcome, Rejected) == (not same)


def test_an_event_time_no_date_can_hold_is_a_dead_letter_not_a_crash() -> None:
    record = CODEC.to_record(ShopOrder.model_validate(dict(
        event_id="e-9", shop_id="shop-1", occurred_at=WHEN, order_id="o-1", customer_id="c-1",
        amount_minor=100, currency="EUR", ip="10.1.1.1")))
    record["occurred_at"] = -62_135_596_800_001  # before 0001-01-01
    version = CODEC.newest("refstream.shop.Order")
    out = io.BytesIO()
    out.write(single_object_header(version.fingerprint))
    fastavro.schemaless_writer(out, version.parsed, record)
    outcome = make_ingestor().accept(out.getvalue(), REF, "order")
    assert isinstance(outcome, Rejected)
    assert "occurred_at: -62135596800001 ms since 1970 is not a representable date" in (
        outcome.dead_letter.error)


def test_recent_ids_keep_the_newest_ids_up_to_their_capacity() -> None:
    recent = RecentIds(capacity=3)
    assert [recent.seen_before(key) for key in "abcd"] == [False] * 4
    # "a" came first and went when "d" came; "b", "c", "d" are still held, with their digests.
    assert [recent.seen_before(key) for key in "bcd"] == [True] * 3
    assert recent.first_copy("a", b"x") is None  # new again; "b" goes now
    assert recent.first_copy("a", b"y") == b"x"
    assert recent.first_copy("b", b"z") is None


def test_recent_ids_forget_an_id_until_it_comes_again() -> None:
    recent = RecentIds(capacity=3)
    recent.seen_before("a", b"1")
    recent.forget("a")
    assert recent.first_copy("a", b"2") is None  # not a duplicate: it was never appended
    assert recent.first_copy("a", b"3") == b"2"
    with pytest.raises(ValueError):
        RecentIds(capacity=0)
