"""A broadcast moves with its publisher between two nodes (live/handover.py): real Redis, a real
S3 endpoint (moto's server) and two real server processes, each with its own ports and data dir.

ffmpeg pushes to node A while a viewer plays from node B. Then either A is killed with
``kill -9`` or only the publisher drops off A, and the publisher comes back on B within
recording.reconnect_grace. Either way the replay is one broadcast with one discontinuity, at
most one segment of A's lost, and its MP4 is made on B from the segments A left in the store.
If the publisher does not come back in time, B finalises A's broadcast from the store.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import require
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.moto_s3 import MotoS3
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.redis_server import RedisServer
from tests.e2e.server import ServerProcess
from tests.e2e.test_cluster import LEASE_S
from tests.e2e.test_cluster import node as cluster_node
from tests.e2e.test_recordings import probe_mp4

pytestmark = pytest.mark.e2e

BUCKET = "handover"
GRACE_S = 12


def node(
    tmp_path: Path, name: str, redis: RedisServer, moto: MotoS3, grace: float = GRACE_S
) -> ServerProcess:
    """A cluster node (test_cluster.node: cluster.lease LEASE_S) storing in the shared bucket.
    Its recording playlists go up whole once and then as their new lines only (a tail,
    storage/recording_tail.py), as a long broadcast's do: what the other node continues from
    is the two joined."""
    return cluster_node(
        tmp_path,
        name,
        redis,
        PERISCOPE_RECORDING__RECONNECT_GRACE=str(grace),
        PERISCOPE_STORAGE__RECORDING_PLAYLIST_KIB_S="0.001",
        **moto.env(BUCKET, tmp_path.name),
    )


def push(server: ServerProcess, channel: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        ffmpeg_command(server.rtmp_url(channel), seconds),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@dataclass
class TwoNodes:
    """Nodes A and B of one cluster (one Redis, one bucket), ffmpeg pushing to A (``first``),
    and the publisher's comeback (``second``) once a test starts it."""

    a: ServerProcess
    b: ServerProcess
    first: subprocess.Popen
    second: subprocess.Popen | None = None


@contextlib.contextmanager
def two_nodes_publishing_on_a(
    tmp_path: Path,
    redis: RedisServer,
    moto: MotoS3,
    names: tuple[str, str],
    channel: str,
    grace: float = GRACE_S,
) -> Iterator[TwoNodes]:
    """Start both nodes (``names``: their node names and log names, distinct per test) and a
    60 s push of ``channel`` to A; at the end kill the pushers and stop both nodes, whatever
    the test did to them (stopping a node the test killed only reaps it)."""
    require("ffmpeg")
    with contextlib.ExitStack() as cleanup:  # undone in reverse: pushers, B, A
        a = node(tmp_path, names[0], redis, moto, grace)
        cleanup.callback(a.stop)
        b = node(tmp_path, names[1], redis, moto, grace)
        cleanup.callback(b.stop)
        nodes = TwoNodes(a, b, push(a, channel, 60))
        cleanup.callback(kill_pushers, nodes)
        yield nodes


def kill_pushers(nodes: TwoNodes) -> None:
    for pusher in (nodes.first, nodes.second):
        if pusher is not None:
            pusher.kill()
            pusher.wait()


def live_playlist(server: ServerProcess, channel: str):
    status, _, body = server.get(f"/live/{channel}/index.m3u8")
    return parse_media_playlist(body.decode()) if status == 200 else None


def push_until_taken(server: ServerProcess, channel: str, seconds: float, within: float):
    """Push to ``server`` until it takes the publish (the other node's lease must run out
    first), as an encoder's reconnect loop does; returns the pusher that was taken."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pusher = push(server, channel, seconds)
        taken = server.wait_for(
            lambda p=pusher: (
                "taken"
                if f"broadcast_continued channel={channel}" in server.log()
                else "refused"
                if p.poll() is not None
                else None
            ),
            seconds,
            what="a refusal or the publish taken",
        )
        if taken == "taken":
            return pusher
        time.sleep(0.2)
    raise AssertionError(f"{server.http} never took the publish:\n{server.log()[-3000:]}")


def check_replay(server: ServerProcess, broadcast_id: str, listed_on_a: int, pushed_on_b: float):
    """One recording: A's segments (at most one lost), one discontinuity, B's segments; its MP4
    (made on B from A's segments in the store) as long as the playlist says."""
    status, _, body = server.get(f"/replays/{broadcast_id}/index.m3u8")
    assert status == 200
    text = body.decode()
    replay = parse_media_playlist(text)
    assert "#EXT-X-ENDLIST" in text and text.count("#EXT-X-DISCONTINUITY\n") == 1, text
    names = [s.uri for s in replay.segments]
    before = text.split("#EXT-X-DISCONTINUITY\n")[0].count("#EXTINF")
    assert before >= listed_on_a - 1, (before, listed_on_a)
    # One numbering: A's segments from 0, then B's after the last A listed (one of A's may not
    # have reached the store: its number is not given to another segment).
    numbers = [int(name.removesuffix(".ts")) for name in names]
    assert numbers[:before] == list(range(before)), names
    assert numbers[before:] == list(range(numbers[before], numbers[before] + len(names) - before))
    assert before <= numbers[before] <= before + 1, names
    after = sum(s.duration for s in replay.segments[before:])
    assert pushed_on_b - 2.5 <= after <= pushed_on_b + 0.5, after
    for segment in replay.segments:
        status, _, data = server.get(f"/replays/{broadcast_id}/{segment.uri}")
        assert status == 200 and data[:1] == b"\x47", segment.uri
    record = server.wait_for(
        lambda: (b := server.get_json(f"/api/broadcasts/{broadcast_id}"))["mp4_ready"] and b,
        60,
        interval=0.2,
        what="the MP4 made on B",
    )
    assert record["discontinuities"] == 1 and record["segments"] == len(names)
    status, _, mp4 = server.get(f"/replays/{broadcast_id}.mp4")
    assert status == 200
    total = sum(s.duration for s in replay.segments)
    assert abs(probe_mp4(mp4)["duration"] - total) <= 0.5, (probe_mp4(mp4), total)


def test_a_publisher_back_on_another_node_after_kill_9_continues_its_broadcast(
    tmp_path: Path, redis, moto: MotoS3
) -> None:
    with two_nodes_publishing_on_a(tmp_path, redis, moto, ("a", "b"), "moving") as nodes:
        a, b = nodes.a, nodes.b
        # A viewer on B plays what A takes in.
        seen = b.wait_for(
            lambda: (p := live_playlist(b, "moving")) and len(p.segments) >= 3 and p,
            40,
            what="B listing three of A's segments",
        )
        newest = seen.segments[-1].uri
        status, _, media = b.get(f"/live/moving/{newest}")
        assert (
            status == 200 and media[:1] == b"\x47" and media == a.get(f"/live/moving/{newest}")[2]
        )
        broadcast_id = a.only_broadcast("moving")["id"]
        on_a = live_playlist(a, "moving")
        assert on_a is not None
        listed_on_a = on_a.media_sequence + len(on_a.segments)
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        nodes.first.kill()
        nodes.first.wait()

        nodes.second = push_until_taken(b, "moving", 8, within=GRACE_S)
        b.wait_for(lambda: "broadcast_adopted" in b.log(), 10, what="the adoption")
        assert f"broadcast={broadcast_id}" in b.log().split("broadcast_adopted", 1)[1][:400]
        # B's viewer goes on with the same numbering (RFC 8216 6.2.2), after a discontinuity.
        after = b.wait_for(
            lambda: (p := live_playlist(b, "moving")) and p.media_sequence >= listed_on_a and p,
            20,
            what="B's own live playlist",
        )
        assert listed_on_a <= after.media_sequence <= listed_on_a + 1
        assert after.media_sequence > seen.media_sequence
        assert nodes.second.wait(30) == 0
        b.wait_for(lambda: b.only_broadcast("moving")["status"] == "ended", 20, what="the end on B")
        assert b.only_broadcast("moving")["id"] == broadcast_id
        check_replay(b, broadcast_id, listed_on_a, 8)


def test_a_publisher_that_moves_while_both_nodes_run_is_handed_over(
    tmp_path: Path, redis, moto: MotoS3
) -> None:
    with two_nodes_publishing_on_a(tmp_path, redis, moto, ("ha", "hb"), "moving") as nodes:
        a, b = nodes.a, nodes.b
        a.wait_for(
            lambda: (p := live_playlist(a, "moving")) and len(p.segments) >= 3,
            40,
            what="three segments on A",
        )
        broadcast_id = a.only_broadcast("moving")["id"]
        nodes.first.kill()  # the phone drops off the network: no unpublish
        nodes.first.wait()
        a.wait_for(lambda: "publisher_gone" in a.log(), 10, what="A noticing")
        on_a = a.wait_for(
            lambda: (p := live_playlist(a, "moving")) and p, 5, what="A's last playlist"
        )
        nodes.second = push_until_taken(b, "moving", 8, within=GRACE_S)
        a.wait_for(lambda: "broadcast_handed_over" in a.log(), 15, what="A handing it over")
        assert nodes.second.wait(30) == 0
        b.wait_for(lambda: b.only_broadcast("moving")["status"] == "ended", 20, what="the end on B")
        # A never ended it: no ENDLIST, no final record of its own, no second broadcast.
        assert "broadcast_ended" not in a.log()
        assert b.only_broadcast("moving")["id"] == broadcast_id
        listed_on_a = on_a.media_sequence + len(on_a.segments)
        check_replay(b, broadcast_id, listed_on_a, 8)


def test_a_dead_nodes_broadcast_is_finalised_by_another_node(
    tmp_path: Path, redis, moto: MotoS3
) -> None:
    grace = 3
    with two_nodes_publishing_on_a(tmp_path, redis, moto, ("da", "db"), "orphan", grace) as nodes:
        a, b = nodes.a, nodes.b
        on_a = a.wait_for(
            lambda: (p := live_playlist(a, "orphan")) and len(p.segments) >= 3 and p,
            40,
            what="three segments on A",
        )
        broadcast_id = a.only_broadcast("orphan")["id"]
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.monotonic()
        nodes.first.kill()
        # Nobody comes back: once the grace window and a lease are over, B finalises it.
        b.wait_for(lambda: "broadcast_recovered" in b.log(), grace + LEASE_S + 20, what="B")
        assert time.monotonic() - killed_at >= grace, "finalised within the grace window"
        record = b.wait_for(
            lambda: (r := b.get_json(f"/api/broadcasts/{broadcast_id}"))["mp4_ready"] and r,
            60,
            interval=0.2,
            what="the MP4 made on B",
        )
        assert record["status"] == "interrupted"
        listed_on_a = on_a.media_sequence + len(on_a.segments)
        assert record["segments"] >= listed_on_a - 1
        status, _, body = b.get(f"/replays/{broadcast_id}/index.m3u8")
        assert status == 200 and "#EXT-X-ENDLIST" in body.decode()
        replay = parse_media_playlist(body.decode())
        assert len(replay.segments) == record["segments"]
        status, _, mp4 = b.get(f"/replays/{broadcast_id}.mp4")
        total = sum(s.duration for s in replay.segments)
        assert status == 200 and abs(probe_mp4(mp4)["duration"] - total) <= 0.5
        # Once only: nothing left in Redis for anyone to finalise again.
        import redis as redis_client

        with redis_client.Redis.from_url(redis.url) as client:
            assert client.exists("periscope:broadcast:orphan") == 0
        assert b.log().count("broadcast_recovered") == 1
