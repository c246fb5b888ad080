"""Accounts in PostgreSQL: the same methods, checks and errors as accounts.AccountStore, for
nodes that share one database.

Keys and tokens are stored as the same keyed hashes. The HMAC key stays in the server secret
file of the data directory, never in the database: every node needs the same file (copy it),
and a leaked database alone still reveals no key and no token.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from periscope_ingest.storage.accounts import (
    _RESERVED_HANDLES,
    _SECRET_PATTERN,
    KEY_BYTES,
    Account,
    AccountError,
    Credentials,
    _now,
    _server_secret,
    keyed_hash,
)
from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection

_ACCOUNT = "SELECT handle, created_at, disabled, key_rotated_at FROM accounts"


class PostgresAccountStore:
    def __init__(self, url: str, timeout: float, secret_file: Path) -> None:
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        self._secret = _server_secret(secret_file)
        self._db = PgConnection(url, timeout, "accounts")
        migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def _hash(self, kind: str, secret: str) -> str:
        return keyed_hash(self._secret, kind, secret)

    def count(self) -> int:
        row = self._db.fetch_one("SELECT COUNT(*) FROM accounts")
        return int(row[0]) if row else 0

    def create(self, handle: str) -> Credentials:
        import psycopg

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
                " VALUES (%s, %s, %s, %s)",
                (
                    handle,
                    self._hash("key", credentials.stream_key),
                    self._hash("token", credentials.token),
                    _now(),
                ),
            )
        except psycopg.IntegrityError:
            raise AccountError(f"handle {handle!r} is taken") from None
        return credentials

    def list(self) -> list[Account]:
        rows = self._db.fetch_all(f"{_ACCOUNT} ORDER BY handle")
        return [Account(h, c, bool(d), r) for h, c, d, r in rows]

    def get(self, handle: str) -> Account | None:
        row = self._db.fetch_one(f"{_ACCOUNT} WHERE handle = %s", (handle,))
        return Account(row[0], row[1], bool(row[2]), row[3]) if row else None

    def rotate_key(self, handle: str) -> Credentials:
        """A new stream key; the old one stops working at once. The token stays."""
        key = secrets.token_urlsafe(KEY_BYTES)
        changed = self._db.run(
            "UPDATE accounts SET key_hash = %s, key_rotated_at = %s WHERE handle = %s",
            (self._hash("key", key), _now(), handle),
        )
        if not changed:
            raise AccountError(f"no account {handle!r}")
        return Credentials(handle, key, "")

    def set_disabled(self, handle: str, disabled: bool = True) -> None:
        changed = self._db.run(
            "UPDATE accounts SET disabled = %s WHERE handle = %s", (disabled, handle)
        )
        if not changed:
            raise AccountError(f"no account {handle!r}")

    def _find(self, column: str, kind: str, secret: str) -> Account | None:
        if _SECRET_PATTERN.fullmatch(secret) is None:
            return None
        digest = self._hash(kind, secret)
        row = self._db.fetch_one(
            f"SELECT handle, created_at, disabled, key_rotated_at, {column} FROM accounts"
            f" WHERE {column} = %s",
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
