"""Kafka's key partitioning (schemas/partitioning.py) against kafka-python's independent port
of the Java client's Utils.murmur2, compiled (when built) and interpreted alike; the Java
client itself is the reference in tests/conformance/test_partitioning_java.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from refstream.schemas import partitioning

SOURCE = Path(__file__).resolve().parents[3] / "schemas" / "partitioning.py"


def _interpreted() -> ModuleType:
    spec = importlib.util.spec_from_file_location("interpreted_partitioning", SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INTERPRETED = _interpreted()
IMPLEMENTATIONS = [partitioning, INTERPRETED]


def test_the_interpreted_module_is_the_source_file() -> None:
    assert INTERPRETED.__file__ == str(SOURCE)


@pytest.mark.parametrize("module", IMPLEMENTATIONS, ids=["as-imported", "interpreted"])
@settings(max_examples=400, deadline=None)
@given(key=st.binary(max_size=130), count=st.integers(1, 500))
def test_murmur2_and_the_partition_are_kafkas(module: ModuleType, key: bytes,
                                              count: int) -> None:
    expected = kafka_python_murmur2(key) & 0xFFFFFFFF
    assert module.murmur2(key) == expected
    assert module.partition_for_key(key, count) == (expected & 0x7FFFFFFF) % count


@pytest.mark.parametrize("module", IMPLEMENTATIONS, ids=["as-imported", "interpreted"])
def test_every_tail_length_and_high_bytes(module: ModuleType) -> None:
    # Lengths 0..11 cover no word, whole words and each tail (1, 2, 3 bytes); 0xff bytes
    # are where a sign-extending port (Java's bytes are signed) would go wrong.
    for length in range(12):
        for fill in (0x00, 0x7F, 0x80, 0xFF):
            key = bytes([fill]) * length
            assert module.murmur2(key) == kafka_python_murmur2(key) & 0xFFFFFFFF, (length, fill)


def test_a_topic_has_partitions() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partitioning.partition_for_key(b"k", 0)
