"""The edge's own records (SQLite): which code belongs to whom, and the status-page secrets.

The canonical log is the truth for attribution (every issue is a `code_issued` event); this
table lets `/r/{code}` find a code's shop and campaign without reading the log. Secrets are
kept only as SHA-256 digests, so a copy of this file opens no status page.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from refstream.web.codes import new_code

STATUS_SECRET_BYTES = 32  # 256 bits, URL-safe base64: unguessable


@dataclass(frozen=True)
class IssuedCode:
    code: str
    shop_id: str
    referrer_id: str
    campaign_id: str | None
    issued_at_ms: int
    event_id: str


@dataclass(frozen=True)
class StatusHolder:
    shop_id: str
    referrer_id: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Registry:
    """Codes and status secrets; safe to share between the threads of one server process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS codes (
              code TEXT PRIMARY KEY, shop_id TEXT NOT NULL, referrer_id TEXT NOT NULL,
              campaign_key TEXT NOT NULL, issued_at_ms INTEGER NOT NULL, event_id TEXT NOT NULL,
              UNIQUE (shop_id, referrer_id, campaign_key));
            CREATE TABLE IF NOT EXISTS status_secrets (
              digest TEXT PRIMARY KEY, shop_id TEXT NOT NULL, referrer_id TEXT NOT NULL,
              created_at_ms INTEGER NOT NULL, revoked_at_ms INTEGER);
        """)
        self._by_code: dict[str, IssuedCode] = {}

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------------ codes

    def cached(self, code: str) -> IssuedCode | None:
        """A code this process has seen, spelled exactly as issued (no database read)."""
        return self._by_code.get(code)

    def code(self, code: str) -> IssuedCode | None:
        cached = self._by_code.get(code)
        if cached is not None:
            return cached
        with self._lock:
            row = self._db.execute(
                "SELECT code, shop_id, referrer_id, campaign_key, issued_at_ms, event_id "
                "FROM codes WHERE code = ?", (code,)).fetchone()
        if row is None:
            return None
        issued = _issued(row)
        self._by_code[code] = issued
        return issued

    def code_of(self, shop_id: str, referrer_id: str, campaign_id: str | None) -> IssuedCode | None:
        with self._lock:
            row = self._db.execute(
                "SELECT code, shop_id, referrer_id, campaign_key, issued_at_ms, event_id "
                "FROM codes WHERE shop_id = ? AND referrer_id = ? AND campaign_key = ?",
                (shop_id, referrer_id, campaign_id or "")).fetchone()
        return _issued(row) if row else None

    def codes_of(self, shop_id: str, referrer_id: str) -> list[IssuedCode]:
        with self._lock:
            rows = self._db.execute(
                "SELECT code, shop_id, referrer_id, campaign_key, issued_at_ms, event_id "
                "FROM codes WHERE shop_id = ? AND referrer_id = ? ORDER BY issued_at_ms, code",
                (shop_id, referrer_id)).fetchall()
        return [_issued(r) for r in rows]

    def unused_code(self) -> str:
        """A fresh code no issued code has taken."""
        while True:
            code = new_code()
            if self.code(code) is None:
                return code

    def record(self, issued: IssuedCode) -> tuple[IssuedCode, bool]:
        """Keep a code its `code_issued` event already published: (the referrer's code for the
        campaign, True if it is this one). One code per (shop, referrer, campaign): when a
        racing request recorded another first, that one stands (this one stays unused)."""
        with self._lock:
            try:
                self._db.execute("INSERT INTO codes VALUES (?, ?, ?, ?, ?, ?)",
                                 (issued.code, issued.shop_id, issued.referrer_id,
                                  issued.campaign_id or "", issued.issued_at_ms,
                                  issued.event_id))
            except sqlite3.IntegrityError:
                pass
            else:
                self._by_code[issued.code] = issued
                return issued, True
        existing = self.code_of(issued.shop_id, issued.referrer_id, issued.campaign_id)
        if existing is None:  # the random code itself was taken meanwhile (~2^-49)
            raise sqlite3.IntegrityError(f"code {issued.code} was issued twice; retry")
        return existing, False

    def adopt(self, code: str, shop_id: str, referrer_id: str, campaign_id: str | None, *,
              at_ms: int, event_id: str) -> bool:
        """Record a code the log already gives an owner (a share before the edge existed),
        so its status page counts its clicks; nothing is published. False if known."""
        with self._lock:
            cursor = self._db.execute("INSERT OR IGNORE INTO codes VALUES (?, ?, ?, ?, ?, ?)",
                                      (code, shop_id, referrer_id, campaign_id or "", at_ms,
                                       event_id))
        return cursor.rowcount > 0

    # ---------------------------------------------------------------- status secrets

    def new_status_secret(self, shop_id: str, referrer_id: str, now_ms: int) -> str:
        secret = secrets.token_urlsafe(STATUS_SECRET_BYTES)
        with self._lock:
            self._db.execute("INSERT INTO status_secrets VALUES (?, ?, ?, ?, NULL)",
                             (_digest(secret), shop_id, referrer_id, now_ms))
        return secret

    def status_holder(self, secret: str) -> StatusHolder | None:
        """Whose status page a secret opens; None if unknown or revoked."""
        with self._lock:
            row = self._db.execute(
                "SELECT shop_id, referrer_id FROM status_secrets "
                "WHERE digest = ? AND revoked_at_ms IS NULL", (_digest(secret),)).fetchone()
        return StatusHolder(row[0], row[1]) if row else None

    def revoke_status_secrets(self, shop_id: str, referrer_id: str, now_ms: int) -> int:
        """Revoke every live status secret of a referrer; how many were revoked."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE status_secrets SET revoked_at_ms = ? WHERE shop_id = ? "
                "AND referrer_id = ? AND revoked_at_ms IS NULL", (now_ms, shop_id, referrer_id))
        return cursor.rowcount

    def revoke_status_secret(self, secret: str, now_ms: int) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE status_secrets SET revoked_at_ms = ? WHERE digest = ? "
                "AND revoked_at_ms IS NULL", (now_ms, _digest(secret)))
        return cursor.rowcount > 0


def _issued(row: tuple[str, str, str, str, int, str]) -> IssuedCode:
    return IssuedCode(row[0], row[1], row[2], row[3] or None, row[4], row[5])
