"""Accounts in PostgreSQL: accounts.AccountRules (the same methods, checks and errors as the
SQLite store) for nodes that share one database.

Keys and tokens are stored as the same keyed hashes. The HMAC key stays in the server secret
file of the data directory, never in the database: every node needs the same file (copy it),
and a leaked database alone still reveals no key and no token.
"""

from __future__ import annotations

from pathlib import Path

from periscope_ingest.storage.accounts import AccountRules
from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection, pg_placeholders


class PostgresAccountStore(AccountRules):
    def __init__(self, url: str, timeout: float, secret_file: Path) -> None:
        import psycopg

        self._duplicate = psycopg.IntegrityError
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(secret_file)
        self._db = PgConnection(url, timeout, "accounts")
        migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> int:
        return self._db.run(pg_placeholders(sql), args)

    def _one(self, sql: str, args: tuple = ()) -> tuple | None:
        return self._db.fetch_one(pg_placeholders(sql), args)

    def _all(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self._db.fetch_all(pg_placeholders(sql), args)
