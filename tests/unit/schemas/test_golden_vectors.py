"""refstream's codec against bytes Apache Avro's Java BinaryMessageEncoder wrote (the
reference implementation), without Java: `golden/single_object_java.jsonl`, made by
`tests/conformance/make_golden.py`."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from refstream.schemas.codec import HEADER_LEN, MAGIC, Codec
from refstream.schemas.registry import legacy_single_object_header

CODEC = Codec()
GOLDEN_FILE = Path(__file__).parent / "golden" / "single_object_java.jsonl"
GOLDEN = [json.loads(line) for line in GOLDEN_FILE.read_text().splitlines() if line.strip()]
VERSIONS = {v.file_name: v for v in CODEC.versions}


def python_record(entry: dict[str, Any]) -> dict[str, Any]:
    """The vector's record, read from Avro's JSON encoding."""
    version = VERSIONS[entry["file"]]
    text = json.dumps(entry["record"])
    (record,) = list(fastavro.json_reader(io.StringIO(text), version.parsed))
    return dict(record)


def test_every_shipped_schema_version_has_a_java_vector() -> None:
    assert sorted(e["file"] for e in GOLDEN) == sorted(VERSIONS)


@pytest.mark.parametrize("entry", GOLDEN, ids=lambda e: e["file"])
def test_fingerprint_equals_javas_parsing_fingerprint64(entry: dict[str, Any]) -> None:
    assert VERSIONS[entry["file"]].fingerprint == int(entry["fingerprint"], 16)


@pytest.mark.parametrize("entry", GOLDEN, ids=lambda e: e["file"])
def test_refstream_writes_the_bytes_java_wrote(entry: dict[str, Any]) -> None:
    version = VERSIONS[entry["file"]]
    java = bytes.fromhex(entry["hex"])
    record = python_record(entry)
    if CODEC.newest(version.full_name) is version:
        # The production path: a value of refstream's own type through Codec.encode.
        value = CODEC.from_record(version.full_name, dict(record))
        assert CODEC.encode(value) == java
    else:
        # An old version refstream no longer writes: its header and body layout still match.
        out = io.BytesIO()
        out.write(MAGIC + version.fingerprint.to_bytes(8, "little"))
        fastavro.schemaless_writer(out, version.parsed, record)
        assert out.getvalue() == java


@pytest.mark.parametrize("entry", GOLDEN, ids=lambda e: e["file"])
def test_refstream_reads_what_java_wrote(entry: dict[str, Any]) -> None:
    version = VERSIONS[entry["file"]]
    java = bytes.fromhex(entry["hex"])
    assert CODEC.writer_of(java) is version
    name, record = CODEC.decode_record(java)
    expected = python_record(entry)
    assert name == version.full_name
    # Read through the newest version: fields an old writer lacks take their defaults.
    newest_fields = {f["name"] for f in CODEC.newest(name).declared["fields"]}
    assert {k: v for k, v in record.items() if k in expected} == expected
    assert set(record) == newest_fields


@pytest.mark.parametrize("entry", GOLDEN, ids=lambda e: e["file"])
def test_legacy_byte_reversed_header_still_reads(entry: dict[str, Any]) -> None:
    """Logs and archives written before the fix carry the fingerprint byte-reversed."""
    version = VERSIONS[entry["file"]]
    java = bytes.fromhex(entry["hex"])
    legacy = legacy_single_object_header(version.fingerprint) + java[HEADER_LEN:]
    assert legacy[2:HEADER_LEN] == java[2:HEADER_LEN][::-1]
    assert CODEC.writer_of(legacy) is version
    assert CODEC.decode_record(legacy) == CODEC.decode_record(java)
    assert CODEC.canonical_forms(legacy) == CODEC.canonical_forms(java)
    assert CODEC.canonical_forms(java)[0] == java
