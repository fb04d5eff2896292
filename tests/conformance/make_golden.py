"""Writes tests/unit/schemas/golden/single_object_java.jsonl: one record of every schema
version refstream ships, encoded by Apache Avro's Java BinaryMessageEncoder (the reference).

Run once after adding a schema version (needs Maven and Java 17):
    .venv/bin/python -m tests.conformance.make_golden
The fast tests then check refstream's codec against these bytes without Java.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import fastavro

from refstream.schemas.codec import Codec, SchemaVersion
from tests.conformance import java_program
from tests.conformance.samples import log_and_derived, shop_events

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "schemas" / "golden" / \
    "single_object_java.jsonl"


def avro_json(version: SchemaVersion, record: dict[str, Any]) -> Any:
    """The record in Avro's JSON encoding (unions tagged), which Java's JsonDecoder reads."""
    out = io.StringIO()
    fastavro.json_writer(out, version.parsed, [record])
    return json.loads(out.getvalue())


def sample_records(codec: Codec) -> list[tuple[SchemaVersion, dict[str, Any]]]:
    """(version, record) for every shipped version; an old version gets its own fields."""
    newest_records = {codec.record_name(type(v)): codec.to_record(v)
                      for v in [*shop_events(), *log_and_derived()]}
    found = []
    for version in codec.versions:
        full = newest_records[version.full_name]
        names = [f["name"] for f in version.declared["fields"]]
        found.append((version, {n: full[n] for n in names}))
    return found


def java_encoded(cases: list[tuple[SchemaVersion, dict[str, Any]]]) -> list[dict[str, Any]]:
    """What Apache Avro's Java encoder writes for each (schema version, record), in order."""
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "golden-in.jsonl"
        request.write_text("".join(
            json.dumps({"file": v.file_name, "record": avro_json(v, r)}) + "\n"
            for v, r in cases))
        result: list[dict[str, Any]] = java_program.run("golden", str(java_program.AVRO_DIR),
                                                        str(request))
    return result


def main() -> None:
    codec = Codec()
    samples = sample_records(codec)
    encoded = java_encoded(samples)
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    with GOLDEN.open("w") as out:
        for (version, record), java in zip(samples, encoded, strict=True):
            assert java["file"] == version.file_name
            # ASCII JSON: the records hold every byte value, which splitlines() would break on.
            out.write(json.dumps({"file": version.file_name, "fingerprint": java["fingerprint"],
                                  "record": avro_json(version, record),
                                  "hex": java["hex"]}) + "\n")
    print(f"{len(samples)} golden vectors -> {GOLDEN}")


if __name__ == "__main__":
    main()
