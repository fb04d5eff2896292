"""The reference finance consumer (`refstream finance-tail`): pays each reward id exactly once.

Finance reads `refstream.reward-due`; a message may arrive twice (a worker re-emits after a
crash), always byte-identical. The payer records every id it acted on in its own ledger,
in the same transaction as the payment, and only then commits its Kafka offset; a repeated
id is skipped, a repeated id with a different payload is a conflict to investigate.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refstream.schemas.codec import Codec
from refstream.schemas.events import RewardDue, RewardReversal


@dataclass(frozen=True)
class PaymentOutcome:
    action: str  # "paid", "clawed_back", "duplicate", "conflict", "ignored"
    message_id: str
    beneficiary_id: str = ""
    amount_minor: int = 0
    currency: str = ""


class FinanceLedger:
    """The payer's own record of what it paid and clawed back (SQLite, one transaction each)."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS handled (message_id TEXT PRIMARY KEY, kind TEXT,"
            " reward_id TEXT, beneficiary_id TEXT, amount_minor INTEGER, currency TEXT,"
            " payload_sha256 TEXT, handled_at REAL)")

    def handle(self, value: bytes, codec: Codec) -> PaymentOutcome:
        event = codec.decode(value)
        if isinstance(event, RewardDue):
            message_id, kind, sign = event.reward_id, "payment", 1
        elif isinstance(event, RewardReversal):
            message_id, kind, sign = event.reversal_id, "clawback", -1
        else:
            return PaymentOutcome("ignored", type(event).__name__)
        # The same message in another framing (registry vs single-object, or the header
        # refstream wrote byte-reversed before its fix) is the same payload, not a conflict.
        digests = [hashlib.sha256(form).hexdigest() for form in codec.canonical_forms(value)]
        digest = digests[0]
        seen = self._db.execute("SELECT payload_sha256 FROM handled WHERE message_id = ?",
                                (message_id,)).fetchone()
        if seen is not None:
            return PaymentOutcome("duplicate" if seen[0] in digests else "conflict", message_id)
        self._db.execute(
            "INSERT INTO handled VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message_id, kind, event.reward_id, event.beneficiary_id,
             sign * event.amount_minor, event.currency, digest, time.time()))
        return PaymentOutcome("paid" if sign > 0 else "clawed_back", message_id,
                              event.beneficiary_id, sign * event.amount_minor, event.currency)

    def totals(self) -> dict[str, int]:
        return {currency: int(total) for currency, total in self._db.execute(
            "SELECT currency, sum(amount_minor) FROM handled GROUP BY currency ORDER BY 1")}

    def close(self) -> None:
        self._db.close()


class EmbeddedPayer:
    """The reference payer fed in-process by the embedded runner instead of from Kafka:
    the same ledger decisions, with each payment also written to the `payouts` table."""

    def __init__(self, ledger: FinanceLedger, codec: Codec,
                 record_payout: Callable[[tuple[Any, ...]], None]) -> None:
        self._ledger, self._codec, self._record = ledger, codec, record_payout

    def offer(self, event: Any) -> None:
        if not isinstance(event, RewardDue | RewardReversal):
            return
        outcome = self._ledger.handle(self._codec.encode(event), self._codec)
        if outcome.action == "paid" and isinstance(event, RewardDue):
            self._record((event.reward_id, event.shop_id, event.beneficiary_id,
                          event.amount_minor, event.currency, event.due_at))


def tail(consumer: Any, ledger: FinanceLedger, codec: Codec,
         report: Callable[[PaymentOutcome], None], idle_exit_s: float | None = None) -> int:
    """Consume until stopped (or idle for `idle_exit_s`); returns the number of conflicts."""
    conflicts = 0
    last_message = time.monotonic()
    while idle_exit_s is None or time.monotonic() - last_message < idle_exit_s:
        batch = consumer.poll(timeout_ms=500)
        for records in batch.values():
            for record in records:
                outcome = ledger.handle(record.value, codec)
                conflicts += outcome.action == "conflict"
                report(outcome)
        if batch:
            consumer.commit()  # after the ledger: a crash repeats messages, never loses them
            last_message = time.monotonic()
    return conflicts


class BoundedConsumer:
    """A kafka-python consumer for `tail` whose waits are bounded: a commit gets at most
    `bound_s`, and while polls come back empty the broker is asked for the partitions' end
    offsets every `check_every_s`, so a broker gone for longer than `bound_s` raises
    `BrokerUnavailable` (exit 4) instead of an endless quiet wait."""

    def __init__(self, consumer: Any, bootstrap: str, bound_s: float,
                 check_every_s: float = 5.0, metrics: Any = None) -> None:
        self.consumer, self.bootstrap = consumer, bootstrap
        self.bound_s, self.check_every_s = bound_s, check_every_s
        self.metrics = metrics  # streams.metrics.ProcessMetrics: records in, lag
        self._answered = time.monotonic()
        self._checked = time.monotonic()

    def poll(self, timeout_ms: int) -> Any:
        from kafka.errors import KafkaError

        batch = self.consumer.poll(timeout_ms=timeout_ms)
        now = time.monotonic()
        if batch:
            self._answered = now
            if self.metrics is not None:
                for tp, records in batch.items():
                    self.metrics.events_in.labels(tp.topic).inc(len(records))
        if now - self._checked >= self.check_every_s:
            self._checked = now
            # Without partitions (more finance consumers than partitions) there is nothing
            # to ask; a broker gone at the start already failed the consumer's bootstrap.
            assigned = list(self.consumer.assignment())
            if assigned:
                try:
                    ends = self.consumer.end_offsets(assigned,
                                                     timeout_ms=int(self.check_every_s * 1000))
                except KafkaError as exc:
                    self._raise_if_gone(exc)
                else:
                    self._answered = now
                    self._record_lag(ends)
        return batch

    def _record_lag(self, ends: dict[Any, int]) -> None:
        if self.metrics is None:
            return
        for tp, end in ends.items():
            position = self.consumer.position(tp, timeout_ms=1000)
            if position is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, end - position))

    def commit(self) -> None:
        from kafka.errors import KafkaError

        from refstream.streams.exit_codes import broker_error

        try:
            self.consumer.commit(timeout_ms=int(self.bound_s * 1000))
        except KafkaError as exc:
            raise broker_error("committing finance's offsets (payments are in the ledger; "
                               "repeats on restart are skipped)", self.bootstrap, exc,
                               self.bound_s) from exc
        self._answered = time.monotonic()

    def _raise_if_gone(self, cause: BaseException) -> None:
        from refstream.streams.exit_codes import broker_error

        if time.monotonic() - self._answered >= self.bound_s:
            raise broker_error("reading reward-due", self.bootstrap, cause, self.bound_s)
