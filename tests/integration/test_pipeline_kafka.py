"""The live pipeline on the real broker: generated shops in, exactly the core's outputs out."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from refstream.persistence.archive import ArchiveReader
from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue, Tick
from refstream.schemas.shop import ShopClick, ShopEvent, ShopOrder, ShopShare, ShopSignup
from refstream.streams.producer import publish_shop_events
from refstream.streams.settings import Settings
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_topic,
    wait_for,
)
from tests.integration.pipeline_expectations import (
    expected_outputs,
    received,
    same_messages_per_key,
)

pytestmark = pytest.mark.integration
RULES = load_rules(default_rules_path())
CODEC = Codec()


def output_topics(names: TopicNames) -> list[str]:
    return [names.attributions, names.fraud_flags, names.reward_due, names.rewards]


def wait_for_outputs(bootstrap: str, names: TopicNames, log_count: int,
                     timeout: float = 120) -> tuple[list[Any], dict[str, list[Any]]]:
    log_records = read_topic(bootstrap, names.log, expect=log_count, timeout=timeout)
    want = expected_outputs(log_records, RULES, names)
    got: dict[str, list[Any]] = {}
    for topic in output_topics(names):
        got[topic] = read_topic(bootstrap, topic, expect=len(want.get(topic, [])),
                                timeout=timeout, settle=1.0) if want.get(topic) else []
    return log_records, got


def generated_log(bootstrap: str, tmp_path: Path, config: SyntheticConfig,
                  **options: Any) -> tuple[Settings, TopicNames, list[ShopEvent]]:
    """Settings no other test shares (`options` on top), their topics, the generated events."""
    settings = isolated_settings(bootstrap, tmp_path, **options)
    ensure_topics(settings)
    return settings, TopicNames.from_settings(settings), list(iter_shop_events(config))


def run_worker_through(bootstrap: str, settings: Settings, events: list[ShopEvent]) -> None:
    """Publish `events` (the first of the log), run a worker until their outputs are all out,
    and stop it with SIGTERM."""
    publish_shop_events(settings, events)
    worker = WorkerProcess(settings).start()
    try:
        wait_for_outputs(bootstrap, TopicNames.from_settings(settings), len(events))
    finally:
        assert worker.stop() == 0, worker.log_tail()


def test_generated_shops_in_exact_core_outputs_out(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings, names, events = generated_log(
        kafka_bootstrap, tmp_path, SyntheticConfig(seed=11, shops=3, customers_per_shop=150,
                                                   days=20), tick_interval_s=0)
    publish_shop_events(settings, events)
    worker = WorkerProcess(settings).start()
    try:
        log_records, got = wait_for_outputs(kafka_bootstrap, names, len(events))
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert len(log_records) == len(events)
    want = expected_outputs(log_records, RULES, names)
    assert sum(len(v) for v in want.values()) > 100  # the shops really produced outcomes
    for topic in output_topics(names):
        messages = received(got[topic])
        # No crash, so not a single duplicate; exactly the core's messages.
        assert len(messages) == len(want.get(topic, [])), topic
        assert same_messages_per_key(messages, want.get(topic, [])), topic
    due = [CODEC.decode(v) for _, v in want[names.reward_due]]
    assert any(isinstance(d, RewardDue) for d in due)


def test_quiet_shop_timers_fire_through_ticks(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The hold period ends while the shop sends nothing: a Tick moves its stream time."""
    # Ticks every 3 s, longer than ingest's merge waits for a quiet co-partition (1 s): the
    # shop is not ticked between its own events while ingest still merges them.
    settings = isolated_settings(kafka_bootstrap, tmp_path, tick_interval_s=3.0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    now = datetime.now(UTC)
    hold = timedelta(days=RULES.rewards.hold_period_days)
    order_at = now - hold + timedelta(seconds=8)  # due eight seconds from now
    shop = "quiet-shop"
    events: list[ShopEvent] = [
        ShopShare(event_id="q1", shop_id=shop, occurred_at=order_at - timedelta(hours=3),
                  referrer_id="alice", referral_code="R-alice", channel="email",
                  campaign_id="friends"),
        ShopClick(event_id="q2", shop_id=shop, occurred_at=order_at - timedelta(hours=2),
                  visitor_id="v-bob", landing_url="https://quiet.example/?utm_campaign=friends",
                  ip="192.0.2.10", user_agent="ua", referral_code="R-alice",
                  campaign_id="friends", utm_source="email", utm_medium="referral",
                  utm_campaign="friends", device_id="dev-bob"),
        ShopSignup(event_id="q3", shop_id=shop, occurred_at=order_at - timedelta(hours=1),
                   customer_id="bob", email="bob@example.org", ip="192.0.2.10",
                   visitor_id="v-bob", device_id="dev-bob"),
        ShopOrder(event_id="q4", shop_id=shop, occurred_at=order_at, order_id="o-bob-1",
                  customer_id="bob", amount_minor=5000, currency="EUR", ip="192.0.2.10",
                  visitor_id="v-bob", device_id="dev-bob", payment_fingerprint="pm_bob",
                  shipping_address="2 Bob Lane"),
    ]
    worker = WorkerProcess(settings).start()
    try:
        # All at once: ingest merges the shop's topics by event time, so the log holds them
        # in order. (Published one at a time, a machine slow enough to leave the shop quiet
        # for a tick interval between two of them got a Tick at today's time in between,
        # and the later events arrived behind the watermark, as late arrivals.)
        publish_shop_events(settings, events)
        read_topic(kafka_bootstrap, names.log, expect=len(events), timeout=60)
        due_records = read_topic(kafka_bootstrap, names.reward_due, expect=1, timeout=90)
        log_records = read_topic(kafka_bootstrap, names.log, expect=5, timeout=30)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    due = [CODEC.decode(r.value) for r in due_records]
    assert {d.beneficiary_id for d in due if isinstance(d, RewardDue)} >= {"alice"}
    ticks = [e for e in (CODEC.decode(r.value) for r in log_records) if isinstance(e, Tick)]
    assert ticks, "the reward fell due without a Tick in the log: replay could not repeat it"
    assert max(t.occurred_at for t in ticks) >= int((order_at + hold).timestamp() * 1000)


def test_sigterm_drains_and_a_restart_emits_nothing_twice(kafka_bootstrap: str,
                                                          tmp_path: Path) -> None:
    settings, names, events = generated_log(
        kafka_bootstrap, tmp_path, SyntheticConfig(seed=5, shops=2, customers_per_shop=100,
                                                   days=20), tick_interval_s=0)
    half = len(events) // 2
    run_worker_through(kafka_bootstrap, settings, events[:half])
    # The final checkpoint covers the whole log so far.
    log_ends: dict[int, int] = {}
    for record in read_topic(kafka_bootstrap, names.log, expect=half):
        log_ends[record.partition] = max(log_ends.get(record.partition, 0), record.offset + 1)
    with sqlite3.connect(settings.data_dir / "checkpoints.sqlite") as db:
        stored = dict(db.execute("SELECT partition, next_offset FROM checkpoints").fetchall())
    assert stored == log_ends

    publish_shop_events(settings, events[half:])
    worker = WorkerProcess(settings).start()
    try:
        log_records, got = wait_for_outputs(kafka_bootstrap, names, len(events))
        time.sleep(2.0)  # a duplicate would arrive now, after the expected count
        got = {t: read_topic(kafka_bootstrap, t, settle=0.5, timeout=10) for t in got}
    finally:
        assert worker.stop() == 0, worker.log_tail()
    want = expected_outputs(log_records, RULES, names)
    for topic in output_topics(names):
        assert len(got[topic]) == len(want.get(topic, [])), topic
        assert same_messages_per_key(received(got[topic]), want.get(topic, [])), topic


def test_a_worker_behind_the_committed_offsets_catches_up_from_the_log(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    """The group committed offsets past this worker's checkpoint (here: it has none, as on a
    new machine) and a long backlog waits: the first record it sees is far ahead of its state.
    It must rebuild from the log and go on; before, a seek raced faust's read-offset filter
    (records already fetched moved it past the seek) and the partition stalled for good."""
    settings, names, events = generated_log(
        kafka_bootstrap, tmp_path, SyntheticConfig(seed=8, shops=3, customers_per_shop=3000,
                                                   days=20), partitions=1, tick_interval_s=0)
    first = len(events) // 10
    run_worker_through(kafka_bootstrap, settings, events[:first])
    (settings.data_dir / "checkpoints.sqlite").unlink()
    # The backlog reaches the log while no pipeline runs.
    publish_shop_events(settings, events[first:])
    ingest = WorkerProcess(settings, args=["--no-pipeline"]).start()
    try:
        read_topic(kafka_bootstrap, names.log, expect=len(events), timeout=120)
    finally:
        assert ingest.stop() == 0, ingest.log_tail()
    # The archiver starts on an empty archive at the group's offsets: it catches up as well.
    archive = tmp_path / "archive"
    worker = WorkerProcess(settings, args=["--no-ingest", "--archive", str(archive)]).start()
    try:
        log_records, got = wait_for_outputs(kafka_bootstrap, names, len(events))
        wait_for(lambda: ArchiveReader(archive).record_count == len(events), 60,
                 "the archive to hold the whole log")
    finally:
        assert worker.stop() == 0, worker.log_tail()
    assert [r.offset for r in ArchiveReader(archive).iter_records(0)] == list(range(len(events)))
    assert "reading the" in worker.log_tail(400)
    want = expected_outputs(log_records, RULES, names)
    for topic in output_topics(names):
        # Rebuilt from offset 0, so the first tenth's messages come twice, byte-identical.
        assert {v for _, v in want.get(topic, [])} == {r.value for r in got[topic]}, topic
        assert len(got[topic]) >= len(want.get(topic, [])), topic
