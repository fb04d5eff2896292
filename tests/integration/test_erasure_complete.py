"""Right to erasure, complete, on the real broker: a live worker (person vault on, as the
shipped configs have it) ingests a shop's month; then `refstream erase` with
--truncate-topic and --checkpoints. Afterwards none of the person's values is on any topic,
in the archive, in the worker's checkpoints or in the DuckDB rebuilt by replay, the totals
replay unchanged, and the worker starts again from its rebuilt checkpoint (no LogGapError).

The person's token stays (it is what keeps referrals, rewards and payouts of one
beneficiary together): the vault entry is gone, so it resolves to nobody.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from refstream.persistence.archive import ArchiveReader
from refstream.persistence.vault import PersonNotFound, PersonVault
from refstream.schemas.codec import Codec
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_to_end,
    read_topic,
    settings_env,
    wait_for,
)
from tests.unit.tools.test_erasure import archive_bytes_containing, personal_values, table

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CODEC = Codec()
TOTALS = """SELECT (SELECT count(*) FROM referrals), (SELECT count(*) FROM rewards),
                   (SELECT coalesce(sum(amount_minor), 0) FROM rewards),
                   (SELECT count(*) FROM fraud_flags)"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "refstream.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_erasure_leaves_nothing_on_topics_archive_checkpoints_or_duckdb(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vault_path = tmp_path / "vault.sqlite"
    settings = isolated_settings(kafka_bootstrap, tmp_path / "state", partitions=2,
                                 tick_interval_s=0, checkpoint_interval_s=1.0,
                                 person_vault=vault_path)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    env = {**os.environ, **settings_env(settings), "REFSTREAM_PERSON_VAULT": str(vault_path)}
    monkeypatch.setenv("REFSTREAM_PERSON_VAULT", str(vault_path))  # WorkerProcess passes it on
    archive = tmp_path / "archive"
    events = list(iter_shop_events(SyntheticConfig(seed=11, shops=1, customers_per_shop=150,
                                                   days=20)))
    worker = WorkerProcess(settings).start()
    try:
        publish_shop_events(settings, events)
        wanted = {event.event_id for event in events}

        def all_in_log() -> bool:
            records = read_topic(kafka_bootstrap, names.log, settle=0.5, timeout=20)
            return wanted <= {getattr(CODEC.decode_log_event(r.value), "event_id", None)
                              for r in records}

        wait_for(all_in_log, 120, "every event in the log")
        checkpoint_store = settings.data_dir / "checkpoints.sqlite"
        log_end = len(read_to_end(kafka_bootstrap, names.log))

        def checkpointed_to_end() -> bool:
            if not checkpoint_store.exists():
                return False
            with sqlite3.connect(checkpoint_store) as db:
                done = db.execute("SELECT coalesce(sum(next_offset), 0) FROM checkpoints")
                return int(done.fetchone()[0]) >= log_end

        wait_for(checkpointed_to_end, 120, "checkpoints at the end of the log")
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert cli(env, "archive", "--archive", str(archive)).returncode == 0

    before = tmp_path / "before.duckdb"
    assert cli(env, "replay", "--archive", str(archive), "--db", str(before)).returncode == 0
    shop, token, customer_id = pick_referrer_with_rewards(before, vault_path, archive)
    needles = personal_values(archive, token) | {customer_id}
    assert len(needles) > 3, needles
    assert found_anywhere(kafka_bootstrap, names, archive, checkpoint_store, before,
                          needles=needles), \
        "the test's needles are not where the person's data is: it could not fail"

    erased = cli(env, "erase", "--shop", shop, "--customer", customer_id, "--archive",
                 str(archive), "--truncate-topic", "--checkpoints", str(checkpoint_store))
    assert erased.returncode == 0, erased.stdout + erased.stderr

    after = tmp_path / "after.duckdb"
    assert cli(env, "replay", "--archive", str(archive), "--db", str(after)).returncode == 0
    assert table(after, TOTALS) == table(before, TOTALS)
    assert not found_anywhere(kafka_bootstrap, names, archive, checkpoint_store, after,
                              needles=needles)
    # The person's token stays (payouts and referrals keep their beneficiary), and
    # resolves to nobody.
    with PersonVault(vault_path) as vault, pytest.raises(PersonNotFound):
        vault.resolve(shop, token)

    # The worker resumes from its rebuilt checkpoint: no gap below the truncated log.
    again = WorkerProcess(settings).start()
    try:
        extra = list(iter_shop_events(SyntheticConfig(seed=12, shops=1, customers_per_shop=5,
                                                      days=2)))
        publish_shop_events(settings, extra)
        wait_for(lambda: "refstream_events_in_total{topic=\"" + names.log + "\"}"
                 in again.metrics(), 60, "the restarted worker applying the log")
    finally:
        assert again.stop() == 0, again.log_tail()
    assert "LogGapError" not in (again.log_path.read_text() if again.log_path else "")


def pick_referrer_with_rewards(db: Path, vault_path: Path, archive: Path
                               ) -> tuple[str, str, str]:
    """(shop, token, raw customer id) of the referrer or referee of a rewarded referral
    whose events carry the most identifiers (hashes on the log and in the state; a
    referrer's codes, built from the customer id, on attributions and fraud flags)."""
    rows = table(db, """
        SELECT DISTINCT r.shop_id, p.person
        FROM referrals r JOIN rewards w USING (referral_id),
             LATERAL (SELECT unnest([r.referrer_id, r.referee_id]) AS person) p
        WHERE p.person IS NOT NULL ORDER BY 2""")
    assert rows, "no referral with rewards"
    shop, token = max(rows, key=lambda row: (len(personal_values(archive, row[1])), row[1]))
    with PersonVault(vault_path) as vault:
        return str(shop), str(token), vault.resolve(str(shop), str(token))


def found_anywhere(bootstrap: str, names: TopicNames, archive: Path, checkpoints: Path,
                   db: Path, *, needles: set[str]) -> list[str]:
    """Where any needle is: every topic's keys and values, every archive cell and payload,
    every checkpoint row, every text cell of every DuckDB table."""
    found: list[str] = []
    topics = [*names.shop_topics, names.log, names.dlq, names.attributions,
              names.fraud_flags, names.reward_due, names.rewards]
    for topic in topics:
        for record in read_to_end(bootstrap, topic):
            blob = (record.key or b"") + b"\0" + (record.value or b"")
            found += [f"topic {topic}: {n}" for n in needles if n.encode() in blob]
    found += [f"archive: {n}" for n in archive_bytes_containing(archive, needles)]
    assert ArchiveReader(archive).record_count > 0
    with sqlite3.connect(checkpoints) as store:
        for (state,) in store.execute("SELECT state FROM checkpoints"):
            found += [f"checkpoint: {n}" for n in needles if n.encode() in bytes(state)]
    found += [f"duckdb: {n}" for n in needles if duckdb_contains(db, n)]
    return sorted(set(found))


def duckdb_contains(db: Path, needle: str) -> bool:
    literal = "'" + needle.replace("'", "''") + "'"
    for (name,) in table(db, "SELECT table_name FROM information_schema.tables"):
        # A row cast to text holds every column's value.
        (hits,) = table(db, f'SELECT count(*) FROM "{name}" t '
                            f"WHERE contains(CAST(t AS VARCHAR), {literal})")
        if hits[0]:
            return True
    return False
