"""Restreaming to a real nginx-rtmp: set through the API and CLI, forwarded, reconnected."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.e2e import nginx_rtmp
from tests.e2e.conftest import require
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.pushers import ffmpeg_command

pytestmark = pytest.mark.e2e

ADMIN = "restream-admin-token-0123456789"
SERVER_ENV = {
    "PERISCOPE_OPEN_PUBLISH": "false",
    "PERISCOPE_ADMIN_TOKEN": ADMIN,
    "PERISCOPE_HLS__SEGMENT_DURATION": "1",
    "PERISCOPE_RESTREAM__MAX_TARGETS": "2",
    "PERISCOPE_RESTREAM__RETRY_DELAY": "0.2",
    "PERISCOPE_RESTREAM__MAX_RETRY_DELAY": "1",
    "PERISCOPE_RESTREAM__CONNECT_TIMEOUT": "3",
}


def call(server, method: str, path: str, token: str | None = None, body: dict | None = None):
    request = urllib.request.Request(
        server.http + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def new_account(server, handle: str) -> dict:
    status, credentials = call(server, "POST", "/api/accounts", ADMIN, {"handle": handle})
    assert status == 201, credentials
    return credentials


def restream_status(server, channel: str) -> list[dict]:
    for stream in server.get_json("/api/streams")["streams"]:
        if stream["channel"] == channel:
            return stream["restream"]
    return []


def test_only_the_owner_or_the_admin_sets_targets(server):
    alice = new_account(server, "alice")
    bob = new_account(server, "bob")
    path = "/api/channels/alice/restream"
    url = "rtmp://a.rtmp.youtube.com/live2/alice-secret-key"
    assert call(server, "POST", path, None, {"url": url})[0] == 401
    assert call(server, "POST", path, bob["token"], {"url": url})[0] == 401
    assert call(server, "GET", path, bob["token"])[0] == 401
    assert call(server, "POST", path, alice["stream_key"], {"url": url})[0] == 401

    status, added = call(server, "POST", path, alice["token"], {"url": url})
    assert status == 201
    assert added["target"] == "rtmp://a.rtmp.youtube.com:1935/live2/***"
    status, body = call(server, "POST", path, alice["token"], {"url": "http://x/app/key"})
    assert (status, "rtmp:// and rtmps://" in body) == (400, True)
    assert call(server, "POST", path, alice["token"], {"url": url})[0] == 400  # a duplicate
    assert call(server, "POST", path, ADMIN, {"url": "rtmps://b.example/app/k2"})[0] == 201
    status, body = call(server, "POST", path, ADMIN, {"url": "rtmp://c.example/app/k3"})
    assert status == 409 and "PERISCOPE_RESTREAM__MAX_TARGETS" in body

    status, listed = call(server, "GET", path, alice["token"])
    assert status == 200
    assert [t["target"] for t in listed["targets"]] == [
        "rtmp://a.rtmp.youtube.com:1935/live2/***",
        "rtmps://b.example:443/app/***",
    ]
    assert "secret" not in json.dumps(listed)
    target_path = f"{path}/{added['id']}"
    assert call(server, "DELETE", target_path, bob["token"])[0] == 401
    assert call(server, "DELETE", target_path, alice["token"])[0] == 204
    assert call(server, "DELETE", target_path, alice["token"])[0] == 404
    assert call(server, "GET", "/api/channels/nobody/restream", ADMIN)[0] == 404
    assert len(call(server, "GET", path, ADMIN)[1]["targets"]) == 1


def test_cli_adds_lists_and_removes(server):
    new_account(server, "carol")
    env = dict(server.env)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "periscope_ingest", "restream", *args],
            env=env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    url = "rtmp://live.twitch.tv/app/live_123_carolkey"
    added = cli("add", "carol", url)
    assert added.returncode == 0, added.stderr
    assert "rtmp://live.twitch.tv:1935/app/***" in added.stdout and "carolkey" not in added.stdout
    refused = cli("add", "carol", "udp://h/app/key")
    assert refused.returncode == 1 and "rtmp:// and rtmps://" in refused.stderr
    assert cli("add", "nobody", url).returncode == 1
    listed = cli("list", "carol")
    assert listed.returncode == 0
    assert listed.stdout.count("/app/***") == 1 and "carolkey" not in listed.stdout
    # The server sees what the CLI wrote (same data directory).
    assert call(server, "GET", "/api/channels/carol/restream", ADMIN)[1]["targets"][0][
        "target"
    ] == ("rtmp://live.twitch.tv:1935/app/***")
    assert cli("remove", "carol", url).returncode == 0
    assert cli("remove", "carol", url).returncode == 1
    assert cli("list", "carol").stdout == ""


def nginx_segments(target: nginx_rtmp.NginxRtmp, name: str):
    path = target.playlist(name)
    try:
        playlist = parse_media_playlist(path.read_text())
    except (OSError, AssertionError, IndexError):
        return None
    return playlist if playlist.segments else None


def probe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return {s["codec_name"]: s for s in json.loads(out.stdout)["streams"]}


def our_position(server, channel: str) -> tuple[int, bool]:
    """(sequence number after the newest listed segment, any discontinuity listed)."""
    status, _, body = server.get(f"/live/{channel}/index.m3u8")
    if status != 200:
        return 0, False
    playlist = parse_media_playlist(body.decode())
    return (
        playlist.media_sequence + len(playlist.segments),
        any(s.discontinuity for s in playlist.segments),
    )


def test_forwards_to_nginx_rtmp_and_reconnects_after_it_restarts(server):
    if (why := nginx_rtmp.missing()) is not None:
        pytest.fail(why)
    require("ffmpeg")
    require("ffprobe")
    dave = new_account(server, "dave")
    target = nginx_rtmp.NginxRtmp()
    target.start()
    pusher = None
    try:
        status, _ = call(
            server, "POST", "/api/channels/dave/restream", dave["token"], {"url": target.url("fwd")}
        )
        assert status == 201
        pusher = subprocess.Popen(
            ffmpeg_command(server.rtmp_url(dave["stream_key"]), 40),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        server.wait_for(
            lambda: [t["state"] for t in restream_status(server, "dave")] == ["live"],
            15,
            what="the target to go live",
        )
        # nginx-rtmp packages what we forward: H.264 and AAC, 640x360, and it keeps growing.
        first = server.wait_for(
            lambda: (p := nginx_segments(target, "fwd")) and len(p.segments) >= 2 and p,
            15,
            what="nginx-rtmp's HLS playlist",
        )
        streams = probe(target.playlist("fwd"))
        assert set(streams) == {"h264", "aac"}
        assert (streams["h264"]["width"], streams["h264"]["height"]) == (640, 360)
        first_total = sum(s.duration for s in first.segments) + first.media_sequence
        server.wait_for(
            lambda: (
                (p := nginx_segments(target, "fwd"))
                and sum(s.duration for s in p.segments) + p.media_sequence > first_total + 1
            ),
            10,
            what="nginx-rtmp's playlist to grow",
        )
        sent_before = restream_status(server, "dave")[0]["bytes_sent"]
        assert sent_before > 100_000

        # The target goes away: we retry with backoff, and our own stream goes on meanwhile.
        target.stop()
        shutil.rmtree(target.workdir / "hls")
        down = server.wait_for(
            lambda: (s := restream_status(server, "dave")) and s[0]["state"] == "retrying" and s,
            10,
            what="the target to be retried",
        )
        assert down[0]["last_error"]
        position, _ = our_position(server, "dave")
        server.wait_for(
            lambda: (
                our_position(server, "dave")[0] >= position + 2
                and restream_status(server, "dave")[0]["reconnects"] >= 2
            ),
            10,
            what="our playlist to advance while the target is down",
        )
        assert restream_status(server, "dave")[0]["state"] == "retrying"

        target.start()
        server.wait_for(
            lambda: restream_status(server, "dave")[0]["state"] == "live",
            10,
            what="the target to be live again",
        )
        again = server.wait_for(
            lambda: (p := nginx_segments(target, "fwd")) and len(p.segments) >= 2 and p,
            15,
            what="nginx-rtmp's HLS playlist after its restart",
        )
        assert set(probe(target.playlist("fwd"))) == {"h264", "aac"}
        assert sum(s.duration for s in again.segments) >= 1.5
        status_now = restream_status(server, "dave")[0]
        assert status_now["bytes_sent"] > sent_before
        assert status_now["drops"] == 0
        assert our_position(server, "dave")[1] is False  # no gap in our own stream

        _, _, metrics = server.get("/metrics")
        text = metrics.decode()
        assert 'periscope_restream_targets{state="live"} 1.0' in text
        assert 'periscope_restream_reconnects_total{channel="dave"}' in text
        assert 'periscope_restream_sent_bytes_total{channel="dave"}' in text
        assert "fwd" not in text  # never the target's stream name
    finally:
        if pusher is not None:
            pusher.terminate()
            pusher.wait(10)
        target.remove()
