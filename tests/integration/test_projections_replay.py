"""Live projections, the published snapshot readers use, and exact reproducibility:
the projector's tables equal a replay from the archive and a replay from the topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from refstream.cli.main import main as refstream
from refstream.persistence.store import ProjectionStore
from refstream.projections.tables import ALL_TABLES, PAYOUTS
from refstream.replay.engine import replay_archive, replay_events
from refstream.replay.sources import events_of, topic_records
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RULES = load_rules(default_rules_path())
COMPARED_TABLES = [t for t in ALL_TABLES if t is not PAYOUTS]
PUBLISH_EVERY_S = 1.0

READER = r"""
import json, sys, time, duckdb
snapshot, stop_file, out = sys.argv[1], sys.argv[2], sys.argv[3]
reads, errors, staleness, counts = 0, [], [], set()
import os
while not os.path.exists(stop_file):
    if not os.path.exists(snapshot):
        time.sleep(0.1); continue
    try:
        conn = duckdb.connect(snapshot, read_only=True)
        counts.add(conn.execute("SELECT count(*) FROM clicks").fetchone()[0])
        published = conn.execute(
            "SELECT value FROM refstream_meta WHERE key = 'published_at'").fetchone()[0]
        conn.close()
        staleness.append(time.time() - published)
        reads += 1
    except Exception as exc:
        errors.append(repr(exc))
    time.sleep(0.05)
json.dump({"reads": reads, "errors": errors, "max_staleness": max(staleness or [0]),
           "distinct_counts": len(counts)}, open(out, "w"))
"""


def table_rows(db: Path | duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(db), read_only=True) if isinstance(db, Path) else db
    try:
        return conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    finally:
        if isinstance(db, Path):
            conn.close()


def test_live_projections_equal_replays_and_readers_never_block(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state", tick_interval_s=0,
                                 checkpoint_interval_s=1.0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    archive, live_db = tmp_path / "archive", tmp_path / "live.duckdb"
    snapshot = tmp_path / "snap.duckdb"
    events = list(iter_shop_events(SyntheticConfig(seed=21, shops=2, customers_per_shop=150,
                                                   days=20)))
    worker = WorkerProcess(settings, ["--archive", str(archive)]).start()
    env = {**os.environ, **settings_env(settings)}
    with (tmp_path / "projector.log").open("wb") as projector_log:
        projector = subprocess.Popen(
            [sys.executable, "-m", "refstream.cli", "projector", "--db", str(live_db),
             "--snapshot", str(snapshot), "--publish-every", str(PUBLISH_EVERY_S)],
            env=env, stdout=subprocess.DEVNULL, stderr=projector_log)
    stop_file, reader_out = tmp_path / "stop-reader", tmp_path / "reader.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(snapshot), str(stop_file),
                               str(reader_out)])
    try:
        deadline = time.monotonic() + 90
        while not snapshot.exists():  # the projector publishes as soon as it runs
            assert time.monotonic() < deadline, (tmp_path / "projector.log").read_text()[-2000:]
            time.sleep(0.2)
        for start in range(0, len(events), 400):
            publish_shop_events(settings, events[start:start + 400])
            time.sleep(0.5)
        # What the projections must converge to: the core over the topic, from offset 0.
        expected_db = tmp_path / "from-topic.duckdb"
        deadline = time.monotonic() + 180
        while True:
            expected_db.unlink(missing_ok=True)
            store = ProjectionStore(expected_db)
            replay_events(events_of(topic_records(kafka_bootstrap, names.log)), RULES, store)
            store.close()
            log_complete = table_rows(expected_db, "orders") and sum(
                len(table_rows(expected_db, t)) for t in ("clicks", "orders", "shares")) >= sum(
                1 for e in events if e.event_type in ("click", "order", "share"))
            if log_complete and snapshot.exists() and all(
                    table_rows(snapshot, t.name) == table_rows(expected_db, t.name)
                    for t in COMPARED_TABLES):
                break
            assert time.monotonic() < deadline, "the published snapshot never caught up"
            time.sleep(2.0)
    finally:
        stop_file.touch()
        reader.wait(timeout=30)
        assert worker.stop() == 0, worker.log_tail()
        projector.terminate()
        assert projector.wait(timeout=60) == 0, (tmp_path / "projector.log").read_text()[-3000:]

    reads = json.loads(reader_out.read_text())
    # It read while the projector wrote (it saw the data grow) and never hit a lock.
    assert reads["errors"] == [] and reads["distinct_counts"] >= 2, reads
    assert reads["max_staleness"] < PUBLISH_EVERY_S + 10, reads

    # The archive may lack the tail the archiver had not flushed at SIGTERM: `refstream
    # archive` resumes from where it ends, without repeating or skipping an offset.
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert refstream(["archive", "--archive", str(archive)]) == 0
    from_archive = tmp_path / "from-archive.duckdb"
    store = ProjectionStore(from_archive)
    replay_archive(archive, RULES, store)  # what `refstream replay --archive` runs
    store.close()
    for table in COMPARED_TABLES:
        live_rows = table_rows(live_db, table.name)
        assert live_rows == table_rows(from_archive, table.name), table.name
        assert live_rows == table_rows(expected_db, table.name), table.name
    assert len(table_rows(live_db, "rewards")) > 10
