"""Two servers, two data directories, one PostgreSQL: a channel made with the CLI publishes to
one node, and the other node lists the broadcast it recorded (catalog.url)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess

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
