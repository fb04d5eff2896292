"""The ingest stage's consumer group on the real broker: two ingest workers split the shop
topics co-partitioned (partition p of every shop topic goes to one worker, which the event-time
merge needs), and a worker stopped cleanly commits what it appended, so a new one does not
append it again."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient

from refstream.schemas.codec import Codec
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics, stage_group
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_topic,
    wait_for,
)
from tests.integration.test_ingest_kafka import click

pytestmark = pytest.mark.integration
CODEC = Codec()


def _assignments(bootstrap: str, group: str) -> list[dict[str, set[int]]]:
    """Per member of `group`: topic -> the partitions it is assigned."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
    finally:
        admin.close()
    members = []
    for member in described.get("members", []):
        assignment = member.get("member_assignment")
        topics: dict[str, set[int]] = defaultdict(set)
        for entry in _assigned_partitions(assignment):
            topics[entry[0]].update(entry[1])
        members.append(dict(topics))
    return members


def _assigned_partitions(assignment: Any) -> list[tuple[str, list[int]]]:
    if assignment is None:
        return []
    if isinstance(assignment, dict):
        entries = assignment.get("assigned_partitions", [])
        return [(e["topic"], list(e["partitions"])) for e in entries]
    return [(e.topic, list(e.partitions)) for e in assignment.assigned_partitions]


def test_two_ingest_workers_split_the_shop_topics_co_partitioned(kafka_bootstrap: str,
                                                                  tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=4, tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    group = stage_group(settings.app_id, "ingest")
    workers = [WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / name}),
                             ["--no-pipeline"]).start() for name in ("a", "b")]
    try:
        def split() -> bool:
            members = _assignments(kafka_bootstrap, group)
            return len(members) == 2 and all(members)

        wait_for(split, 60, "both ingest workers to hold partitions")
        members = _assignments(kafka_bootstrap, group)
        owned = []
        for topics in members:
            assert set(topics) == set(names.shop_topics), topics
            partitions = {frozenset(p) for p in topics.values()}
            assert len(partitions) == 1, f"not co-partitioned: {topics}"
            owned.append(next(iter(partitions)))
        assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == {0, 1, 2, 3}

        events = list(iter_shop_events(SyntheticConfig(seed=5, shops=4, customers_per_shop=30,
                                                       days=10)))
        publish_shop_events(settings, events)
        log = read_topic(kafka_bootstrap, names.log, expect=len(events), timeout=120)
        assert len(log) == len(events)
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.log_tail()

    # Both stopped cleanly, so every offset was committed: a new worker appends nothing.
    again = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "c"}),
                          ["--no-pipeline"]).start()
    try:
        wait_for(lambda: bool(_assignments(kafka_bootstrap, group)), 60, "the new worker")
        # A fresh event per shop, behind everything committed on its topic-partition.
        markers = [click(shop, 900 + n) for n, shop in enumerate(sorted({
            event.shop_id for event in events}))]
        publish_shop_events(settings, markers)
        log = read_topic(kafka_bootstrap, names.log, expect=len(events) + len(markers),
                         timeout=60, settle=3.0)
        assert len(log) == len(events) + len(markers), (
            f"{len(log) - len(events) - len(markers)} committed records appended again")
    finally:
        assert again.stop() == 0, again.log_tail()
