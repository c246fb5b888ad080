"""Restream targets in PostgreSQL: restream.RestreamStore (the same methods, checks and errors as
the SQLite store) for nodes that share one database.

The URLs hold other services' stream keys: whoever can read the database can read them, as
whoever can read restream.sqlite3 can; give the database user of the server alone access.
"""

from __future__ import annotations

from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection, PgStatements
from periscope_ingest.storage.restream import (
    RestreamError,
    RestreamStore,
    RestreamTarget,
    checked_target,
    too_many,
)

# pg_advisory_xact_lock(class, key) class for "a channel's targets are being added" ("rstr").
_ADD_LOCK = 0x72737472


class PostgresRestreamStore(RestreamStore):
    def __init__(self, url: str, timeout: float) -> None:
        self._pg = PgConnection(url, timeout, "restream")
        migrate(self._pg)
        super().__init__(PgStatements(self._pg))

    def add(self, channel: str, url: str, max_targets: int) -> RestreamTarget:
        import psycopg

        created = checked_target(channel, url)
        with self._pg.session() as conn, conn.transaction():
            # Count and insert as one step, also against another node adding at the same time.
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_ADD_LOCK, channel))
            row = conn.execute(
                "SELECT COUNT(*) FROM restream_targets WHERE channel = %s", (channel,)
            ).fetchone()
            count = int(row[0]) if row else 0
            if count >= max_targets:
                raise too_many(channel, count, max_targets)
            try:
                row = conn.execute(
                    "INSERT INTO restream_targets (channel, url, created_at) VALUES (%s, %s, %s)"
                    " RETURNING id",
                    (channel, url, created),
                ).fetchone()
            except psycopg.IntegrityError:
                raise RestreamError("this channel already restreams to that URL") from None
        assert row is not None
        return RestreamTarget(int(row[0]), channel, url, created)
