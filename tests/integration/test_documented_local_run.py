"""The README's local commands, as an operator types them: the broker from deploy/kafka.sh,
topics, a generated stream produced, two workers with one stopped midway; then what reached
finance is checked against `refstream replay` of the log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from refstream.deploy.kafka_launcher import free_ports
from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done.stdout


def test_documented_commands_two_workers_one_stopped_midway(tmp_path: Path) -> None:
    port, controller = free_ports(2)
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
           "REFSTREAM_KAFKA_DIR": str(tmp_path / "kafka")}
    refstream = [sys.executable, "-m", "refstream.cli"]
    run(["bash", "deploy/kafka.sh", "start"], env)
    try:
        bootstrap = f"127.0.0.1:{port}"
        settings = isolated_settings(bootstrap, tmp_path / "state", tick_interval_s=0,
                                     session_timeout_s=6.0)
        cli_env = {**env, "REFSTREAM_KAFKA_BOOTSTRAP": bootstrap,
                   "REFSTREAM_TOPIC_PREFIX": settings.topic_prefix,
                   "REFSTREAM_SHOP_TOPIC_PREFIX": settings.shop_topic_prefix,
                   "REFSTREAM_APP_ID": settings.app_id,
                   "REFSTREAM_PII_SECRET": settings.pii_secret.get_secret_value()}
        events = tmp_path / "shop.jsonl"
        run([*refstream, "generate", "--out", str(events), "--shops", "4", "--customers", "150",
             "--days", "20"], cli_env)
        lines = events.read_text().splitlines()
        half = tmp_path / "first-half.jsonl"
        rest = tmp_path / "second-half.jsonl"
        half.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
        rest.write_text("\n".join(lines[len(lines) // 2:]) + "\n")
        run([*refstream, "topics", "create"], cli_env)

        first = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "w1"})).start()
        second = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "w2"})).start()
        run([*refstream, "produce", str(half)], cli_env)
        time.sleep(5)
        assert second.stop() == 0, second.log_tail()  # one worker leaves midway
        run([*refstream, "produce", str(rest)], cli_env)
        log_records = read_topic(bootstrap, f"{settings.topic_prefix}.log", expect=len(lines),
                                 timeout=180)
        assert len(log_records) == len(lines)

        replay_db = tmp_path / "replay.duckdb"
        run([*refstream, "replay", "--db", str(replay_db)], cli_env)
        with duckdb.connect(str(replay_db), read_only=True) as db:
            due_ids = {row[0] for row in db.execute(
                "SELECT entry_id FROM reward_ledger WHERE entry_type = 'due'").fetchall()}
        assert len(due_ids) > 5
        codec = Codec()
        deadline = time.monotonic() + 120
        while True:
            paid = {e.reward_id for r in read_topic(bootstrap, f"{settings.topic_prefix}"
                                                    ".reward-due", settle=1.0, timeout=30)
                    if isinstance(e := codec.decode(r.value), RewardDue)}
            if paid == due_ids or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert paid == due_ids
        assert first.stop() == 0, first.log_tail()
    finally:
        subprocess.run(["bash", "deploy/kafka.sh", "stop"], env=env, cwd=REPO, timeout=120,
                       check=False)
