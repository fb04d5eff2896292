"""Fixtures for the report tests: the hand-built sample log in a DuckDB file, opened read-only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from tests.unit.reports.sample_log import build_sample_db


@pytest.fixture
def sample_db(tmp_path: Path) -> Path:
    return build_sample_db(tmp_path / "sample.duckdb")


@pytest.fixture
def conn(sample_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(sample_db), read_only=True)
    try:
        yield connection
    finally:
        connection.close()
