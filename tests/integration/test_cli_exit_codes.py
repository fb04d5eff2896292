"""Exit codes of the real `refstream` against the real broker: `produce` of a file whose
content is refused is 3 (`file:line` says where), the same file with --skip-invalid is 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refstream.streams.exit_codes import EXIT_INPUT_REJECTED, EXIT_OK
from tests.integration.kafka_helpers import isolated_settings, settings_env

pytestmark = pytest.mark.integration

REFSTREAM = str(Path(sys.executable).with_name("refstream"))
ORDER = {"event_type": "order", "event_id": "e-1", "shop_id": "shop-1",
         "occurred_at": "2026-10-03T12:30:00.000Z", "order_id": "o-1", "customer_id": "c-1",
         "amount_minor": 4599, "currency": "EUR", "ip": "203.0.113.9"}


def test_produce_exits_3_on_a_refused_line_and_0_when_told_to_skip(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    env = {**os.environ, **settings_env(settings), "CI": "1"}
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(ORDER) + "\n"
                      + json.dumps(ORDER | {"event_id": "e-2", "amount_minor": "45.99"}) + "\n",
                      encoding="utf-8")

    refused = subprocess.run([REFSTREAM, "produce", str(events)], env=env, capture_output=True,
                             text=True, timeout=300, check=False)
    assert refused.returncode == EXIT_INPUT_REJECTED, refused.stderr[-2000:]
    assert f"{events}:2:" in refused.stderr and "amount_minor" in refused.stderr
    assert "Traceback" not in refused.stderr

    skipped = subprocess.run([REFSTREAM, "produce", str(events), "--skip-invalid"], env=env,
                             capture_output=True, text=True, timeout=300, check=False)
    assert skipped.returncode == EXIT_OK, skipped.stderr[-2000:]
    assert f"{events}:2: skipped" in skipped.stderr
    assert "published 1 events" in skipped.stdout
