"""The replay benchmark runs end to end on a small archive and reports what it measured."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_replay.py"


@pytest.mark.slow
def test_bench_replay_reports_rates_steps_and_the_verdict(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--events", "4000", "--repeat", "1",
                           "--archive", str(tmp_path / "archive")],
                          check=True, capture_output=True, text=True, timeout=300)
    out = done.stdout
    replay = re.search(r"replay: archive -> core -> DuckDB\s+([\d.]+)\s+([\d,]+)", out)
    assert replay is not None, out
    assert float(replay.group(1)) > 0 and int(replay.group(2).replace(",", "")) > 0
    steps = dict(re.findall(r"^  (\S.*?)\s+([\d.]+)\s+\d+%$", out, re.MULTILINE))
    assert {"core", "reading the archive", "fact rows into DuckDB", "building events",
            "derived rows and keys into DuckDB"} <= set(steps), out
    assert re.search(r"ratio replay/baseline: [\d.]+", out)
    assert "FEWER than the 1,000,000 it is meant for" in out  # 4,000 events
    assert re.search(r"replay: [\d,]+ events/s, (meets|MISSES) the 100,000", out)
