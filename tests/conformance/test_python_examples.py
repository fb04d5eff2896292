"""The Python producer examples of docs/producers.md, run as written against the real broker,
and refstream's ingest puts what they publish into the canonical log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from refstream.schemas.codec import Codec
from refstream.streams.topics import TopicNames, ensure_topics
from tests.conformance.java_program import AVRO_DIR
from tests.integration.kafka_helpers import WorkerProcess, isolated_settings, read_topic

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).parent / "examples"


def run_example(name: str, *args: str) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


def ingest(settings_dir: Path, bootstrap: str, publish: list[tuple[str, list[str]]],
           **options: object) -> list[str]:
    settings = isolated_settings(bootstrap, settings_dir, **options)
    ensure_topics(settings)
    names = TopicNames.from_settings(settings)
    for example, args in publish:
        run_example(example, *args, names.shop("order"))
    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    try:
        log = read_topic(bootstrap, names.log, expect=len(publish), settle=1.0)
        dlq = read_topic(bootstrap, names.dlq, timeout=2.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    codec = Codec()
    assert dlq == [], [codec.decode(r.value).error for r in dlq]
    return sorted(codec.decode(r.value).event_id for r in log)


def test_python_single_object_example_reaches_the_log(kafka_bootstrap: str,
                                                      tmp_path: Path) -> None:
    assert ingest(tmp_path, kafka_bootstrap,
                  [("publish_single_object.py", [kafka_bootstrap, str(AVRO_DIR)])]) == ["e-83"]


def test_python_registry_example_reaches_the_log(kafka_bootstrap: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 schema_registry_url: str) -> None:
    url = schema_registry_url
    monkeypatch.setenv("REFSTREAM_SCHEMA_REGISTRY_URL", url)  # the worker's setting
    assert ingest(tmp_path, kafka_bootstrap,
                  [("publish_with_registry.py", [kafka_bootstrap, url, str(AVRO_DIR)])],
                  schema_registry_url=url) == ["e-82"]
