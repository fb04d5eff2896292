"""End to end on the real broker: `refstream serve` publishes a followed link to shop.click,
the worker attributes it and, once the hold period has passed, emits the rewards due, and
`refstream webhooks run --source kafka` delivers each reward id exactly once to a real
receiver process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from refstream.rewards.rules import default_rules_path, load_rules
from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue
from refstream.schemas.shop import ShopClick, ShopCodeIssued, ShopOrder, ShopSignup
from refstream.streams.producer import kafka_producer, publish_shop_events
from refstream.streams.topics import ensure_topics
from refstream.web.app import create_app
from tests.failure.test_webhook_delivery import received
from tests.integration.kafka_helpers import (
    WorkerProcess,
    isolated_settings,
    read_topic,
    settings_env,
    topic_names,
    wait_for,
)
from tests.unit.web.server import API_KEY, SHOP, free_port, running

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "whsec-e2e-51d0"
CLICKED_AT = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)


def test_serve_click_worker_reward_due_webhook_once(kafka_bootstrap: str,
                                                    tmp_path: Path) -> None:
    port = free_port()
    settings = isolated_settings(
        kafka_bootstrap, tmp_path / "state", tick_interval_s=0, web_publish_to="kafka",
        web_public_url=f"http://127.0.0.1:{port}", web_registry=tmp_path / "registry.sqlite",
        web_api_keys={SHOP: API_KEY})
    ensure_topics(settings)
    names = topic_names(settings)
    codec = Codec()
    clock_ms = int(CLICKED_AT.timestamp() * 1000)
    app = create_app(settings, load_rules(default_rules_path()), clock=lambda: clock_ms)
    with running(app, port) as base:
        issued = httpx.post(f"{base}/api/v1/codes", json={
            "shop_id": SHOP, "referrer_id": "cust-000042", "campaign_id": "friends"},
            headers={"Authorization": f"Bearer {API_KEY}"}).json()
        followed = httpx.get(issued["link"], headers={"User-Agent": "Firefox/140"})
        assert followed.status_code == 302
        visitor = followed.cookies["rs_visitor"]

    [issue_record] = read_topic(kafka_bootstrap, names.shop("code_issued"), expect=1)
    issued_event = codec.decode(issue_record.value)
    assert isinstance(issued_event, ShopCodeIssued) and issued_event.referral_code == \
        issued["code"]
    [click_record] = read_topic(kafka_bootstrap, names.shop("click"), expect=1)
    click = codec.decode(click_record.value)
    assert isinstance(click, ShopClick)
    assert (click.visitor_id, click.referral_code, click.utm_campaign) == (
        visitor, issued["code"], "friends")

    # The friend signs up and orders; a later visit moves the shop past the hold period.
    signed_up = CLICKED_AT + timedelta(minutes=3)
    publish_shop_events(settings, [
        ShopSignup(event_id="e2e-signup", shop_id=SHOP, occurred_at=signed_up,
                   customer_id="cust-009001", email="friend@example.org", ip="198.51.100.7",
                   visitor_id=visitor),
        ShopOrder(event_id="e2e-order", shop_id=SHOP, occurred_at=signed_up + timedelta(hours=1),
                  order_id="ord-e2e", customer_id="cust-009001", amount_minor=4599,
                  currency="EUR", ip="198.51.100.7", visitor_id=visitor),
        ShopClick(event_id="e2e-later-visit", shop_id=SHOP,
                  occurred_at=signed_up + timedelta(days=32), visitor_id="v-later",
                  landing_url="https://shop-001.example/", ip="203.0.113.5",
                  user_agent="Firefox/140"),
    ])

    hook_port = free_port()
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).parents[1] / "failure" /
                                                     "webhook_receiver.py"),
                                 str(hook_port), SECRET, str(tmp_path)])
    worker = WorkerProcess(settings).start()
    env = {**os.environ, **settings_env(settings),
           "REFSTREAM_WEBHOOK_ENDPOINTS": json.dumps(
               {SHOP: f"http://127.0.0.1:{hook_port}/hook"}),
           "REFSTREAM_WEBHOOK_SECRETS": json.dumps({SHOP: SECRET}),
           "REFSTREAM_WEBHOOK_OUTBOX": str(tmp_path / "outbox.sqlite")}
    try:
        due_records = read_topic(kafka_bootstrap, names.reward_due, expect=2, timeout=120)
        due_ids = {e.reward_id for e in map(codec.decode, (r.value for r in due_records))
                   if isinstance(e, RewardDue)}
        assert len(due_ids) == 2  # the referrer's and the referee's rewards
        # A foreign record on the topic is reported and passed over, not a stop.
        producer = kafka_producer(settings)
        producer.send(names.reward_due, key=SHOP.encode(), value=b"not a refstream record")
        producer.flush()
        producer.close()
        hooks = subprocess.run([sys.executable, "-m", "refstream.cli", "webhooks",
                                "run", "--source", "kafka", "--idle-exit", "5"],
                               env=env, timeout=180, check=False, capture_output=True,
                               text=True)
        assert hooks.returncode == 0, hooks.stderr
        assert "passed over" in hooks.stderr
        wait_for(lambda: len(received(tmp_path)) >= len(due_ids), 30, "webhooks")
    finally:
        assert worker.stop() == 0, worker.log_tail()
        receiver.kill()
        receiver.wait(timeout=30)

    seen = received(tmp_path)
    assert Counter(r["key"] for r in seen) == dict.fromkeys(due_ids, 1)
    assert all(r["valid"] and r["status"] == 200 for r in seen)
    bodies = [json.loads(str(r["body"])) for r in seen]
    assert {(b["side"], b["amount_minor"]) for b in bodies} == {("referrer", 1000),
                                                                ("referee", 500)}
    assert {b["beneficiary_id"] for b in bodies} == {"cust-000042", "cust-009001"}
