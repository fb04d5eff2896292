"""The projection store sizes DuckDB's thread pool by the CPUs the process may use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from refstream.persistence.store import ProjectionStore
store = ProjectionStore(sys.argv[1])
print(store.connection.execute("SELECT current_setting('threads')").fetchone()[0])
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_a_store_pinned_to_one_cpu_runs_duckdb_on_one_thread(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "pinned.duckdb")],
                          check=True, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["1"]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity here")
def test_an_unpinned_store_keeps_duckdbs_own_choice_up_to_the_cpus_it_may_use(
        tmp_path: Path) -> None:
    import duckdb

    from refstream.persistence.store import ProjectionStore

    own = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()
    store = ProjectionStore(tmp_path / "free.duckdb")
    try:
        row = store.connection.execute("SELECT current_setting('threads')").fetchone()
        assert own is not None and row is not None
        assert row[0] == min(own[0], len(os.sched_getaffinity(0)))
    finally:
        store.close()
