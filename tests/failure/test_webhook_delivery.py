"""Reward webhooks against a real receiver process that fails, then recovers, with the
delivery worker killed (SIGKILL) mid-delivery: every reward-due and reversal event is
delivered, every delivery of one key carries the same bytes, every signature verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.unit.web.server import free_port

pytestmark = [pytest.mark.failure, pytest.mark.slow]

SECRET = "whsec-test-0b7e1c"
SHOP = "shop-001"
TIMEOUT_S = 120


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def received(folder: Path) -> list[dict[str, object]]:
    path = folder / "received.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def refstream(*args: str) -> list[str]:
    return [sys.executable, "-m", "refstream.cli", *args]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("webhook-snapshot")
    events, db = folder / "events.jsonl", folder / "analysts.duckdb"
    subprocess.run(refstream("generate", "--out", str(events), "--shops", "1", "--customers",
                             "300", "--days", "60", "--seed", "3"), check=True,
                   capture_output=True)
    # The 60 simulated days may run past today: check event times against their end.
    subprocess.run(refstream("run", "--events", str(events), "--db", str(db), "--wall-clock",
                             "2027-06-01T00:00:00Z"), check=True, capture_output=True)
    return db


def test_failing_then_recovering_receiver_and_a_killed_worker(tmp_path: Path,
                                                              snapshot: Path) -> None:
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        expected = dict(conn.execute(
            "SELECT CASE WHEN entry_type = 'due' THEN reward_id ELSE entry_id END, entry_type "
            "FROM reward_ledger").fetchall())
    assert sum(1 for t in expected.values() if t == "reversal") >= 1
    assert len(expected) >= 20

    port = free_port()
    (tmp_path / "failing").touch()
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).with_name(
        "webhook_receiver.py")), str(port), SECRET, str(tmp_path)])
    env = {**os.environ,
           "REFSTREAM_WEBHOOK_ENDPOINTS": json.dumps({SHOP: f"http://127.0.0.1:{port}/hook"}),
           "REFSTREAM_WEBHOOK_SECRETS": json.dumps({SHOP: SECRET}),
           "REFSTREAM_WEBHOOK_BACKOFF_BASE_S": "0.2", "REFSTREAM_WEBHOOK_BACKOFF_CAP_S": "1",
           "REFSTREAM_WEBHOOK_RETRY_BUDGET_S": "600"}
    outbox = tmp_path / "outbox.sqlite"
    worker_cmd = refstream("webhooks", "run", "--source", "snapshot", "--snapshot",
                           str(snapshot), "--outbox", str(outbox), "--idle-exit", "3")
    try:
        wait_for(lambda: _answers(port), "the receiver to listen")
        worker = subprocess.Popen(worker_cmd, env=env)
        # The receiver fails: every key is tried and refused, some more than once.
        wait_for(lambda: len({r["key"] for r in received(tmp_path)}) == len(expected)
                 and len(received(tmp_path)) > len(expected) + 5, "failed attempts")
        # It recovers, and holds the next request: the worker dies waiting for the answer.
        (tmp_path / "stall").touch()
        (tmp_path / "failing").unlink()
        wait_for((tmp_path / "stalled").exists, "a delivery in flight")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        stalled_key = (tmp_path / "stalled").read_text()
        # Restarted, it resumes from the delivery log and finishes.
        restarted = subprocess.run(worker_cmd, env=env, timeout=TIMEOUT_S, check=False)
        assert restarted.returncode == 0
    finally:
        receiver.kill()
        receiver.wait(timeout=30)

    seen = received(tmp_path)
    bodies: dict[str, set[str]] = defaultdict(set)
    for record in seen:
        bodies[str(record["key"])].add(str(record["body"]))
        assert record["valid"] and record["fresh"], record
    assert set(bodies) == set(expected)
    assert all(len(b) == 1 for b in bodies.values()), "a key was sent with different bodies"
    ok = [str(r["key"]) for r in seen if r["status"] == 200 and not r["stalled"]]
    assert sorted(ok) == sorted(expected), "every event delivered once after recovery"
    for key, [body] in ((k, list(v)) for k, v in bodies.items()):
        document = json.loads(body)
        assert document["type"] == ("reward_due" if expected[key] == "due" else
                                    "reward_reversal")
        assert document["reward_id"]
    # The stalled one was sent again after the restart, byte-identical.
    assert sum(1 for r in seen if r["key"] == stalled_key) >= 2
    log = subprocess.run(refstream("webhooks", "log", "--outbox", str(outbox), "--attempts"),
                         capture_output=True, text=True, check=True).stdout
    outcomes = [line.split("\t")[3] for line in log.splitlines()]
    assert "interrupted" in outcomes and "failed" in outcomes
    assert outcomes.count("ok") == len(expected)
    states = subprocess.run(refstream("webhooks", "log", "--outbox", str(outbox)),
                            capture_output=True, text=True, check=True).stdout
    assert {line.split("\t")[3] for line in states.splitlines()} == {"delivered"}


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.HTTPError:
        return False
    return True
