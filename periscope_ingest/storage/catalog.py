"""The broadcast catalog: one SQLite table, rebuildable from the files on disk.

Media files and each broadcast's ``broadcast.json`` are the truth; the catalog is an index over them
for listing and lookup by id. Calls block (SQLite, disk): the event loop reaches them through
``asyncio.to_thread``; the stream writer threads call them directly. One connection in WAL mode,
guarded by a lock, serves every thread.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path

STATUSES = ("live", "ended", "interrupted", "deleted")


@dataclass(slots=True)
class BroadcastRecord:
    id: str
    channel: str
    started_at: str  # ISO 8601 UTC with Z
    status: str = "live"
    title: str | None = None
    ended_at: str | None = None
    duration: float = 0.0  # seconds of recorded media
    size: int = 0  # bytes of recorded segments
    segments: int = 0
    video_codec: str | None = None
    audio_codec: str | None = None
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None
    discontinuities: int = 0  # reconnects continued within the grace window
    mp4_size: int | None = None  # set once the MP4 export is on disk

    def as_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> BroadcastRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class InvalidCursor(ValueError):
    """A pagination cursor that this catalog did not produce."""


_COLUMNS = [f.name for f in fields(BroadcastRecord)]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS broadcasts (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    started_at TEXT NOT NULL,
    status TEXT NOT NULL,
    title TEXT,
    ended_at TEXT,
    duration REAL NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    segments INTEGER NOT NULL DEFAULT 0,
    video_codec TEXT,
    audio_codec TEXT,
    width INTEGER,
    height INTEGER,
    frame_rate REAL,
    discontinuities INTEGER NOT NULL DEFAULT 0,
    mp4_size INTEGER
);
CREATE INDEX IF NOT EXISTS broadcasts_by_channel ON broadcasts (channel, started_at DESC, id);
CREATE INDEX IF NOT EXISTS broadcasts_by_start ON broadcasts (started_at DESC, id);
"""


class Catalog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            # The CLI, and the processes of `serve --workers`, write the same file.
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL keeps it consistent on a crash
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, record: BroadcastRecord) -> None:
        values = [getattr(record, c) for c in _COLUMNS]
        placeholders = ",".join("?" * len(_COLUMNS))
        with self._lock:
            self._db.execute(
                f"INSERT OR REPLACE INTO broadcasts ({','.join(_COLUMNS)}) VALUES ({placeholders})",
                values,
            )

    def get(self, broadcast_id: str) -> BroadcastRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM broadcasts WHERE id = ?", (broadcast_id,)
            ).fetchone()
        return BroadcastRecord(**dict(row)) if row else None

    def remove(self, broadcast_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM broadcasts WHERE id = ?", (broadcast_id,))

    def clear(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM broadcasts")

    def all(self) -> list[BroadcastRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM broadcasts ORDER BY started_at").fetchall()
        return [BroadcastRecord(**dict(r)) for r in rows]

    def list(
        self,
        channel: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[BroadcastRecord], str | None]:
        """Newest first; returns the page and the cursor of the next page (None at the end)."""
        sql, args = page_query("SELECT * FROM broadcasts", "?", channel, status, limit, cursor)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return page_of([BroadcastRecord(**dict(r)) for r in rows], limit)

    def total_size(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(size + COALESCE(mp4_size, 0)), 0) FROM broadcasts"
                " WHERE status != 'deleted'"
            ).fetchone()
        return int(row[0])


def page_query(
    select: str,
    mark: str,
    channel: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[str, list]:
    """The SQL of one page of a listing, newest first, and its arguments; ``mark`` is the
    driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg). One row more than the page
    is asked for: whether it comes says whether there is a next page (page_of)."""
    where, args = [], []
    if channel is not None:
        where.append(f"channel = {mark}")
        args.append(channel)
    if status is not None:
        where.append(f"status = {mark}")
        args.append(status)
    else:
        where.append("status != 'deleted'")
    if cursor is not None:
        started_at, broadcast_id = _decode_cursor(cursor)
        where.append(f"(started_at < {mark} OR (started_at = {mark} AND id < {mark}))")
        args += [started_at, started_at, broadcast_id]
    sql = f"{select} WHERE {' AND '.join(where)} ORDER BY started_at DESC, id DESC LIMIT {mark}"
    return sql, [*args, limit + 1]


def page_of(records: list[BroadcastRecord], limit: int) -> tuple[list[BroadcastRecord], str | None]:
    """The page, and the cursor of the next one (None at the end)."""
    page = records[:limit]
    more = len(records) > limit
    return page, _encode_cursor(page[-1]) if more and page else None


def _encode_cursor(record: BroadcastRecord) -> str:
    raw = json.dumps([record.started_at, record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, broadcast_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise InvalidCursor("invalid cursor") from exc
    if not isinstance(started_at, str) or not isinstance(broadcast_id, str):
        raise InvalidCursor("invalid cursor")
    return started_at, broadcast_id
