"""The upgrade path from ingest as a faust agent to the ingest stage, on the real broker:
a first start of the stage reads the shop topics on from the offsets faust's group (the app
id) committed, and a later start keeps the stage group's own offsets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.structs import OffsetAndMetadata

from refstream.schemas.codec import Codec
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics, stage_group
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic, wait_for
from tests.integration.test_ingest_kafka import click

pytestmark = pytest.mark.integration
CODEC = Codec()


def _end_offsets(bootstrap: str, topics: Sequence[str], *,
                 commit_as: str | None = None) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics`; with `commit_as`, also committed for
    that group by a consumer outside any generation (how faust's group looks to a new stage)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=commit_as,
                             enable_auto_commit=False)
    try:
        def known() -> bool:
            return all(consumer.partitions_for_topic(topic) for topic in topics)

        wait_for(known, 30, "metadata of every shop topic")
        tps = [TopicPartition(topic, p) for topic in topics
               for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
        if commit_as is not None:
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in ends.items()})
    finally:
        consumer.close()
    return ends


def _group_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {tp: meta.offset for tp, meta in admin.list_group_offsets(group)[group].items()}
    finally:
        admin.close()


def test_an_upgraded_deployment_resumes_where_fausts_group_left_off(kafka_bootstrap: str,
                                                                   tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2, tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    events = list(iter_shop_events(SyntheticConfig(seed=8, shops=3, customers_per_shop=20,
                                                   days=10)))
    before, after = events[:len(events) // 2], events[len(events) // 2:]
    publish_shop_events(settings, before)
    legacy = _end_offsets(kafka_bootstrap, names.shop_topics, commit_as=settings.app_id)
    # faust's group had consumed all of `before`, spread over both partitions.
    assert sum(legacy.values()) == len(before), legacy
    assert {tp.partition for tp, offset in legacy.items() if offset} == {0, 1}, legacy
    publish_shop_events(settings, after)

    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    try:
        log = read_topic(kafka_bootstrap, names.log, expect=len(after), timeout=90, settle=3.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    ids = [str(getattr(CODEC.decode_log_event(record.value), "event_id", None))
           for record in log]
    assert sorted(ids) == sorted(event.event_id for event in after), (
        f"{len(set(ids) - {e.event_id for e in after})} records faust had consumed appended "
        f"again, {len({e.event_id for e in after} - set(ids))} missing")

    # The stage's own offsets now lead; a second start keeps them (faust's, still lower, are
    # not copied again): a fresh event per shop is the only thing appended.
    group = stage_group(settings.app_id, "ingest")
    own = _group_offsets(kafka_bootstrap, group)
    assert own == _end_offsets(kafka_bootstrap, names.shop_topics) != legacy, (own, legacy)
    again = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "again"}),
                          ["--no-pipeline"]).start()
    try:
        markers = [click(shop, 900 + n)
                   for n, shop in enumerate(sorted({event.shop_id for event in events}))]
        publish_shop_events(settings, markers)
        log = read_topic(kafka_bootstrap, names.log, expect=len(after) + len(markers),
                         timeout=60, settle=3.0)
    finally:
        assert again.stop() == 0, again.log_tail()
    assert len(log) == len(after) + len(markers), (
        f"{len(log) - len(after) - len(markers)} records appended again by the second start")
