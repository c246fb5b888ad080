"""Restream targets: the RTMP(S) URLs a channel's broadcasts are forwarded to.

Kept in their own small SQLite file so the CLI and the server can change them at the same time.
The URLs carry the stream keys of other services, so the file is readable by the server's user
only, and nothing outside this module and the connection that publishes sees a whole URL: the
rest of the program shows TargetAddress.masked.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.rtmp.client import InvalidTargetUrl, TargetAddress, parse_target_url
from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.sqlite_file import SharedSqlite

if TYPE_CHECKING:
    from periscope_ingest.storage.postgres import PgStatements


class RestreamError(ValueError):
    """A target that cannot be added or removed; the message says why."""


class TooManyTargets(RestreamError):
    """The channel already has restream.max_targets targets."""


@dataclass(frozen=True, slots=True)
class RestreamTarget:
    id: int
    channel: str
    url: str  # secret: holds the target's stream key
    created_at: str

    @property
    def address(self) -> TargetAddress:
        return parse_target_url(self.url)

    def as_json(self) -> dict:
        """What the API and CLI show: the URL without its stream key."""
        return {"id": self.id, "target": self.address.masked, "created_at": self.created_at}


def _create_private(path: Path) -> None:
    """Make the database file 0600 before SQLite opens it (its -wal file copies the mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def checked_target(channel: str, url: str) -> str:
    """The time the target is added, once channel and URL are valid; RestreamError if not."""
    if not is_channel_name(channel):
        raise RestreamError(f"invalid channel {channel!r}")
    try:
        parse_target_url(url)
    except InvalidTargetUrl as exc:
        raise RestreamError(f"invalid restream URL: {exc}") from None
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def too_many(channel: str, count: int, max_targets: int) -> TooManyTargets:
    return TooManyTargets(
        f"channel {channel!r} already has {count} restream targets"
        f" (restream.max_targets={max_targets}, PERISCOPE_RESTREAM__MAX_TARGETS)"
    )


class RestreamStore:
    """A channel's targets, the same on every backend: ``db`` runs the SQL, written here with
    `?` placeholders (SharedSqlite, or PgStatements); each backend adds in its own
    transaction (count and insert as one step)."""

    def __init__(self, db: SharedSqlite | PgStatements) -> None:
        self._db = db

    def close(self) -> None:
        self._db.close()

    def add(self, channel: str, url: str, max_targets: int) -> RestreamTarget:
        raise NotImplementedError

    def list(self, channel: str) -> list[RestreamTarget]:
        rows = self._db.all(
            "SELECT id, channel, url, created_at FROM restream_targets WHERE channel = ?"
            " ORDER BY id",
            (channel,),
        )
        return [RestreamTarget(int(i), c, u, t) for i, c, u, t in rows]

    def remove(self, channel: str, target: int | str) -> bool:
        """Remove a target by its id or its exact URL; False when the channel has no such one."""
        column = "id" if isinstance(target, int) else "url"
        if isinstance(target, int) and not 0 < target < 2**63:
            # No id is out there (ids are 64-bit on both backends), and SQLite would raise
            # OverflowError on the number, PostgreSQL refuse it.
            return False
        changed = self._db.run(
            f"DELETE FROM restream_targets WHERE channel = ? AND {column} = ?", (channel, target)
        )
        return changed > 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS restream_targets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    url TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (channel, url)
);
"""


class SqliteRestreamStore(RestreamStore):
    """Targets in the data directory's own SQLite file (the embedded default)."""

    def __init__(self, database: Path) -> None:
        _create_private(database)
        self._sqlite = SharedSqlite(database, _SCHEMA)
        super().__init__(self._sqlite)

    def add(self, channel: str, url: str, max_targets: int) -> RestreamTarget:
        created = checked_target(channel, url)
        with self._sqlite.immediate() as db:  # count and insert as one step
            count = db.execute(
                "SELECT COUNT(*) FROM restream_targets WHERE channel = ?", (channel,)
            ).fetchone()[0]
            if count >= max_targets:
                raise too_many(channel, count, max_targets)
            try:
                cursor = db.execute(
                    "INSERT INTO restream_targets (channel, url, created_at) VALUES (?, ?, ?)",
                    (channel, url, created),
                )
            except sqlite3.IntegrityError:
                raise RestreamError("this channel already restreams to that URL") from None
        assert cursor.lastrowid is not None
        return RestreamTarget(cursor.lastrowid, channel, url, created)
