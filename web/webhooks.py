"""Reward webhooks: reward-due and reversal events delivered to each shop's endpoint, signed,
retried with backoff and jitter, every attempt logged, dead-lettered after the budget.

The outbox (SQLite) is the one place delivery state lives. An event is enqueued once, with
its body serialised then and never again, so every attempt and every re-delivery after a
crash sends the same bytes; the idempotency key is the reward id (a reversal's: its
reversal id, also carrying the reward id). An attempt is written down before it is sent;
a worker killed mid-request leaves it `interrupted`, and the delivery is simply due again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from refstream.schemas.errors import EXIT_USAGE, DecodeError, RefstreamError
from refstream.schemas.events import RewardDue, RewardReversal
from refstream.schemas.status import LedgerEntry
from refstream.streams.settings import Settings

SIGNATURE_HEADER = "Refstream-Signature"
TIMESTAMP_HEADER = "Refstream-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EVENT_TYPE_HEADER = "Refstream-Event-Type"
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class WebhookConfigError(RefstreamError):
    """A webhook endpoint is misconfigured (no secret, or plain http to a remote host)."""

    exit_code: ClassVar[int] = EXIT_USAGE


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over "<timestamp>." + body (docs/serve.md: verifying)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: bytes, timestamp_header: str, signature_header: str, body: bytes, *,
           now_s: int, tolerance_s: int = 300) -> bool:
    """What a receiver does: recompute, compare in constant time, refuse stale timestamps."""
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        return False
    if abs(now_s - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature_header)


def webhook_body(event: RewardDue | RewardReversal) -> tuple[str, str, bytes]:
    """(idempotency key, event type, body): canonical JSON, sorted keys, no spaces."""
    if isinstance(event, RewardDue):
        key, kind = event.reward_id, "reward_due"
        payload: dict[str, Any] = {
            "type": kind, "reward_id": event.reward_id, "shop_id": event.shop_id,
            "referral_id": event.referral_id, "beneficiary_id": event.beneficiary_id,
            "side": event.side, "kind": event.kind, "amount_minor": event.amount_minor,
            "currency": event.currency, "due_at_ms": event.due_at,
            "occurred_at_ms": event.occurred_at, "reason": event.reason,
            "order_id": event.order_id, "rules_version": event.rules_version}
    else:
        key, kind = event.reversal_id, "reward_reversal"
        payload = {
            "type": kind, "reversal_id": event.reversal_id, "reward_id": event.reward_id,
            "shop_id": event.shop_id, "beneficiary_id": event.beneficiary_id,
            "amount_minor": event.amount_minor, "currency": event.currency,
            "occurred_at_ms": event.occurred_at, "reason": event.reason,
            "return_id": event.return_id, "rules_version": event.rules_version}
    return key, kind, json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: attempt n waits base*2^(n-1), capped, times a random
    factor in [0.5, 1]; no new attempt starts later than `budget_s` after the first."""

    base_s: float
    cap_s: float
    budget_s: float

    def delay_s(self, attempts: int, rng: random.Random) -> float:
        raw = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return float(raw * (0.5 + 0.5 * rng.random()))

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        return cls(settings.webhook_backoff_base_s, settings.webhook_backoff_cap_s,
                   settings.webhook_retry_budget_s)


def check_endpoint(url: str) -> None:
    parsed = httpx.URL(url)
    loopback = parsed.host in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise WebhookConfigError(f"webhook endpoint {url} must use https (plain http is "
                                 "accepted for 127.0.0.1/localhost only, for tests)")


class Outbox:
    """Deliveries and their attempts (SQLite, WAL; one worker process at a time)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS deliveries (
              shop_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, event_type TEXT NOT NULL,
              body BLOB NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
              enqueued_at REAL NOT NULL, first_attempt_at REAL, next_attempt_at REAL NOT NULL,
              delivered_at REAL, PRIMARY KEY (shop_id, idempotency_key));
            CREATE TABLE IF NOT EXISTS attempts (
              shop_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, attempt INTEGER NOT NULL,
              started_at REAL NOT NULL, finished_at REAL, outcome TEXT NOT NULL,
              http_status INTEGER, error TEXT,
              PRIMARY KEY (shop_id, idempotency_key, attempt));
            CREATE INDEX IF NOT EXISTS due ON deliveries (state, next_attempt_at);
        """)

    def close(self) -> None:
        self._db.close()

    def enqueue(self, event: RewardDue | RewardReversal, now: float) -> bool:
        """Add a delivery; False if this key was enqueued before (its body is kept as is)."""
        key, kind, body = webhook_body(event)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO deliveries (shop_id, idempotency_key, event_type, body, "
            "state, enqueued_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.shop_id, key, kind, body, PENDING, now, now))
        return cursor.rowcount > 0

    def recover(self, now: float) -> int:
        """After a crash: attempts that never finished are marked interrupted (the delivery
        stays pending and is due now)."""
        with self._db:
            self._db.execute("BEGIN")
            cursor = self._db.execute(
                "UPDATE attempts SET outcome = 'interrupted', finished_at = ? "
                "WHERE outcome = 'sending'", (now,))
            self._db.execute("UPDATE deliveries SET next_attempt_at = min(next_attempt_at, ?) "
                             "WHERE state = ?", (now, PENDING))
        return cursor.rowcount

    def due(self, now: float, limit: int = 100) -> list[tuple[str, str, str, bytes, int,
                                                              float | None]]:
        return self._db.execute(
            "SELECT shop_id, idempotency_key, event_type, body, attempts, first_attempt_at "
            "FROM deliveries WHERE state = ? AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, enqueued_at LIMIT ?", (PENDING, now, limit)).fetchall()

    def start_attempt(self, shop_id: str, key: str, attempt: int, now: float) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO attempts (shop_id, idempotency_key, attempt, "
                             "started_at, outcome) VALUES (?, ?, ?, ?, 'sending')",
                             (shop_id, key, attempt, now))
            self._db.execute("UPDATE deliveries SET attempts = ?, first_attempt_at = "
                             "coalesce(first_attempt_at, ?) WHERE shop_id = ? AND "
                             "idempotency_key = ?", (attempt, now, shop_id, key))

    def finish_attempt(self, shop_id: str, key: str, attempt: int, now: float, *,
                       outcome: str, http_status: int | None, error: str | None,
                       state: str, next_attempt_at: float) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("UPDATE attempts SET finished_at = ?, outcome = ?, "
                             "http_status = ?, error = ? WHERE shop_id = ? AND "
                             "idempotency_key = ? AND attempt = ?",
                             (now, outcome, http_status, error, shop_id, key, attempt))
            self._db.execute("UPDATE deliveries SET state = ?, next_attempt_at = ?, "
                             "delivered_at = CASE WHEN ? = 'delivered' THEN ? END "
                             "WHERE shop_id = ? AND idempotency_key = ?",
                             (state, next_attempt_at, state, now, shop_id, key))

    def deliveries(self) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT shop_id, idempotency_key, event_type, state, attempts, delivered_at "
            "FROM deliveries ORDER BY enqueued_at, idempotency_key").fetchall()

    def attempts(self) -> list[tuple[Any, ...]]:
        return self._db.execute(
            "SELECT shop_id, idempotency_key, attempt, outcome, http_status, error "
            "FROM attempts ORDER BY started_at, attempt").fetchall()

    def next_attempt_at(self, shop_id: str, key: str) -> float:
        row = self._db.execute("SELECT next_attempt_at FROM deliveries WHERE shop_id = ? "
                               "AND idempotency_key = ?", (shop_id, key)).fetchone()
        return float(row[0])

    def attempt_times(self, shop_id: str, key: str) -> list[float]:
        return [float(r[0]) for r in self._db.execute(
            "SELECT started_at FROM attempts WHERE shop_id = ? AND idempotency_key = ? "
            "ORDER BY attempt", (shop_id, key)).fetchall()]

    def pending_count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM deliveries WHERE state = ?",
                               (PENDING,)).fetchone()
        return int(row[0])


class Deliverer:
    """Sends due deliveries one at a time (per endpoint order is enqueue order)."""

    def __init__(self, outbox: Outbox, endpoints: dict[str, str], secrets: dict[str, bytes],
                 backoff: Backoff, *, timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 client: httpx.Client | None = None) -> None:
        for shop_id, url in endpoints.items():
            check_endpoint(url)
            if shop_id not in secrets:
                raise WebhookConfigError(f"no webhook secret for shop {shop_id!r}: set "
                                         "REFSTREAM_WEBHOOK_SECRETS")
        self.outbox, self.endpoints, self.secrets = outbox, endpoints, secrets
        self.backoff, self.clock = backoff, clock
        self.rng = rng or random.Random()
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)

    def deliver_due(self) -> int:
        """Attempt every delivery that is due now; how many attempts were made."""
        made = 0
        for shop_id, key, kind, body, attempts, first_at in self.outbox.due(self.clock()):
            url = self.endpoints.get(shop_id)
            if url is None:
                continue  # no endpoint for this shop: kept pending until one is configured
            self._attempt(shop_id, key, kind, body, attempt=attempts + 1, first_at=first_at,
                          url=url)
            made += 1
        return made

    def _attempt(self, shop_id: str, key: str, kind: str, body: bytes, *, attempt: int,
                 first_at: float | None, url: str) -> None:
        started = self.clock()
        self.outbox.start_attempt(shop_id, key, attempt, started)
        timestamp = int(started)
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key,
                   EVENT_TYPE_HEADER: kind, TIMESTAMP_HEADER: str(timestamp),
                   SIGNATURE_HEADER: sign(self.secrets[shop_id], timestamp, body),
                   "User-Agent": "refstream-webhooks/1"}
        status: int | None = None
        error: str | None = None
        try:
            response = self.client.post(url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        now = self.clock()
        if status is not None and 200 <= status < 300:
            self.outbox.finish_attempt(shop_id, key, attempt, now, outcome="ok",
                                       http_status=status, error=None, state=DELIVERED,
                                       next_attempt_at=now)
            return
        next_at = now + self.backoff.delay_s(attempt, self.rng)
        budget_end = (first_at if first_at is not None else started) + self.backoff.budget_s
        state = DEAD if next_at > budget_end else PENDING
        self.outbox.finish_attempt(shop_id, key, attempt, now, outcome="failed",
                                   http_status=status,
                                   error=error or f"HTTP {status}", state=state,
                                   next_attempt_at=next_at)


def enqueue_all(outbox: Outbox, events: Iterable[Any], now: float) -> int:
    return sum(outbox.enqueue(e, now) for e in events
               if isinstance(e, RewardDue | RewardReversal))


def deliverer_from_settings(settings: Settings, outbox: Outbox) -> Deliverer:
    secrets = {k: v.get_secret_value().encode() for k, v in settings.webhook_secrets.items()}
    return Deliverer(outbox, dict(settings.webhook_endpoints), secrets,
                     Backoff.from_settings(settings), timeout_s=settings.webhook_timeout_s)


# ------------------------------------------------------------------------------ sources


def rewards_from_snapshot(snapshot: Path) -> list[RewardDue | RewardReversal]:
    """The reward-due and reversal messages recorded in a projection database (embedded)."""
    import duckdb

    conn = duckdb.connect(str(snapshot), read_only=True)
    try:
        rows = conn.execute("""
            SELECT l.entry_type, l.entry_id, l.reward_id, l.shop_id,
                   epoch_ms(l.occurred_at), l.rules_version, l.beneficiary_id, l.amount_minor,
                   l.currency, l.reason, w.referral_id, w.side, w.kind, epoch_ms(w.due_at),
                   w.order_id
            FROM reward_ledger l JOIN rewards w ON w.reward_id = l.reward_id
            ORDER BY l.occurred_at, l.entry_id""").fetchall()
    finally:
        conn.close()
    found: list[RewardDue | RewardReversal] = []
    for (entry_type, entry_id, reward_id, shop_id, at, version, beneficiary, amount, currency,
         reason, referral_id, side, kind, due_at, order_id) in rows:
        if entry_type == LedgerEntry.DUE:
            found.append(RewardDue(reward_id, shop_id, at, version, referral_id, beneficiary,
                                   side, kind, amount, currency, due_at, reason, order_id))
        else:
            found.append(RewardReversal(entry_id, reward_id, shop_id, at, version, beneficiary,
                                        abs(amount), currency, reason, None))
    return found


def run_from_kafka(consumer: Any, outbox: Outbox, deliverer: Deliverer, codec: Any, *,
                   idle_exit_s: float | None = None, poll_ms: int = 200,
                   join_bound_s: float = 60.0) -> None:
    """Enqueue what `refstream.reward-due` holds (then commit the offsets: a crash repeats
    messages, and enqueueing a key twice keeps the first body), deliver what is due.

    Idle time counts from the consumer group's first assignment (at most `join_bound_s`
    after the start): a slow join must not use up `idle_exit_s` before anything was read."""
    outbox.recover(deliverer.clock())
    last_activity = time.monotonic()
    join_by = last_activity + join_bound_s
    while idle_exit_s is None or time.monotonic() - last_activity < idle_exit_s:
        batch = consumer.poll(timeout_ms=poll_ms)
        if not batch and not consumer.assignment() and time.monotonic() < join_by:
            last_activity = time.monotonic()  # not idle: not reading yet
        events = [event for records in batch.values() for record in records
                  if (event := _decoded(codec, record)) is not None]
        if batch:
            enqueue_all(outbox, events, deliverer.clock())
            consumer.commit()
        if deliverer.deliver_due() or batch or outbox.pending_count():
            last_activity = time.monotonic()


def _decoded(codec: Any, record: Any) -> Any:
    """The event of a reward-due record; a record no schema decodes is reported and passed
    over (it names its topic, partition and offset), never a reason to stop delivering."""
    if not record.value:
        return None
    try:
        return codec.decode(record.value)
    except DecodeError as exc:
        print(f"refstream webhooks: passed over {record.topic}/{record.partition}@"
              f"{record.offset}: {exc}", file=sys.stderr)
        return None


def run_from_snapshot(snapshot: Path, outbox: Outbox, deliverer: Deliverer, *,
                      every_s: float = 2.0, idle_exit_s: float | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Embedded: re-read the published snapshot every `every_s`, enqueue new messages,
    deliver what is due."""
    outbox.recover(deliverer.clock())
    last_activity = time.monotonic()
    while idle_exit_s is None or time.monotonic() - last_activity < idle_exit_s:
        added = 0
        if snapshot.is_file():
            added = enqueue_all(outbox, rewards_from_snapshot(snapshot), deliverer.clock())
        if deliverer.deliver_due() or added or outbox.pending_count():
            last_activity = time.monotonic()
        sleep(every_s)
