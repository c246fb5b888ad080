"""Two servers, two data directories, one PostgreSQL: a channel made with the CLI publishes to
one node, and the other node lists the broadcast it recorded (catalog.url)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e


def cli(data_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERISCOPE_DATA_DIR": str(data_dir), "PERISCOPE_CATALOG__URL": url}
    return subprocess.run(
        [sys.executable, "-m", "periscope_ingest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_broadcast_pushed_to_one_node_is_listed_by_another(
    tmp_path: Path, postgres_server, postgres_url: str
) -> None:
    first, second = tmp_path / "node1", tmp_path / "node2"
    made = cli(first, postgres_url, "accounts", "create", "alice", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["stream_key"]
    # The keys' HMAC secret is a file, never in the database: every node gets the same one.
    second.mkdir()
    shutil.copy2(first / "server-secret", second / "server-secret")
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"PERISCOPE_CATALOG__URL": postgres_url, "PERISCOPE_OPEN_PUBLISH": "false"}
    node1 = ServerProcess(first, ARTIFACTS / "server-postgres-node1.log", **env)
    node2 = ServerProcess(second, ARTIFACTS / "server-postgres-node2.log", **env)
    node1.start()
    try:
        node2.start()
        try:
            push_pyav(node1.rtmp_url(key), 2, realtime=False)
            ended = node1.wait_for(
                lambda: [
                    b
                    for b in node1.get_json("/api/broadcasts?channel=alice")["broadcasts"]
                    if b["status"] == "ended"
                ],
                20,
                what="the broadcast ended in node1's listing",
            )
            (listed,) = node2.get_json("/api/broadcasts?channel=alice")["broadcasts"]
            assert listed["id"] == ended[0]["id"] and listed["segments"] > 0
        finally:
            node2.stop()
    finally:
        node1.stop()
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT id, channel, status FROM broadcasts").fetchall()
    assert rows == [(listed["id"], "alice", "ended")]
    # The key node1 took was made by the CLI in the database: no SQLite file was involved.
    for name in ("catalog.sqlite3", "accounts.sqlite3", "restream.sqlite3"):
        assert not (first / name).exists() and not (second / name).exists(), name
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in node1.log() + node2.log()
    assert password not in cli(first, postgres_url, "config", "show").stdout


def test_a_database_frozen_mid_broadcast_costs_the_recording_nothing(
    tmp_path: Path, postgres_server, postgres_url: str
) -> None:
    """PostgreSQL stops answering for 10 s while a broadcast is taken in: the live playlist goes
    on, the recording is whole, and the catalog row catches up once the database is back."""
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "server-postgres-frozen.log"
    log.unlink(missing_ok=True)
    server = ServerProcess(
        tmp_path / "data", log, PERISCOPE_CATALOG__URL=postgres_url, PERISCOPE_CATALOG__TIMEOUT="1"
    )
    server.start()
    pusher = subprocess.Popen(
        ffmpeg_command(server.rtmp_url("steady"), 26),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    frozen: list[int] = []
    try:
        first = server.wait_for(lambda: playlist(server, "steady"), 20, what="a playlist")
        frozen = postgres_server.backend_pids(postgres_url)
        assert frozen, "the server holds connections to its database"
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        time.sleep(0.5)  # what the server writes from here on meets a database that is away
        # The record is saved every 10 s: one save meets the frozen database, and fails alone.
        server.wait_for(
            lambda: "catalog_write_failed" in server.log(), 15, what="a catalog write failing"
        )
        # Ingest does not wait on the catalog: the live playlist goes on while it is away. (Not
        # checked the moment the failure is logged: the save that fails may be the first
        # segment's, made just after the test saw that segment listed.)
        listed_first = first.media_sequence + len(first.segments)
        server.wait_for(
            lambda: (
                (now := playlist(server, "steady"))
                and now.media_sequence + len(now.segments) >= listed_first + 3
            ),
            max(0.5, 9.5 - (time.monotonic() - frozen_at)),
            what="three more segments listed while the database is away",
        )
        time.sleep(max(0.0, 10 - (time.monotonic() - frozen_at)))  # the 10 s outage
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        frozen = []
        assert pusher.wait(40) == 0
        done = server.wait_for(
            lambda: [
                b
                for b in server.get_json("/api/broadcasts?channel=steady")["broadcasts"]
                if b["status"] == "ended"
            ],
            30,
            what="the ended broadcast in the catalog",
        )
        assert done[0]["duration"] >= 25 and done[0]["discontinuities"] == 0, done
        text = server.log()
        assert "catalog_write_recovered" in text and "segment_writer_failed" not in text
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
        pusher.kill()
        server.stop()
