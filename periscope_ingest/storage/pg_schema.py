"""The PostgreSQL schema, as numbered migrations applied at start.

``schema_version`` lists the migrations applied. Every store applies what is missing when it
opens, inside one transaction that first takes an advisory lock: two processes starting at once
take turns (the second finds the work done), and a migration that fails leaves nothing half
done. Migrations are only ever appended: a released one is never edited.

Text columns that are sorted or compared (ids, ISO timestamps, handles) use the "C" collation:
byte order, as SQLite sorts, so pages and cursors come out the same on both.
"""

from __future__ import annotations

from periscope_ingest.storage.postgres import DatabaseUnavailable, PgConnection

# pg_advisory_xact_lock key for migrations ("peri" in ASCII): any constant of ours will do.
MIGRATION_LOCK = 0x70657269

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables of the SQLite files (catalog.sqlite3, accounts.sqlite3, restream.sqlite3).
    (
        """CREATE TABLE broadcasts (
            id TEXT COLLATE "C" PRIMARY KEY,
            channel TEXT COLLATE "C" NOT NULL,
            started_at TEXT COLLATE "C" NOT NULL,
            status TEXT NOT NULL,
            title TEXT,
            ended_at TEXT,
            duration DOUBLE PRECISION NOT NULL DEFAULT 0,
            size BIGINT NOT NULL DEFAULT 0,
            segments INTEGER NOT NULL DEFAULT 0,
            video_codec TEXT,
            audio_codec TEXT,
            width INTEGER,
            height INTEGER,
            frame_rate DOUBLE PRECISION,
            discontinuities INTEGER NOT NULL DEFAULT 0,
            mp4_size BIGINT
        )""",
        "CREATE INDEX broadcasts_by_channel ON broadcasts (channel, started_at DESC, id)",
        "CREATE INDEX broadcasts_by_start ON broadcasts (started_at DESC, id)",
        """CREATE TABLE accounts (
            handle TEXT COLLATE "C" PRIMARY KEY,
            key_hash TEXT NOT NULL UNIQUE,
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            disabled BOOLEAN NOT NULL DEFAULT FALSE,
            key_rotated_at TEXT
        )""",
        """CREATE TABLE restream_targets (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            channel TEXT COLLATE "C" NOT NULL,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (channel, url)
        )""",
    ),
)


class SchemaTooNew(DatabaseUnavailable):
    """The database was migrated by a newer release than this one."""


def migrate(db: PgConnection) -> int:
    """Apply the migrations the database lacks; the schema version it is at afterwards."""
    with db.session() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise SchemaTooNew(
                f"the database at {db.address} has schema version {current}; this release"
                f" knows up to {len(MIGRATIONS)}: upgrade periscope-ingest"
            )
        for number in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return len(MIGRATIONS)
