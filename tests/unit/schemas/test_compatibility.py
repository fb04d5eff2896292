"""Every pair of schema versions is BACKWARD_TRANSITIVE compatible, checked two ways."""

from __future__ import annotations

import io
import itertools
from collections import defaultdict
from typing import Any

import fastavro
import pytest

from refstream.schemas.codec import SchemaVersion, load_schema_versions
from refstream.schemas.compatibility import incompatibilities

VERSIONS = load_schema_versions()


def _pairs() -> list[tuple[SchemaVersion, SchemaVersion]]:
    by_name: dict[str, list[SchemaVersion]] = defaultdict(list)
    for version in VERSIONS:
        by_name[version.full_name].append(version)
    pairs = []
    for versions in by_name.values():
        for older, newer in itertools.combinations(sorted(versions, key=lambda v: v.version), 2):
            pairs.append((older, newer))
    return pairs


def _sample(schema: Any, filled: bool) -> Any:
    match schema:
        case list():
            if not filled and "null" in schema:
                return None
            return _sample(next(b for b in schema if b != "null"), filled)
        case "null":
            return None
        case "string":
            return "x"
        case "bytes":
            return b"\x00\x01"
        case "int" | "long":
            return 7
        case "boolean":
            return True
        case {"type": "record", "fields": fields}:
            return {f["name"]: _sample(f["type"], filled) for f in fields}
        case {"type": "enum", "symbols": symbols}:
            return symbols[0]
        case {"type": "array", "items": items}:
            return [_sample(items, filled)]
        case {"type": "long"}:
            return 1_700_000_000_000
    raise AssertionError(f"no sample for {schema!r}")


def test_there_is_at_least_one_evolved_schema() -> None:
    assert any(newer.version > 1 for _, newer in _pairs())


@pytest.mark.parametrize(("older", "newer"), _pairs(),
                         ids=lambda v: f"{v.full_name}.v{v.version}")
def test_newer_version_reads_older_data(older: SchemaVersion, newer: SchemaVersion) -> None:
    assert incompatibilities(older.declared, newer.declared) == []
    for filled in (False, True):
        record = _sample(older.declared, filled)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, older.parsed, record)
        buffer.seek(0)
        read = fastavro.schemaless_reader(buffer, older.parsed, newer.parsed)
        for name, value in record.items():
            assert read[name] == value


def test_checker_rejects_a_field_added_without_default() -> None:
    writer = {"type": "record", "name": "A", "fields": [{"name": "a", "type": "string"}]}
    reader = {"type": "record", "name": "A", "fields": [
        {"name": "a", "type": "string"}, {"name": "b", "type": "long"}]}
    assert incompatibilities(writer, reader) == [
        "b: added without a default, so old data cannot fill it"
    ]


def test_checker_rejects_narrowing_a_type() -> None:
    writer = {"type": "record", "name": "A", "fields": [{"name": "n", "type": "long"}]}
    reader = {"type": "record", "name": "A", "fields": [{"name": "n", "type": "int"}]}
    assert incompatibilities(writer, reader) == ["n: writer long cannot be read as int"]


def test_checker_rejects_making_an_optional_field_required() -> None:
    writer = {"type": "record", "name": "A", "fields": [
        {"name": "c", "type": ["null", "string"], "default": None}]}
    reader = {"type": "record", "name": "A", "fields": [{"name": "c", "type": "string"}]}
    assert incompatibilities(writer, reader) == ["c: writer null cannot be read as string"]
