"""The compiled Avro fast path (schemas/avro_compiled.py) against Apache Avro's Java
BinaryMessageEncoder, the reference implementation: Java encodes random records of every
newest schema version, and refstream's codec must write the same bytes from the same
values and read the record back from Java's bytes."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from refstream.schemas.avro_compiled import compile_decoder, compile_encoder
from refstream.schemas.codec import HEADER_LEN, Codec, SchemaVersion
from refstream.schemas.registry import single_object_header
from tests.conformance import java_program
from tests.conformance.make_golden import java_encoded

pytestmark = pytest.mark.slow
CODEC = Codec()
TEXTS = ["", "a", "ü✓€", "x" * 63, "y" * 64, "z" * 200, "line\nbreak", "\x00nul", "😀 emoji"]


def random_value(rng: random.Random, avro_type: Any) -> Any:
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        return [random_value(rng, "string") for _ in range(rng.choice([0, 1, 3, 70]))]
    if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
        return rng.choice(avro_type["symbols"])
    if isinstance(avro_type, dict):
        return random_value(rng, avro_type["type"])
    if avro_type == ["null", "string"]:
        return None if rng.random() < 0.4 else random_value(rng, "string")
    if avro_type == "string":
        return rng.choice(TEXTS) + "".join(chr(rng.randrange(32, 0x2FFF))
                                           for _ in range(rng.randrange(0, 20)))
    if avro_type == "long":
        return rng.choice([0, -1, 63, -64, 64, 2**31, 1_790_000_000_000 + rng.randrange(10**9),
                           2**63 - 1, -(2**63), rng.randrange(-(2**63), 2**63)])
    if avro_type == "int":
        return rng.choice([0, -1, 2**31 - 1, -(2**31), rng.randrange(-(2**31), 2**31)])
    assert avro_type == "bytes"
    return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))


def samples() -> list[tuple[SchemaVersion, dict[str, Any]]]:
    rng = random.Random(23)
    newest = [v for v in CODEC.versions if v is CODEC.newest(v.full_name)]
    return [(v, {f["name"]: random_value(rng, f["type"]) for f in v.declared["fields"]})
            for v in newest for _ in range(25)]


def test_compiled_codec_writes_and_reads_what_javas_encoder_writes() -> None:
    try:
        java_program.classpath()
    except java_program.JavaProgramError as exc:
        pytest.skip(str(exc))
    cases = samples()
    encoded = java_encoded(cases)
    assert len(encoded) == len(cases)
    for (version, record), java in zip(cases, encoded, strict=True):
        java_bytes = bytes.fromhex(java["hex"])
        encode = compile_encoder(version.declared, single_object_header(version.fingerprint))
        decode = compile_decoder(version.declared)
        assert encode is not None and decode is not None
        assert encode(SimpleNamespace(**record)) == java_bytes, version.file_name
        assert decode(java_bytes, HEADER_LEN) == record, version.file_name
        if version.full_name.startswith(("refstream.log", "refstream.derived")):
            # The production path: Java's bytes to refstream's value and back.
            assert CODEC.encode(CODEC.decode(java_bytes)) == java_bytes, version.file_name
