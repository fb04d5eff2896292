"""The pipeline stage in a process of its own (ingest in another): the core's exact outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.streams.producer import publish_shop_events
from refstream.streams.topics import TopicNames, ensure_topics
from refstream.tools.synthetic import SyntheticConfig, iter_shop_events
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic
from tests.integration.pipeline_expectations import (
    expected_outputs,
    received,
    same_messages_per_key,
)

pytestmark = pytest.mark.integration
RULES = load_rules(default_rules_path())


def test_ingest_and_pipeline_as_separate_processes(kafka_bootstrap: str,
                                                   tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, tick_interval_s=0)
    names = TopicNames.from_settings(settings)
    ensure_topics(settings)
    events = list(iter_shop_events(SyntheticConfig(seed=21, shops=3, customers_per_shop=80,
                                                   days=15)))
    # The pipeline process first: it starts with faust's own consumer left out. It runs on
    # uvloop (the default), ingest on the standard library's loop: the same results.
    pipeline = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "pipeline"}),
                             ["--no-ingest"]).start()
    ingest = WorkerProcess(settings.model_copy(update={"data_dir": tmp_path / "ingest",
                                                       "event_loop": "aio"}),
                           ["--no-pipeline"]).start()
    try:
        publish_shop_events(settings, events)
        log_records = read_topic(kafka_bootstrap, names.log, expect=len(events), timeout=120)
        want = expected_outputs(log_records, RULES, names)
        assert sum(len(v) for v in want.values()) > 50
        for topic, messages in want.items():
            got = read_topic(kafka_bootstrap, topic, expect=len(messages), timeout=120,
                             settle=1.0)
            assert len(got) == len(messages), topic
            assert same_messages_per_key(received(got), messages), topic
    finally:
        assert ingest.stop() == 0, ingest.log_tail()
        assert pipeline.stop() == 0, pipeline.log_tail()
    assert "final checkpoint committed" in pipeline.log_tail(400)
    assert "(event loop: uvloop)" in pipeline.log_tail(100_000)
    assert "(event loop: asyncio." in ingest.log_tail(100_000)
