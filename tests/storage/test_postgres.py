"""PostgreSQL itself: migrations applied once however many processes start at once, a schema
newer than the program refused, and a database that stops answering failing a call within
catalog.timeout instead of holding its thread for ever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.catalog_pg import PostgresCatalog
from periscope_ingest.storage.pg_schema import MIGRATIONS, SchemaTooNew, migrate
from periscope_ingest.storage.postgres import DatabaseUnavailable, PgConnection

pytestmark = pytest.mark.e2e

MIGRATE = "from periscope_ingest.storage.pg_schema import migrate; from periscope_ingest.storage.postgres import PgConnection; import sys; migrate(PgConnection(sys.argv[1], 10, 'm'))"  # noqa: E501


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


def test_migrations_apply_once_even_from_processes_starting_together(postgres_url: str) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, postgres_url], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode()
    assert versions(postgres_url) == list(range(1, len(MIGRATIONS) + 1))
    db = PgConnection(postgres_url, 5, "test")
    try:
        assert migrate(db) == len(MIGRATIONS)  # and again: nothing to do, nothing fails
    finally:
        db.close()
    assert versions(postgres_url) == list(range(1, len(MIGRATIONS) + 1))
    with psycopg.connect(postgres_url) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        }
    assert tables == {"schema_version", "broadcasts", "accounts", "restream_targets"}


def test_a_schema_from_a_newer_release_is_refused(postgres_url: str) -> None:
    PostgresCatalog(postgres_url, 5).close()
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(SchemaTooNew, match="upgrade periscope-ingest"):
        PostgresCatalog(postgres_url, 5)


def test_a_database_that_stops_answering_fails_the_call_within_the_timeout(
    postgres_server, postgres_url: str
) -> None:
    catalog = PostgresCatalog(postgres_url, 1.0)
    record = BroadcastRecord("AbCdEfGhIjKl", "chan", "2026-06-01T00:00:00.000Z", "live")
    try:
        catalog.put(record)
        # Freeze the server process behind our connection: its kernel still acknowledges
        # packets, so neither TCP nor statement_timeout can end the wait; only our watchdog.
        (backend,) = postgres_server.backend_pids(postgres_url)
        os.kill(backend, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable, match=r"the database at 127\.0\.0\.1"):
                catalog.get(record.id)
            assert time.monotonic() - started < 4.0
        finally:
            os.kill(backend, signal.SIGCONT)
        assert catalog.get(record.id) == record  # a new connection, the next call works
    finally:
        catalog.close()


def test_the_password_is_never_in_an_error(postgres_server) -> None:
    with pytest.raises(DatabaseUnavailable) as failed:
        PostgresCatalog(postgres_server.url(password="wrong-pass-xyz"), 5)
    message = str(failed.value)
    assert message.startswith(f"cannot reach the database at 127.0.0.1:{postgres_server.port}/")
    assert "password authentication failed" in message and "wrong-pass-xyz" not in message
    assert "\n" not in message
