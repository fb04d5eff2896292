"""The same bytes out: ingest's log appends and dead letters, and the pipeline's derived
records, for a fixed list of shop records, byte for byte as main wrote them at 874ddc1
(before the codec and validation were compiled; `make_ingest_golden.py` made the file)."""

from __future__ import annotations

import json

import pytest

from refstream.schemas.codec import Codec
from tests.unit.streams.make_ingest_golden import GOLDEN, outputs

STORED = json.loads(GOLDEN.read_text())
INPUTS = [(t, bytes.fromhex(k), bytes.fromhex(v)) for t, k, v in STORED["inputs"]]
EXPECTED = [(t, bytes.fromhex(k), bytes.fromhex(v)) for t, k, v in STORED["outputs"]]


@pytest.fixture(scope="module")
def produced() -> list[tuple[str, bytes, bytes]]:
    return outputs(Codec(), INPUTS, STORED["now_ms"])


def test_the_golden_file_covers_every_outcome() -> None:
    topics = {topic for topic, _, _ in EXPECTED}
    assert {"refstream.log", "refstream.dlq", "refstream.attributions", "refstream.rewards",
            "refstream.fraud-flags"} <= topics


def test_every_record_ingest_and_the_pipeline_send_is_byte_identical(
        produced: list[tuple[str, bytes, bytes]]) -> None:
    assert len(produced) == len(EXPECTED)
    for index, (got, want) in enumerate(zip(produced, EXPECTED, strict=True)):
        assert got == want, f"output record {index} differs: {got!r} != {want!r}"
