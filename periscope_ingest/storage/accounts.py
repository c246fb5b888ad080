"""Accounts: a channel's public handle, its secret stream key and its owner's API token.

Secrets are shown once, at creation or rotation, and stored only as keyed hashes
(HMAC-SHA256 with a server secret kept in a file beside, not inside, the database): a leaked
database alone reveals neither keys nor tokens, and a lookup is an index probe on the hash, so
no secret is ever compared character by character.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.sqlite_file import SharedSqlite

if TYPE_CHECKING:
    from periscope_ingest.storage.postgres import PgStatements

KEY_BYTES = 24  # 192 bits of randomness; the issue asks for at least 128
_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_RESERVED_HANDLES = {"api", "live", "replays", "static", "watch", "channels", "healthz"}


class AccountError(ValueError):
    """A request about accounts that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class Account:
    handle: str
    created_at: str
    disabled: bool
    key_rotated_at: str | None

    def as_json(self) -> dict:
        return {
            "handle": self.handle,
            "created_at": self.created_at,
            "disabled": self.disabled,
            "key_rotated_at": self.key_rotated_at,
        }


@dataclass(frozen=True, slots=True)
class Credentials:
    """Shown once: what the owner needs to publish and to call the API."""

    handle: str
    stream_key: str
    token: str

    def as_json(self) -> dict:
        return {"handle": self.handle, "stream_key": self.stream_key, "token": self.token}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _server_secret(path: Path) -> bytes:
    """The HMAC key, made on first use, readable by the server's user only."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        secret = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        return secret


def keyed_hash(server_secret: bytes, kind: str, secret: str) -> str:
    """What is stored for a key or token (kind "key" or "token"): the same on every backend."""
    return hmac.new(server_secret, f"{kind}:{secret}".encode(), hashlib.sha256).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    handle TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    key_rotated_at TEXT
);
"""
_ACCOUNT = "SELECT handle, created_at, disabled, key_rotated_at FROM accounts"


class AccountStore:
    """What an account store does, the same on every backend: the checks, the secrets made and
    hashed, the errors. ``db`` runs the SQL, written here with `?` placeholders (SharedSqlite,
    or PgStatements); ``duplicate`` is the exception its database raises when a UNIQUE column
    would repeat."""

    def __init__(
        self, db: SharedSqlite | PgStatements, duplicate: type[Exception], secret_file: Path
    ) -> None:
        self._db = db
        self._duplicate = duplicate
        self._secret = _server_secret(secret_file)

    def close(self) -> None:
        self._db.close()

    def _hash(self, kind: str, secret: str) -> str:
        return keyed_hash(self._secret, kind, secret)

    def count(self) -> int:
        row = self._db.one("SELECT COUNT(*) FROM accounts")
        return int(row[0]) if row else 0

    def create(self, handle: str) -> Credentials:
        if not is_channel_name(handle) or handle.lower() in _RESERVED_HANDLES:
            raise AccountError(
                f"invalid handle {handle!r}: 1-64 letters, digits, '-' or '_', not a reserved word"
            )
        credentials = Credentials(
            handle, secrets.token_urlsafe(KEY_BYTES), secrets.token_urlsafe(KEY_BYTES)
        )
        try:
            self._db.run(
                "INSERT INTO accounts (handle, key_hash, token_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    handle,
                    self._hash("key", credentials.stream_key),
                    self._hash("token", credentials.token),
                    _now(),
                ),
            )
        except self._duplicate:
            raise AccountError(f"handle {handle!r} is taken") from None
        return credentials

    def list(self) -> list[Account]:
        return [
            Account(h, c, bool(d), r) for h, c, d, r in self._db.all(f"{_ACCOUNT} ORDER BY handle")
        ]

    def get(self, handle: str) -> Account | None:
        row = self._db.one(f"{_ACCOUNT} WHERE handle = ?", (handle,))
        return Account(row[0], row[1], bool(row[2]), row[3]) if row else None

    def rotate_key(self, handle: str) -> Credentials:
        """A new stream key; the old one stops working at once. The token stays."""
        key = secrets.token_urlsafe(KEY_BYTES)
        changed = self._db.run(
            "UPDATE accounts SET key_hash = ?, key_rotated_at = ? WHERE handle = ?",
            (self._hash("key", key), _now(), handle),
        )
        if not changed:
            raise AccountError(f"no account {handle!r}")
        return Credentials(handle, key, "")

    def set_disabled(self, handle: str, disabled: bool = True) -> None:
        # A Python bool: SQLite stores it as 1/0, PostgreSQL's column is BOOLEAN.
        changed = self._db.run(
            "UPDATE accounts SET disabled = ? WHERE handle = ?", (disabled, handle)
        )
        if not changed:
            raise AccountError(f"no account {handle!r}")

    def _find(self, column: str, kind: str, secret: str) -> Account | None:
        if _SECRET_PATTERN.fullmatch(secret) is None:
            return None
        digest = self._hash(kind, secret)
        row = self._db.one(
            f"SELECT handle, created_at, disabled, key_rotated_at, {column} FROM accounts"
            f" WHERE {column} = ?",
            (digest,),
        )
        if row is None or not hmac.compare_digest(row[4], digest):
            return None
        return Account(row[0], row[1], bool(row[2]), row[3])

    def by_stream_key(self, stream_key: str) -> Account | None:
        """The enabled account this key publishes to, or None (unknown, rotated or disabled)."""
        account = self._find("key_hash", "key", stream_key)
        return account if account and not account.disabled else None

    def by_token(self, token: str) -> Account | None:
        account = self._find("token_hash", "token", token)
        return account if account and not account.disabled else None


def open_sqlite_accounts(database: Path, secret_file: Path) -> AccountStore:
    """Accounts in the data directory's SQLite file (the embedded default)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    return AccountStore(SharedSqlite(database, _SCHEMA), sqlite3.IntegrityError, secret_file)
