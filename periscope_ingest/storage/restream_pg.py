"""Restream targets in PostgreSQL: the same methods, checks and errors as
restream.RestreamStore, for nodes that share one database.

The URLs hold other services' stream keys: whoever can read the database can read them, as
whoever can read restream.sqlite3 can; give the database user of the server alone access.
"""

from __future__ import annotations

from datetime import UTC, datetime

from periscope_ingest.rtmp.client import InvalidTargetUrl, parse_target_url
from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection
from periscope_ingest.storage.restream import RestreamError, RestreamTarget, TooManyTargets

# pg_advisory_xact_lock(class, key) class for "a channel's targets are being added" ("rstr").
_ADD_LOCK = 0x72737472


class PostgresRestreamStore:
    def __init__(self, url: str, timeout: float) -> None:
        self._db = PgConnection(url, timeout, "restream")
        migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def add(self, channel: str, url: str, max_targets: int) -> RestreamTarget:
        import psycopg

        if not is_channel_name(channel):
            raise RestreamError(f"invalid channel {channel!r}")
        try:
            parse_target_url(url)
        except InvalidTargetUrl as exc:
            raise RestreamError(f"invalid restream URL: {exc}") from None
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._db.session() as conn, conn.transaction():
            # Count and insert as one step, also against another node adding at the same time.
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_ADD_LOCK, channel))
            row = conn.execute(
                "SELECT COUNT(*) FROM restream_targets WHERE channel = %s", (channel,)
            ).fetchone()
            count = int(row[0]) if row else 0
            if count >= max_targets:
                raise TooManyTargets(
                    f"channel {channel!r} already has {count} restream targets"
                    f" (restream.max_targets={max_targets}, PERISCOPE_RESTREAM__MAX_TARGETS)"
                )
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

    def list(self, channel: str) -> list[RestreamTarget]:
        rows = self._db.fetch_all(
            "SELECT id, channel, url, created_at FROM restream_targets WHERE channel = %s"
            " ORDER BY id",
            (channel,),
        )
        return [RestreamTarget(int(i), c, u, t) for i, c, u, t in rows]

    def remove(self, channel: str, target: int | str) -> bool:
        """Remove a target by its id or its exact URL; False when the channel has no such one."""
        column = "id" if isinstance(target, int) else "url"
        if isinstance(target, int) and not 0 < target < 2**63:
            return False  # no BIGINT id is out there; PostgreSQL would refuse the number
        changed = self._db.run(
            f"DELETE FROM restream_targets WHERE channel = %s AND {column} = %s",
            (channel, target),
        )
        return changed > 0
