"""Accounts in PostgreSQL: accounts.AccountStore (the same methods, checks and errors as with
SQLite) for nodes that share one database.

Keys and tokens are stored as the same keyed hashes. The HMAC key stays in the server secret
file of the data directory, never in the database: every node needs the same file (copy it),
and a leaked database alone still reveals no key and no token.
"""

from __future__ import annotations

from pathlib import Path

from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection, PgStatements


def open_postgres_accounts(url: str, timeout: float, secret_file: Path) -> AccountStore:
    import psycopg

    secret_file.parent.mkdir(parents=True, exist_ok=True)
    connection = PgConnection(url, timeout, "accounts")
    migrate(connection)
    return AccountStore(PgStatements(connection), psycopg.IntegrityError, secret_file)
