"""`refstream review approve|reject --bootstrap` on the real broker: the decision is published
to shop.review and ingest appends it to the canonical log as a ReviewDecided event."""

from __future__ import annotations

from pathlib import Path

import pytest

from refstream.cli.main import main
from refstream.schemas.codec import Codec
from refstream.schemas.events import ReviewDecided
from refstream.streams.exit_codes import EXIT_OK
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_topic,
    settings_env,
)

pytestmark = pytest.mark.integration


def test_a_decision_reaches_the_canonical_log(kafka_bootstrap: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data")
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    for decision, referral in (("approve", "ref-a"), ("reject", "ref-b")):
        assert main(["review", decision, referral, "--reviewer", "ana", "--note", "checked",
                     "--shop", "shop-1", "--at", "2026-11-05T10:00:00Z",
                     "--bootstrap", kafka_bootstrap]) == EXIT_OK
    worker = WorkerProcess(settings, ["--no-pipeline"]).start()
    try:
        records = read_topic(kafka_bootstrap, f"{settings.topic_prefix}.log", expect=2,
                             settle=1.0)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    decided = sorted((Codec().decode(r.value) for r in records),
                     key=lambda e: e.referral_id)
    assert all(isinstance(e, ReviewDecided) for e in decided)
    assert [(e.shop_id, e.referral_id, e.decision, e.reviewer_id, e.note) for e in decided] == [
        ("shop-1", "ref-a", "approve", "ana", "checked"),
        ("shop-1", "ref-b", "reject", "ana", "checked")]
    assert {e.occurred_at for e in decided} == {1_793_872_800_000}  # 2026-11-05T10:00:00Z
