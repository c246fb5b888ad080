"""`serve --workers 2`: two processes on the same ports and data directory, one machine.

Publishers are spread over both processes by the kernel (SO_REUSEPORT); every stream plays
through the one HTTP port whichever process answers; a process killed with SIGKILL is started
again, its broadcasts finalised once while the other's go on; SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e


def cluster_status(url: str) -> dict:
    env = {**os.environ, "PERISCOPE_CLUSTER__REDIS_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "cluster", "status", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return json.loads(done.stdout)


def pids(url: str) -> dict[str, int]:
    return {node["node"]: int(node["pid"]) for node in cluster_status(url).get("nodes", [])}


def running(pid: int) -> bool:
    """Whether the process runs (a zombie no longer does: its parent is gone, not it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def push(server: ServerProcess, channel: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        ffmpeg_command(server.rtmp_url(channel), seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_two_workers_share_the_ports_and_every_stream(tmp_path: Path, redis) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "server-workers.log"
    log.unlink(missing_ok=True)
    server = ServerProcess(
        tmp_path / "data",
        log,
        PERISCOPE_CLUSTER__REDIS_URL=redis.url,
        PERISCOPE_CLUSTER__LEASE="2",
    )
    server.serve_args = ["--workers", "2"]
    server.start()
    host = socket.gethostname()
    names = {f"{host}-w0", f"{host}-w1"}
    pushers: list[subprocess.Popen] = []
    try:
        server.wait_for(
            lambda: {n["node"] for n in cluster_status(redis.url).get("nodes", [])} == names,
            20,
            what="both workers in the cluster",
        )
        # The kernel spreads new connections: push until both workers take some streams in.
        channels: list[str] = []
        holders: dict[str, str] = {}
        while len(set(holders.values())) < 2 and len(channels) < 16:
            for _ in range(4):
                channels.append(f"c{len(channels)}")
                pushers.append(push(server, channels[-1], 40))
            server.wait_for(
                lambda: len(cluster_status(redis.url)["leases"]) == len(channels),
                20,
                what=f"{len(channels)} leases",
            )
            holders = {
                lease["channel"]: lease["node"] for lease in cluster_status(redis.url)["leases"]
            }
        assert set(holders.values()) == names, holders
        # Every stream plays through the one port, whichever process a connection reaches.
        for channel in channels:
            server.wait_for(
                lambda c=channel: all(
                    server.get(f"/live/{c}/index.m3u8")[0] == 200 for _ in range(4)
                ),
                20,
                what=f"{channel} listed by whichever process answers",
            )
        listed = {s["channel"] for s in server.get_json("/api/streams")["streams"]}
        assert listed == set(channels)

        # SIGKILL one worker: it is started again, its broadcasts finalised once, the other's
        # go on.
        nodes = pids(redis.url)
        victim = f"{host}-w1"
        victims = {c for c, n in holders.items() if n == victim}
        os.kill(nodes[victim], signal.SIGKILL)
        server.wait_for(
            lambda: pids(redis.url).get(victim) not in (None, nodes[victim]),
            30,
            what="the killed worker started again",
        )
        records = server.wait_for(
            lambda: (
                (
                    found := [
                        b
                        for b in server.get_json("/api/broadcasts?limit=100")["broadcasts"]
                        if b["channel"] in victims and b["status"] == "interrupted"
                    ]
                )
                and len(found) == len(victims)
                and found
            ),
            30,
            what="the killed worker's broadcasts finalised as interrupted",
        )
        text = server.log()
        # Each worker runs on the default loop (the restarted one may not have said so yet).
        loops = re.findall(r"server_started .*event_loop=(\w+)", text)
        assert len(loops) >= 2 and set(loops) == {"uvloop"}
        for record in records:  # once, by one process
            line = f"broadcast_recovered channel={record['channel']} broadcast={record['id']}"
            assert text.count(line) == 1, line
        survivors = [c for c, n in holders.items() if n != victim]
        for channel in survivors:
            status, _, _ = server.get(f"/live/{channel}/index.m3u8")
            assert status == 200
    finally:
        for pusher in pushers:
            pusher.kill()
            pusher.wait()
        code = server.stop()
    assert code == 0
    assert cluster_status(redis.url)["nodes"] == []


def test_workers_need_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERISCOPE_")}
    env["PERISCOPE_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "serve", "--workers", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--workers needs cluster.redis_url" in done.stderr


def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path, redis) -> None:
    server = ServerProcess(
        tmp_path / "data", tmp_path / "server.log", PERISCOPE_CLUSTER__REDIS_URL=redis.url
    )
    server.serve_args = ["--workers", "2"]
    server.start()
    workers: dict[str, int] = {}
    try:
        workers = server.wait_for(
            lambda: len(p := pids(redis.url)) == 2 and p, 20, what="both workers running"
        )
    finally:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    deadline = time.monotonic() + 20
    alive = set(workers.values())
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if running(pid)}
        time.sleep(0.1)
    assert not alive, f"workers still running after their supervisor was killed: {alive}"
