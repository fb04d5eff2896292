"""The compiled Avro fast path against fastavro, the reference it stands in for: the same
bytes for every value it writes, the same record for every body it reads, and where it
declines, the codec's answer (value, bytes or error message) is the reference path's.

The codec's tests run on both builds of the fast path: the generated functions `exec`'d, and
the same functions compiled with mypyc (tools/native.py; skipped while that build is missing
or stale)."""

from __future__ import annotations

import dataclasses
import io
from collections import UserString
from types import SimpleNamespace
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.schemas.avro_compiled import (
    NotCompiled,
    compile_decoder,
    compile_encoder,
    long_bytes,
    read_long,
)
from refstream.schemas.codec import _NOT_COMPILED, HEADER_LEN, Codec, SchemaVersion
from refstream.schemas.errors import DecodeError
from refstream.schemas.events import Click, FraudFlag
from refstream.schemas.registry import single_object_header
from tests.conformance.samples import log_and_derived, shop_events

CODEC = Codec(schema_compiled=False)
NATIVE = Codec()
NATIVE_BUILT = bool(NATIVE.schema_compiled) and NATIVE.schema_compiled == {
    source.name for source in NATIVE._sources}
PATHS = [pytest.param(CODEC, id="exec"),
         pytest.param(NATIVE, id="mypyc", marks=pytest.mark.skipif(
             not NATIVE_BUILT, reason="the codec's mypyc build is missing or stale: "
                                      "`make native` builds it"))]
REFERENCE = Codec(schema_compiled=False)
# The reference codec: every value and record through fastavro, as before the fast path.
REFERENCE._encoders.clear()
REFERENCE._record_decoders.clear()
REFERENCE._newest_decoders.clear()
REFERENCE._value_decoders.clear()
VERSIONS = CODEC.versions
NEWEST = [v for v in VERSIONS if v is CODEC.newest(v.full_name)]
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DECLINED = (NotCompiled, IndexError, UnicodeDecodeError)


def field_values(avro_type: Any) -> st.SearchStrategy[Any]:
    """Values a field of this type may hold (the text includes every code point but the
    surrogates, which Avro strings cannot carry)."""
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        return st.lists(st.text(max_size=80), max_size=5)
    if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
        return st.sampled_from(avro_type["symbols"])
    if isinstance(avro_type, dict):
        return field_values(avro_type["type"])
    if avro_type == ["null", "string"]:
        return st.none() | st.text(max_size=80)
    return {"string": st.text(max_size=300),
            "long": INT64 | st.integers(-200, 200) | st.integers(10**12, 2 * 10**12),
            "int": st.integers(-(2**31), 2**31 - 1),
            "bytes": st.binary(max_size=300)}[avro_type]


@st.composite
def records(draw: st.DrawFn, version: SchemaVersion) -> dict[str, Any]:
    return {f["name"]: draw(field_values(f["type"])) for f in version.declared["fields"]}


def reference_bytes(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(single_object_header(version.fingerprint))
    fastavro.schemaless_writer(out, version.parsed, record)
    return out.getvalue()


def test_every_shipped_schema_version_compiles() -> None:
    for version in VERSIONS:
        assert compile_encoder(version.declared, b"") is not None, version.file_name
        assert compile_decoder(version.declared) is not None, version.file_name


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: v.file_name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_compiled_writes_fastavros_bytes_and_reads_its_records(
        version: SchemaVersion, data: st.DataObject) -> None:
    record = data.draw(records(version))
    header = single_object_header(version.fingerprint)
    encode = compile_encoder(version.declared, header)
    decode = compile_decoder(version.declared)
    assert encode is not None and decode is not None
    expected = reference_bytes(version, record)
    assert encode(SimpleNamespace(**record)) == expected
    assert decode(expected, HEADER_LEN) == fastavro.schemaless_reader(
        io.BytesIO(expected[HEADER_LEN:]), version.parsed, None)


def fast_path(codec: Codec, version: SchemaVersion) -> tuple[Any, Any]:
    """The codec's own encoder and record decoder of a newest version."""
    value_type = next(t for t, name in codec._name_of_type.items() if name == version.full_name)
    return codec._encoders[value_type], codec._record_decoders[version.fingerprint]


def test_the_mypyc_build_holds_every_fast_path_function() -> None:
    if not NATIVE_BUILT:
        pytest.skip("the codec's mypyc build is missing or stale: `make native` builds it")
    for value_type in NATIVE._encoders:
        assert not hasattr(NATIVE._encoders[value_type], "__code__"), value_type
    assert all(hasattr(f, "__code__") for f in CODEC._encoders.values())


@pytest.mark.parametrize("codec", PATHS)
@pytest.mark.parametrize("version", NEWEST, ids=lambda v: v.file_name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_codecs_fast_path_writes_fastavros_bytes_and_reads_its_records(
        codec: Codec, version: SchemaVersion, data: st.DataObject) -> None:
    record = data.draw(records(version))
    encode, decode = fast_path(codec, version)
    expected = reference_bytes(version, record)
    # Shop models give their event time as `occurred_at_ms` (the field holds a datetime).
    assert encode(SimpleNamespace(**record, occurred_at_ms=record.get("occurred_at"))
                  ) == expected
    assert decode(expected, HEADER_LEN) == fastavro.schemaless_reader(
        io.BytesIO(expected[HEADER_LEN:]), version.parsed, None)


@pytest.mark.parametrize("codec", PATHS)
@pytest.mark.parametrize("version", NEWEST, ids=lambda v: v.file_name)
@settings(max_examples=30, deadline=None)
@given(body=st.binary(max_size=120))
def test_compiled_reads_any_body_as_fastavro_does_or_declines(codec: Codec,
                                                              version: SchemaVersion,
                                                              body: bytes) -> None:
    _, decode = fast_path(codec, version)
    data = single_object_header(version.fingerprint) + body
    try:
        record = decode(data, HEADER_LEN)
    except DECLINED:
        return
    stream = io.BytesIO(body)
    assert record == fastavro.schemaless_reader(stream, version.parsed, None)
    assert stream.tell() == len(body)


def _outcome(codec: Codec, data: bytes) -> Any:
    try:
        return ("value", codec.decode(data))
    except DecodeError as exc:
        return ("dead letter", str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever the reference raises, so must this
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize("codec", PATHS)
@pytest.mark.parametrize("version", NEWEST, ids=lambda v: v.file_name)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_codec_decides_every_record_as_the_reference_path_does(
        codec: Codec, version: SchemaVersion, data: st.DataObject) -> None:
    """Values, validation errors and corrupt-body messages alike."""
    good = reference_bytes(version, data.draw(records(version)))
    cut = data.draw(st.integers(HEADER_LEN, len(good)))
    for message in (good, good[:cut], good + b"\x00", good[:cut] + data.draw(st.binary())):
        assert _outcome(codec, message) == _outcome(REFERENCE, message)
        try:
            expected: Any = REFERENCE.decode_record(message)
        except DecodeError as exc:
            expected = str(exc)
        try:
            got: Any = codec.decode_record(message)
        except DecodeError as exc:
            got = str(exc)
        assert got == expected


@pytest.mark.parametrize("codec", PATHS)
def test_the_codec_encodes_every_shipped_value_as_the_reference_path_does(codec: Codec
                                                                           ) -> None:
    for value in [*shop_events(), *log_and_derived()]:
        assert codec.encode(value) == REFERENCE.encode(value), type(value).__name__
        assert type(value) in codec._encoders
        assert codec.decode(codec.encode(value)) == REFERENCE.decode(REFERENCE.encode(value))


@pytest.mark.parametrize("codec", PATHS)
@pytest.mark.parametrize(("field", "odd"), [
    ("occurred_at", 2**63), ("occurred_at", 1.5), ("event_id", b"bytes"), ("event_id", 7),
    ("shop_id", "\ud800"), ("referral_code", 3), ("shop_id", None),
    ("evidence_event_ids", ("a", 7)), ("evidence_event_ids", "ab"),
    ("shop_id", UserString("s1"))])
def test_a_value_the_fast_path_declines_gets_the_reference_paths_answer(
        codec: Codec, field: str, odd: Any) -> None:
    kind = FraudFlag if field == "evidence_event_ids" else Click
    sample = next(v for v in log_and_derived() if isinstance(v, kind))
    value = dataclasses.replace(sample, **{field: odd})

    def answer(codec: Codec) -> Any:
        try:
            return codec.encode(value)
        except Exception as exc:  # noqa: BLE001 - comparing which error each path raises
            return type(exc)

    assert answer(codec) == answer(REFERENCE)


# Values of the wrong type, or near one: the declared Python type decides, in both builds.
ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4),
    st.binary(max_size=4), st.builds(bytearray, st.binary(max_size=4)),
    st.builds(UserString, st.text(max_size=4)), st.lists(st.text(max_size=3), max_size=2),
    st.lists(st.integers() | st.none(), min_size=1, max_size=2),
    st.tuples(st.text(max_size=3)), st.sampled_from([2**63, -(2**63) - 1, 2**31, "approve"]))


def _encoded(encode: Any, value: Any) -> Any:
    try:
        return ("bytes", encode(value))
    except _NOT_COMPILED:
        return ("refused, the codec runs fastavro",)


@pytest.mark.parametrize("version", NEWEST, ids=lambda v: v.file_name)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_both_builds_refuse_exactly_the_same_values(version: SchemaVersion,
                                                    data: st.DataObject) -> None:
    if not NATIVE_BUILT:
        pytest.skip("the codec's mypyc build is missing or stale: `make native` builds it")
    record = data.draw(records(version))
    field = data.draw(st.sampled_from([f["name"] for f in version.declared["fields"]]))
    record[field] = data.draw(ODD_VALUES)
    value = SimpleNamespace(**record, occurred_at_ms=record.get("occurred_at"))
    exec_encode, _ = fast_path(CODEC, version)
    native_encode, _ = fast_path(NATIVE, version)
    assert _encoded(exec_encode, value) == _encoded(native_encode, value)


@given(INT64)
def test_long_varints_are_fastavros(value: int) -> None:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", value)
    assert long_bytes(value) == out.getvalue()
    assert read_long(out.getvalue(), 0) == (value, len(out.getvalue()))


def test_a_varint_longer_than_64_bits_is_declined() -> None:
    with pytest.raises(NotCompiled):
        read_long(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(NotCompiled):
        long_bytes(2**63)
