"""Two nodes sharing a real Redis (cluster.redis_url): a push to node A plays from node B.

Each node is a real server process with its own ports and data dir; Redis is Debian's
redis-server, started here on a free port and stopped by PID. ffmpeg pushes to A; B answers the
live playlist, its segments (and LL-HLS parts, with blocking reloads) and /api/streams with what
A publishes, byte for byte; a second publisher of the channel on B is refused while A holds the
channel's lease, and accepted once A is killed and its lease has run out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from periscope_ingest.storage.layout import part_name
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.hls_check import check_part_durations, parse_media_playlist
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.redis_server import RedisServer
from tests.e2e.server import ServerProcess, free_port

pytestmark = pytest.mark.e2e

LEASE_S = 2


def node(tmp_path: Path, name: str, redis: RedisServer, **env: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / f"server-cluster-{name}.log"
    log.unlink(missing_ok=True)
    proc = ServerProcess(
        tmp_path / name,
        log,
        PERISCOPE_CLUSTER__REDIS_URL=redis.url,
        PERISCOPE_CLUSTER__NODE_NAME=name,
        PERISCOPE_CLUSTER__LEASE=str(LEASE_S),
        **env,
    )
    proc.start()
    return proc


def push(server: ServerProcess, channel: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        ffmpeg_command(server.rtmp_url(channel), seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def listed(server: ServerProcess, channel: str, query: str = ""):
    status, _, body = server.get(f"/live/{channel}/index.m3u8{query}")
    return (body.decode(), parse_media_playlist(body.decode())) if status == 200 else None


def same_playlist(a: ServerProcess, b: ServerProcess, channel: str):
    """The live playlist as both nodes answer it at the same moment (between two updates)."""
    first, there, second = listed(a, channel), listed(b, channel), listed(a, channel)
    if first and there and second and first[0] == second[0] == there[0]:
        return there
    return None


def test_a_push_to_one_node_plays_from_the_other_byte_for_byte(tmp_path: Path, redis) -> None:
    a = node(tmp_path, "a", redis)
    b = node(tmp_path, "b", redis)
    pusher = push(a, "shared", 12)
    try:
        _, playlist = b.wait_for(
            lambda: (p := same_playlist(a, b, "shared")) and len(p[1].segments) >= 2 and p,
            30,
            what="the same playlist with two segments on both nodes",
        )
        newest = playlist.segments[-1].uri
        status_a, headers_a, body_a = a.get(f"/live/shared/{newest}")
        status_b, headers_b, body_b = b.get(f"/live/shared/{newest}")
        assert (status_a, status_b) == (200, 200)
        assert body_b == body_a and len(body_a) > 10_000
        assert headers_b["Content-Type"] == headers_a["Content-Type"] == "video/mp2t"
        # An older segment, never fetched on B while it was the newest: from Redis on demand.
        status, _, older = b.get(f"/live/shared/{playlist.segments[0].uri}")
        assert status == 200 and older == a.get(f"/live/shared/{playlist.segments[0].uri}")[2]
        on_a = a.get_json("/api/streams")["streams"]
        on_b = b.get_json("/api/streams")["streams"]
        assert [s["broadcast_id"] for s in on_b] == [s["broadcast_id"] for s in on_a]
        assert on_b[0]["channel"] == "shared" and on_b[0]["video_codec"].startswith("avc1")
        assert on_b[0]["playlist"] == "/live/shared/index.m3u8"

        # Viewers add up across nodes: this client reloads the playlist on both.
        a.wait_for(
            lambda: a.get_json("/api/streams")["streams"][0]["viewers"] == 2,
            10,
            what="A counting B's viewer too",
        )

        # `cluster status` reads the same from Redis: both nodes, A's lease, the stream on A.
        report = json.loads(cluster_status(redis.url, "--json").stdout)
        assert {n["node"] for n in report["nodes"]} == {"a", "b"}
        assert [(lease["channel"], lease["node"]) for lease in report["leases"]] == [
            ("shared", "a")
        ]
        assert [(s["channel"], s["node"]) for s in report["streams"]] == [("shared", "a")]
        text = cluster_status(redis.url).stdout
        assert "leases: shared (" in text and "stream   shared: live on a" in text

        # One publisher per channel across the nodes: B refuses while A takes media.
        second = push(b, "shared", 3)
        assert second.wait(20) != 0
        b.wait_for(lambda: "publish_refused channel=shared" in b.log(), 5, what="a refusal")
    finally:
        pusher.kill()
        pusher.wait()
        a.stop()
        b.stop()


def test_ll_hls_blocking_reload_on_another_node_wakes_with_the_part(tmp_path: Path, redis) -> None:
    ll = {
        "PERISCOPE_HLS__LOW_LATENCY": "true",
        "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
    }
    a = node(tmp_path, "lla", redis, **ll)
    b = node(tmp_path, "llb", redis, **ll)
    pusher = push(a, "ll", 15)
    try:
        _, playlist = b.wait_for(
            lambda: (p := listed(b, "ll")) and p[1].segments and p, 30, what="B's playlist"
        )
        msn = playlist.media_sequence + len(playlist.segments)  # the segment in progress
        asked = time.monotonic()
        result: dict = {}

        def blocking() -> None:
            result["answer"] = b.get(f"/live/ll/index.m3u8?_HLS_msn={msn + 1}&_HLS_part=0")

        held = threading.Thread(target=blocking)
        held.start()
        held.join(15)
        status, _, body = result["answer"]
        waited = time.monotonic() - asked
        assert status == 200, body
        text = body.decode()
        # It was held until the next segment's first part existed, and lists that part.
        assert waited > 0.2, waited
        uris = [
            line.split('URI="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("#EXT-X-PART:")
        ]
        assert any(uri.endswith(part_name(msn + 1, 0)) for uri in uris), text
        # The default 0.2 s parts, on two of ffmpeg's 100 ms steps (30 fps, two B-frames; plus
        # the ms whole-ms timestamps may add), keep the draft's 85 % rule on the node that
        # serves them.
        assert check_part_durations(text) == 203
        # The newest part, from B, has A's bytes.
        assert b.get(f"/live/ll/{uris[-1]}")[2] == a.get(f"/live/ll/{uris[-1]}")[2]
    finally:
        pusher.kill()
        pusher.wait()
        a.stop()
        b.stop()


def test_redis_away_for_a_while_loses_nothing_and_the_nodes_recover(tmp_path: Path, redis) -> None:
    a = node(tmp_path, "fa", redis)
    b = node(tmp_path, "fb", redis)
    pusher = push(a, "steady", 28)
    try:
        b.wait_for(lambda: (p := listed(b, "steady")) and p[1].segments, 30, what="B lists it")
        redis.stop()
        stopped = time.monotonic()
        down_at = listed(a, "steady")[1]
        # Ingest does not wait on Redis: A's live playlist goes on.
        a.wait_for(
            lambda: (
                (p := listed(a, "steady"))
                and p[1].media_sequence + len(p[1].segments)
                >= down_at.media_sequence + len(down_at.segments) + 2
            ),
            15,
            what="A's playlist advancing without Redis",
        )
        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))  # the 10 s outage
        redis.start()
        # B finds the stream again once Redis is back, with A's newest playlist.
        b.wait_for(
            lambda: (p := same_playlist(a, b, "steady")) and p,
            20,
            what="B serving A's playlist again",
        )
        assert pusher.wait(30) == 0
        a.wait_for(lambda: (p := listed(a, "steady")) and p[1].ended, 20, what="the end")
        # Nothing recorded was lost: the replay covers the whole push.
        broadcast = a.once_ended("steady", 10)[0]
        assert broadcast["duration"] >= 26, broadcast
        assert broadcast["discontinuities"] == 0, broadcast
    finally:
        pusher.kill()
        a.stop()
        b.stop()


def test_a_killed_node_frees_its_channels_after_the_lease(tmp_path: Path, redis) -> None:
    a = node(tmp_path, "ka", redis)
    b = node(tmp_path, "kb", redis)
    pusher = push(a, "moving", 30)
    try:
        b.wait_for(lambda: (p := listed(b, "moving")) and p[1].segments, 30, what="B lists it")
        pusher.kill()
        pusher.wait()
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.monotonic()
        # The publisher moves to B: refused while A's lease lasts, then taken.
        taken = None
        while time.monotonic() - killed_at < LEASE_S + 15:
            attempt = push(b, "moving", 6)
            if attempt.wait(20) == 0:
                taken = time.monotonic() - killed_at
                break
        assert taken is not None, b.log()[-3000:]
        ended = b.get_json("/api/broadcasts?channel=moving")
        assert any(item["status"] in ("ended", "live") for item in ended["broadcasts"])
    finally:
        pusher.kill()
        b.stop()


def cluster_status(url: str, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PERISCOPE_CLUSTER__REDIS_URL": url, **settings}
    return subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "cluster", "status", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_an_unreachable_redis_stops_the_start_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    proc = ServerProcess(
        tmp_path / "data",
        tmp_path / "server.log",
        PERISCOPE_CLUSTER__REDIS_URL=f"redis://:secret-password@127.0.0.1:{port}/0",
    )
    with pytest.raises(RuntimeError) as failed:
        proc.start()
    assert proc.process is not None and proc.process.wait(10) == 2
    message = str(failed.value)
    assert f"cannot reach Redis at 127.0.0.1:{port}/0" in message
    assert "secret-password" not in message and "Traceback" not in message


def test_cluster_status_without_redis_says_so() -> None:
    down = cluster_status(f"redis://127.0.0.1:{free_port()}/0")
    assert down.returncode == 1 and "UNREACHABLE" in down.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERISCOPE_CLUSTER")}
    unset = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "cluster", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unset.returncode == 2 and "PERISCOPE_CLUSTER__REDIS_URL" in unset.stderr


def test_cluster_status_asks_the_database_too(redis, postgres_url: str) -> None:
    up = cluster_status(redis.url, "--json", PERISCOPE_CATALOG__URL=postgres_url)
    assert up.returncode == 0, up.stderr
    database = json.loads(up.stdout)["database"]
    assert database["reachable"] and database["address"].startswith("127.0.0.1:")
    password = postgres_url.split(":")[2].split("@")[0]
    wrong = postgres_url.replace(f":{password}@", ":not-the-password@")
    down = cluster_status(redis.url, PERISCOPE_CATALOG__URL=wrong)
    assert down.returncode == 1 and "database" in down.stdout and "UNREACHABLE" in down.stdout
    assert "not-the-password" not in down.stdout + down.stderr
