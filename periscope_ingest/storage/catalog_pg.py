"""The broadcast catalog in PostgreSQL: the same table, methods and answers as catalog.Catalog,
for several nodes that list and look up the same broadcasts.

Records, pages and cursors are those of the SQLite catalog (a cursor from one is valid on the
other); pg_schema makes the table.
"""

from __future__ import annotations

from dataclasses import fields

from periscope_ingest.storage.catalog import (
    BroadcastRecord,
    _decode_cursor,
    _encode_cursor,
)
from periscope_ingest.storage.pg_schema import migrate
from periscope_ingest.storage.postgres import PgConnection

_COLUMNS = [f.name for f in fields(BroadcastRecord)]
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM broadcasts"


def _record(row: tuple) -> BroadcastRecord:
    return BroadcastRecord(**dict(zip(_COLUMNS, row, strict=True)))


class PostgresCatalog:
    def __init__(self, url: str, timeout: float) -> None:
        self._db = PgConnection(url, timeout, "catalog")
        migrate(self._db)

    def close(self) -> None:
        self._db.close()

    def put(self, record: BroadcastRecord) -> None:
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")
        self._db.run(
            f"INSERT INTO broadcasts ({', '.join(_COLUMNS)})"
            f" VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            [getattr(record, c) for c in _COLUMNS],
        )

    def get(self, broadcast_id: str) -> BroadcastRecord | None:
        row = self._db.fetch_one(f"{_SELECT} WHERE id = %s", (broadcast_id,))
        return _record(row) if row else None

    def remove(self, broadcast_id: str) -> None:
        self._db.run("DELETE FROM broadcasts WHERE id = %s", (broadcast_id,))

    def clear(self) -> None:
        self._db.run("DELETE FROM broadcasts")

    def all(self) -> list[BroadcastRecord]:
        return [_record(r) for r in self._db.fetch_all(f"{_SELECT} ORDER BY started_at")]

    def list(
        self,
        channel: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[BroadcastRecord], str | None]:
        """Newest first; returns the page and the cursor of the next page (None at the end)."""
        where, args = [], []
        if channel is not None:
            where.append("channel = %s")
            args.append(channel)
        if status is not None:
            where.append("status = %s")
            args.append(status)
        else:
            where.append("status != 'deleted'")
        if cursor is not None:
            started_at, broadcast_id = _decode_cursor(cursor)
            where.append("(started_at < %s OR (started_at = %s AND id < %s))")
            args += [started_at, started_at, broadcast_id]
        sql = f"{_SELECT} WHERE {' AND '.join(where)}"
        sql += " ORDER BY started_at DESC, id DESC LIMIT %s"
        rows = self._db.fetch_all(sql, [*args, limit + 1])
        records = [_record(r) for r in rows[:limit]]
        more = len(rows) > limit
        return records, _encode_cursor(records[-1]) if more and records else None

    def total_size(self) -> int:
        row = self._db.fetch_one(
            "SELECT COALESCE(SUM(size + COALESCE(mp4_size, 0)), 0) FROM broadcasts"
            " WHERE status != 'deleted'"
        )
        return int(row[0]) if row else 0
