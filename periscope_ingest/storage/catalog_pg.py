"""The broadcast catalog in PostgreSQL: the same table, methods and answers as catalog.Catalog,
for several nodes that list and look up the same broadcasts.

Records, pages and cursors are those of the SQLite catalog (a cursor from one is valid on the
other); pg_schema makes the table.
"""

from __future__ import annotations

from dataclasses import fields

from periscope_ingest.storage.catalog import BroadcastRecord, page_of, page_query
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
        sql, args = page_query(_SELECT, "%s", channel, status, limit, cursor)
        return page_of([_record(r) for r in self._db.fetch_all(sql, args)], limit)

    def total_size(self) -> int:
        row = self._db.fetch_one(
            "SELECT COALESCE(SUM(size + COALESCE(mp4_size, 0)), 0) FROM broadcasts"
            " WHERE status != 'deleted'"
        )
        return int(row[0]) if row else 0
