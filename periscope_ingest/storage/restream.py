"""Restream targets: the RTMP(S) URLs a channel's broadcasts are forwarded to.

Kept in their own small SQLite file so the CLI and the server can change them at the same time.
The URLs carry the stream keys of other services, so the file is readable by the server's user
only, and nothing outside this module and the connection that publishes sees a whole URL: the
rest of the program shows TargetAddress.masked.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from periscope_ingest.rtmp.client import InvalidTargetUrl, TargetAddress, parse_target_url
from periscope_ingest.storage.layout import is_channel_name


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


class RestreamStore:
    def __init__(self, database: Path) -> None:
        _create_private(database)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")  # the CLI and the server share it
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS restream_targets (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    channel TEXT NOT NULL,
                    url TEXT NOT NULL,
                    created_at TEXT NOT NULL,
                    UNIQUE (channel, url)
                );
                """
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, channel: str, url: str, max_targets: int) -> RestreamTarget:
        if not is_channel_name(channel):
            raise RestreamError(f"invalid channel {channel!r}")
        try:
            parse_target_url(url)
        except InvalidTargetUrl as exc:
            raise RestreamError(f"invalid restream URL: {exc}") from None
        created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # count and insert as one step
            try:
                count = self._db.execute(
                    "SELECT COUNT(*) FROM restream_targets WHERE channel = ?", (channel,)
                ).fetchone()[0]
                if count >= max_targets:
                    raise TooManyTargets(
                        f"channel {channel!r} already has {count} restream targets"
                        f" (restream.max_targets={max_targets}, PERISCOPE_RESTREAM__MAX_TARGETS)"
                    )
                try:
                    cursor = self._db.execute(
                        "INSERT INTO restream_targets (channel, url, created_at) VALUES (?, ?, ?)",
                        (channel, url, created),
                    )
                except sqlite3.IntegrityError:
                    raise RestreamError("this channel already restreams to that URL") from None
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        assert cursor.lastrowid is not None
        return RestreamTarget(cursor.lastrowid, channel, url, created)

    def list(self, channel: str) -> list[RestreamTarget]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, channel, url, created_at FROM restream_targets WHERE channel = ?"
                " ORDER BY id",
                (channel,),
            ).fetchall()
        return [RestreamTarget(*row) for row in rows]

    def remove(self, channel: str, target: int | str) -> bool:
        """Remove a target by its id or its exact URL; False when the channel has no such one."""
        column = "id" if isinstance(target, int) else "url"
        if isinstance(target, int) and not 0 < target < 2**63:
            return False  # no id is out there; SQLite would raise OverflowError on the number
        with self._lock:
            changed = self._db.execute(
                f"DELETE FROM restream_targets WHERE channel = ? AND {column} = ?",
                (channel, target),
            ).rowcount
        return changed > 0
