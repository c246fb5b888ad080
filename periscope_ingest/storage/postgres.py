"""One PostgreSQL connection for one store, with a timeout on everything it does.

Each PostgreSQL store (catalog, accounts, restream targets) holds ONE connection guarded by a
lock, as each SQLite store does, rather than a pool: their queries are index probes and
single-row writes that take well under a millisecond, the callers are a handful of worker
threads, and one connection per store keeps a node at three connections to the database (a
shared database with many nodes runs out of connections long before it runs out of speed). It
also needs nothing beyond psycopg and no threads of a pool's own.

Timeouts, so that a hung database never holds a thread for ever:
- connecting: connect_timeout;
- a query the server works on too long: statement_timeout and lock_timeout (the server ends it,
  the connection stays usable);
- a server that stops answering at all (a frozen process, a lost network): a watchdog thread
  shuts the socket down a second after the query's deadline, which makes libpq give up at once;
  the next call connects again;
- a thread waiting for another thread's query: the lock is waited for at most the timeout.

psycopg is imported here only, and only when a postgresql:// URL is configured: the default
(SQLite) does not load it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import psycopg

# After statement_timeout, how long the server gets to say so before the watchdog cuts in.
_WATCHDOG_GRACE_S = 1.0


class DatabaseUnavailable(Exception):
    """The database cannot be reached or did not answer in time; the message names the host
    (never the password) and the reason, in one line."""


def database_address(url: str) -> str:
    """host:port/database of a postgresql:// URL: what messages and logs may show."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path or ''}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Watchdog:
    """Shuts a connection's socket down when the query running on it outlives its deadline.

    One thread per connection, asleep unless a query is running; cheaper than a timer thread
    per query, which the catalog would start for every segment.
    """

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[int, float] | None = None  # (socket fd, deadline)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"pg-watchdog-{name}", daemon=True)
        self._thread.start()

    def arm(self, fd: int, seconds: float) -> None:
        with self._cond:
            self._armed = (fd, time.monotonic() + seconds)
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if self._armed is None:
                    self._cond.wait()
                    continue
                fd, deadline = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._armed = None
                # shutdown() on a duplicate acts on the socket itself: the blocked libpq call
                # sees the connection end and returns an error to its thread.
                with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)


class PgConnection:
    """A lazily (re)connected psycopg connection in autocommit mode, used under a lock."""

    def __init__(self, url: str, timeout: float, name: str) -> None:
        self._url = url
        self._timeout = timeout
        self.address = database_address(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._watchdog = _Watchdog(name)
        with self._lock:
            self._conn = self._connect()  # at start: an unreachable database stops the server

    def _connect(self) -> psycopg.Connection:
        import psycopg
        from psycopg.rows import tuple_row

        ms = max(1, round(self._timeout * 1000))
        try:
            return psycopg.connect(
                self._url,
                autocommit=True,
                row_factory=tuple_row,
                connect_timeout=max(2, round(self._timeout)),  # libpq's minimum is 2 s
                options=f"-c statement_timeout={ms} -c lock_timeout={ms}"
                f" -c idle_in_transaction_session_timeout={ms * 2}",
                application_name="periscope-ingest",
                # A dead peer (unacknowledged data, silent keepalives) is noticed by the kernel.
                tcp_user_timeout=ms,
                keepalives=1,
                keepalives_idle=max(1, round(self._timeout)),
                keepalives_interval=1,
                keepalives_count=3,
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailable(
                f"cannot reach the database at {self.address}: {_one_line(exc)}"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._watchdog.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[psycopg.Connection]:
        """The connection, to this thread alone, for the statements of one call.

        Raises DatabaseUnavailable when the lock, the connection or a query takes longer than
        the timeout; the broken connection is dropped and the next call makes a new one.
        """
        import psycopg

        if not self._lock.acquire(timeout=self._timeout):
            raise DatabaseUnavailable(
                f"the database at {self.address} is busy: no answer within {self._timeout:g} s"
            )
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            try:
                # Disarmed before the connection may be closed below: never a stale socket.
                self._watchdog.arm(conn.fileno(), self._timeout + _WATCHDOG_GRACE_S)
                try:
                    yield conn
                finally:
                    self._watchdog.disarm()
            except psycopg.OperationalError as exc:
                if conn.broken or conn.closed:
                    conn.close()
                    self._conn = None
                raise DatabaseUnavailable(
                    f"the database at {self.address} failed: {_one_line(exc)}"
                ) from None
        finally:
            self._lock.release()

    def fetch_one(self, sql: str, args: Any = None) -> tuple | None:
        with self.session() as conn:
            return conn.execute(sql, args).fetchone()

    def fetch_all(self, sql: str, args: Any = None) -> list[tuple]:
        with self.session() as conn:
            return conn.execute(sql, args).fetchall()

    def run(self, sql: str, args: Any = None) -> int:
        """Execute one statement; the number of rows it changed."""
        with self.session() as conn:
            return conn.execute(sql, args).rowcount


class PgStatements:
    """run/one/all/close, as storage.sqlite_file.SharedSqlite has them, over a PgConnection:
    the account and restream rules are written once for both backends, with SQLite's `?`
    placeholders, which become psycopg's `%s` here (none of their statements holds a literal
    `?`)."""

    def __init__(self, connection: PgConnection) -> None:
        self.connection = connection

    def close(self) -> None:
        self.connection.close()

    def run(self, sql: str, args: tuple = ()) -> int:
        return self.connection.run(sql.replace("?", "%s"), args)

    def one(self, sql: str, args: tuple = ()) -> tuple | None:
        return self.connection.fetch_one(sql.replace("?", "%s"), args)

    def all(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.connection.fetch_all(sql.replace("?", "%s"), args)
