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
