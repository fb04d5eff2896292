"""The webhook deliverer against a real HTTP receiver in a thread: signing as documented,
backoff with jitter, dead letter after the budget, byte-identical re-enqueues."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from refstream.schemas.events import RewardDue, RewardReversal
from refstream.web.webhooks import (
    DEAD,
    DELIVERED,
    Backoff,
    Deliverer,
    Outbox,
    WebhookConfigError,
    check_endpoint,
    sign,
    verify,
    webhook_body,
)

SECRET = b"whsec-unit"
DUE = RewardDue("rw-1", "shop-1", 1_790_000_000_000, "v1", "ref-1", "cust-1", "referrer",
                "credit", 1000, "EUR", 1_792_000_000_000, "first order", "ord-1")
REVERSAL = RewardReversal("rv-1", "rw-1", "shop-1", 1_793_000_000_000, "v1", "cust-1", 1000,
                          "EUR", "returned", "ret-1")


class Receiver:
    def __init__(self) -> None:
        self.statuses: list[int] = []  # answers to give, in order; then 200
        self.seen: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.seen.append((dict(self.headers.items()), body))
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def deliverer(tmp_path: Path, url: str, clock: Clock, backoff: Backoff) -> Deliverer:
    return Deliverer(Outbox(tmp_path / "outbox.sqlite"), {"shop-1": url}, {"shop-1": SECRET},
                     backoff, clock=clock, rng=random.Random(1))


def test_signature_verifies_as_documented(receiver: tuple[str, Receiver],
                                          tmp_path: Path) -> None:
    url, state = receiver
    clock = Clock()
    sender = deliverer(tmp_path, url, clock, Backoff(1, 10, 100))
    assert sender.outbox.enqueue(DUE, clock())
    assert sender.deliver_due() == 1
    [(headers, body)] = state.seen
    assert body == webhook_body(DUE)[2]
    assert headers["Idempotency-Key"] == "rw-1"
    assert verify(SECRET, headers["Refstream-Timestamp"], headers["Refstream-Signature"],
                  body, now_s=int(clock()))
    assert not verify(b"other", headers["Refstream-Timestamp"],
                      headers["Refstream-Signature"], body, now_s=int(clock()))
    assert not verify(SECRET, headers["Refstream-Timestamp"], headers["Refstream-Signature"],
                      body + b" ", now_s=int(clock()))
    # A replayed request is refused once its timestamp is stale.
    assert not verify(SECRET, headers["Refstream-Timestamp"], headers["Refstream-Signature"],
                      body, now_s=int(clock()) + 301)
    assert headers["Refstream-Signature"] == sign(SECRET, int(clock()), body)


def test_enqueueing_again_keeps_the_first_body(tmp_path: Path) -> None:
    key, kind, body = webhook_body(REVERSAL)
    assert (key, kind) == ("rv-1", "reward_reversal")
    assert b'"reward_id":"rw-1"' in body
    outbox = Outbox(tmp_path / "outbox.sqlite")
    assert outbox.enqueue(DUE, 1.0) and outbox.enqueue(REVERSAL, 1.0)
    # The same reward id re-read (a worker re-emitted it, or with another field value):
    # nothing new is enqueued, the stored body stays.
    assert not outbox.enqueue(DUE, 2.0)
    assert not outbox.enqueue(dataclasses.replace(DUE, reason="changed"), 3.0)
    stored = {row[1]: row[3] for row in outbox.due(10.0)}
    assert stored == {"rw-1": webhook_body(DUE)[2], "rv-1": body}


def test_retries_back_off_with_jitter_then_deliver(receiver: tuple[str, Receiver],
                                                   tmp_path: Path) -> None:
    url, state = receiver
    state.statuses = [500, 503, 502]
    clock = Clock()
    sender = deliverer(tmp_path, url, clock, Backoff(10, 1000, 26 * 3600))
    sender.outbox.enqueue(DUE, clock())
    waits = []
    while sender.outbox.pending_count():
        assert sender.deliver_due() == 1
        due_at = sender.outbox.next_attempt_at("shop-1", "rw-1")
        waits.append(due_at - clock.now)
        assert sender.deliver_due() == 0  # nothing is due before its time
        clock.now = due_at
    # base * 2^(n-1), times a jitter factor in [0.5, 1]
    assert 5 <= waits[0] <= 10 and 10 <= waits[1] <= 20 and 20 <= waits[2] <= 40
    bodies = {body for _, body in state.seen}
    assert len(state.seen) == 4 and len(bodies) == 1
    assert sender.outbox.deliveries()[0][3] == DELIVERED
    outcomes = [(a[3], a[4]) for a in sender.outbox.attempts()]
    assert outcomes == [("failed", 500), ("failed", 503), ("failed", 502), ("ok", 200)]


def test_dead_letter_after_the_retry_budget(receiver: tuple[str, Receiver],
                                            tmp_path: Path) -> None:
    url, state = receiver
    state.statuses = [500] * 1000
    clock = Clock()
    budget = 24 * 3600.0
    sender = deliverer(tmp_path, url, clock, Backoff(30, 3600, budget))
    sender.outbox.enqueue(DUE, clock())
    started = clock.now
    while sender.outbox.pending_count():
        sender.deliver_due()
        clock.now = sender.outbox.next_attempt_at("shop-1", "rw-1")
    [delivery] = sender.outbox.deliveries()
    assert delivery[3] == DEAD
    tries = sender.outbox.attempt_times("shop-1", "rw-1")
    # Retried for the whole budget (>= 24 h minus one capped wait), and not beyond it.
    assert budget - 3600 <= tries[-1] - started <= budget
    assert 25 <= len(tries) <= 60
    assert all(outcome == "failed" for _, _, _, outcome, _, _ in sender.outbox.attempts())


def test_plain_http_only_to_loopback() -> None:
    check_endpoint("https://hooks.shop.example/refstream")
    check_endpoint("http://127.0.0.1:9000/hook")
    with pytest.raises(WebhookConfigError, match="https"):
        check_endpoint("http://hooks.shop.example/refstream")
