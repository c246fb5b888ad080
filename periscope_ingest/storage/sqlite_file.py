"""One SQLite file of the data directory, shared by the server's threads, the CLI and the other
`serve --workers` processes: autocommit, WAL, a busy timeout, and one lock per process (the
connection is used from several threads)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path


class SharedSqlite:
    def __init__(self, path: Path, schema: str) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA busy_timeout=5000")  # another process may be writing
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def run(self, sql: str, args: tuple = ()) -> int:
        """Execute one statement; the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def one(self, sql: str, args: tuple = ()) -> tuple | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def all(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def immediate(self) -> Iterator[sqlite3.Connection]:
        """The connection inside BEGIN IMMEDIATE (other writers wait), committed at the end,
        rolled back on any exception."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
