"""The person vault: one random key and one token per (shop, customer id), in SQLite.

Ingest writes each customer id to the log as the person's token; finance resolves a token
back here. Erasure deletes the row (key and mapping): the token in the log then names nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import time
from pathlib import Path
from typing import ClassVar

from refstream.schemas.errors import EXIT_USAGE, RefstreamError

TOKEN_PREFIX = "cus_"
# 24 hex digits = 96 bits: a collision among a shop's customers is out of reach.
TOKEN_HEX_DIGITS = 24
PERSON_KEY_BYTES = 32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    shop_id     TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    person_key  BLOB    NOT NULL,
    token       TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (shop_id, customer_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS persons_by_token ON persons (shop_id, token);
"""


class PersonNotFound(RefstreamError):
    """The vault has no entry for this person or token (never seen, or already erased)."""

    exit_code: ClassVar[int] = EXIT_USAGE


def person_token(person_key: bytes, shop_id: str, customer_id: str) -> str:
    digest = hmac.new(person_key, f"{shop_id}\x00{customer_id}".encode(), hashlib.sha256)
    return TOKEN_PREFIX + digest.hexdigest()[:TOKEN_HEX_DIGITS]


class PersonVault:
    """Get-or-create is safe for several processes sharing the file: INSERT OR IGNORE keeps
    whichever row came first, and every process then reads that same row back."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit; wait for a writer in another process rather than fail.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A deleted row's bytes are overwritten with zeros, not left in a free page.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PersonVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, shop_id: str, customer_id: str) -> str | None:
        """The person's token, or None; never creates one."""
        row = self._db.execute(
            "SELECT token FROM persons WHERE shop_id = ? AND customer_id = ?",
            (shop_id, customer_id)).fetchone()
        return str(row[0]) if row is not None else None

    def token(self, shop_id: str, customer_id: str) -> str:
        """The person's token, created (with a fresh random key) on first sight.

        No in-process cache: after an erasure, the next event of the same customer id must
        make a new person, not reuse the erased token.
        """
        found = self.lookup(shop_id, customer_id)
        if found is not None:
            return found
        key = os.urandom(PERSON_KEY_BYTES)
        self._db.execute(
            "INSERT OR IGNORE INTO persons (shop_id, customer_id, person_key, token, created_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (shop_id, customer_id, key, person_token(key, shop_id, customer_id),
             int(time.time() * 1000)))
        created = self.lookup(shop_id, customer_id)
        if created is None:  # only a token collision with another person can get here
            raise RefstreamError(f"person vault {self.path}: could not store a token for a "
                                 f"customer of shop {shop_id!r}; retry the record")
        return created

    def resolve(self, shop_id: str, token: str) -> str:
        """The shop's customer id behind a token (for finance paying a beneficiary)."""
        row = self._db.execute(
            "SELECT customer_id FROM persons WHERE shop_id = ? AND token = ?",
            (shop_id, token)).fetchone()
        if row is None:
            raise PersonNotFound(
                f"no person with token {token!r} in shop {shop_id!r} in the vault {self.path}: "
                "the token was never issued there, or the person has been erased")
        return str(row[0])

    def erase(self, shop_id: str, customer_id: str) -> str:
        """Delete the person's key and mapping; returns the token that now names nobody."""
        token = self.lookup(shop_id, customer_id)
        if token is None:
            raise PersonNotFound(
                f"customer {customer_id!r} of shop {shop_id!r} is not in the vault "
                f"{self.path}: never ingested with this vault, or already erased")
        self._db.execute("DELETE FROM persons WHERE shop_id = ? AND customer_id = ?",
                         (shop_id, customer_id))
        # Fold the WAL into the main file and empty it, so no copy of the deleted page stays
        # in the log file (it may be busy while workers read; their next checkpoint does it).
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return token

    def count(self) -> int:
        row = self._db.execute("SELECT count(*) FROM persons").fetchone()
        return int(row[0])
