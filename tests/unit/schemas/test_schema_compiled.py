"""The codec's fast path compiled with mypyc is used only while its build is current.

Its stamp covers every shipped `.avsc` file and the generator, so an edited schema makes the
build stale; a stale, missing or forbidden build, or a compiled function generated from
another source, leaves the codec on the `exec`'d functions, which write the same bytes.
(tests/unit/schemas/test_avro_compiled.py holds both builds to fastavro.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from refstream.schemas import codec as codec_module
from refstream.schemas.codec import SCHEMA_COMPILED_MODULE, Codec, schema_compiled_source
from refstream.tools import native
from tests.conformance.samples import log_and_derived, shop_events

BUILT = Codec().schema_compiled
NEEDS_BUILD = pytest.mark.skipif(not BUILT, reason="the codec's mypyc build is missing or "
                                                   "stale: `make native` builds it")

# A fresh interpreter: which fast-path functions its codec runs compiled, and the sha256 of
# every sample value it encodes (the stamp's path can be pointed elsewhere first).
PROBE = """
import hashlib, json, pathlib, sys
from refstream.tools import native
if len(sys.argv) > 1:
    native.AVRO_STAMP = pathlib.Path(sys.argv[1])
from refstream.schemas.codec import Codec
from tests.conformance.samples import log_and_derived, shop_events
codec, digest = Codec(), hashlib.sha256()
for value in [*shop_events(), *log_and_derived()]:
    digest.update(codec.encode(value))
print(json.dumps({"compiled": len(codec.schema_compiled), "sha256": digest.hexdigest()}))
"""


def probe(*stamp: str, pure: bool = False) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    if pure:
        env[native.PURE_ENV] = "1"
    done = subprocess.run([sys.executable, "-c", PROBE, *stamp], env=env, capture_output=True,
                          text=True, timeout=120, check=True, cwd=native.SOURCE_ROOT)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def inputs_copy(root: Path) -> Path:
    """What the codec's build is generated from, copied under `root`."""
    shutil.copytree(native.SOURCE_ROOT / "schemas" / "avro", root / "schemas" / "avro")
    for name in native.AVRO_GENERATOR:
        shutil.copy(native.SOURCE_ROOT / name, root / name)
    return root


def test_an_edited_schema_or_generator_makes_the_build_stale(tmp_path: Path) -> None:
    root = inputs_copy(tmp_path)
    built_from = native.avro_fingerprint(root)
    assert built_from == native.avro_fingerprint()
    schema = root / "schemas" / "avro" / "log_click.v2.avsc"
    declared = json.loads(schema.read_text())
    declared["fields"][0]["doc"] = "edited"
    schema.write_text(json.dumps(declared))
    assert native.avro_fingerprint(root) != built_from
    shutil.copy(native.SOURCE_ROOT / "schemas" / "avro" / "log_click.v2.avsc", schema)
    assert native.avro_fingerprint(root) == built_from
    (root / "schemas" / "avro" / "log_click.v3.avsc").write_text(json.dumps(declared))
    assert native.avro_fingerprint(root) != built_from
    (root / "schemas" / "avro" / "log_click.v3.avsc").unlink()
    generator = root / "schemas" / "avro_compiled.py"
    generator.write_text(generator.read_text() + "\n# edited\n")
    assert native.avro_fingerprint(root) != built_from


@NEEDS_BUILD
def test_a_stale_missing_or_forbidden_build_falls_back_with_the_same_bytes(
        tmp_path: Path) -> None:
    current = probe()
    assert current["compiled"] == len(BUILT)
    stale = tmp_path / "stale.sha256"
    stale.write_text("0" * 64 + "\n")
    for fallen_back in (probe(str(stale)), probe(str(tmp_path / "missing.sha256")),
                        probe(pure=True)):
        assert fallen_back == {**current, "compiled": 0}


@NEEDS_BUILD
def test_a_compiled_function_from_another_source_is_not_used() -> None:
    built = codec_module._schema_compiled_module()
    assert built is not None
    # The same module, but its Click encoder says it was generated from something else.
    other = ModuleType(SCHEMA_COMPILED_MODULE)
    other.__dict__.update(vars(built))
    other.DIGESTS = {**built.DIGESTS, "encode_refstream_log_Click": "0" * 64}
    codec = Codec(schema_compiled=False)
    codec._compile(other)
    assert codec.schema_compiled == BUILT - {"encode_refstream_log_Click"}
    plain = Codec(schema_compiled=False)
    for value in [*shop_events(), *log_and_derived()]:
        assert codec.encode(value) == plain.encode(value)


@NEEDS_BUILD
def test_the_build_holds_exactly_what_the_generator_writes_today() -> None:
    built = codec_module._schema_compiled_module()
    assert built is not None
    sources = Codec(schema_compiled=False)._sources
    assert {source.name: source.digest for source in sources} == built.DIGESTS
    assert {source.name for source in sources} == BUILT
    assert "def encode_refstream_log_Click(value: Any) -> bytes:" in schema_compiled_source()


@NEEDS_BUILD
def test_a_registry_header_is_not_the_builds_so_that_encoder_runs_exec_d() -> None:
    codec = Codec(registry_ids={"refstream.log.Click": 7})
    assert codec.schema_compiled == BUILT - {"encode_refstream_log_Click"}
    click = next(v for v in log_and_derived() if type(v).__name__ == "Click")
    assert codec.encode(click)[:5] == b"\x00\x00\x00\x00\x07"
    assert codec.encode(click)[5:] == Codec().encode(click)[10:]
