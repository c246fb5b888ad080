"""Every broadcast recorded: replays, MP4 and clips, reconnects, crashes, archives, the CLI."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import av
import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.hls_check import analyse_segment, parse_media_playlist
from tests.e2e.pushers import FPS, ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist, push_in_background

pytestmark = pytest.mark.e2e

GRACE = 3.0
SERVER_ENV = {"PERISCOPE_RECORDING__RECONNECT_GRACE": str(GRACE)}
FRAME = 1 / FPS


def wait_mp4_ready(server: ServerProcess, broadcast_id: str, timeout: float = 30) -> dict:
    return server.wait_for(
        lambda: (b := server.get_json(f"/api/broadcasts/{broadcast_id}"))["mp4_ready"] and b,
        timeout,
        interval=0.1,
        what="MP4 export",
    )


def probe_mp4(data: bytes) -> dict:
    """Decode every frame; durations and start times as a player sees them (edit lists applied)."""
    container = av.open(io.BytesIO(data), format="mp4")
    info = {"duration": container.duration / 1_000_000, "streams": {}}
    for stream in container.streams:
        decoded = [f for f in container.decode(stream)] if stream.type != "data" else []
        container.seek(0)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0
        info["streams"][stream.type] = {"frames": len(decoded), "start": start}
    first_video = None
    container.seek(0)
    for frame in container.decode(video=0) if container.streams.video else []:
        first_video = frame.time
        break
    info["first_video_time"] = first_video
    container.close()
    return info


def top_level_boxes(data: bytes) -> list[str]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        boxes.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return boxes


def test_broadcast_is_recorded_replayable_and_downloadable(server: ServerProcess) -> None:
    channel = "rec"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(channel), 20)
    # While live: the broadcast is listed as live, and its EVENT playlist lets a late viewer
    # start from the beginning.
    live = server.wait_for(lambda: server.broadcasts(channel, "live"), 10, what="live listing")
    broadcast_id = live[0]["id"]
    event = server.wait_for(
        lambda: (
            (p := playlist_at(server, f"/replays/{broadcast_id}/index.m3u8"))
            and len(p.segments) >= 2
            and p
        ),
        15,
    )
    assert event.playlist_type == "EVENT" and not event.ended
    assert event.media_sequence == 0 and event.segments[0].uri == "000000.ts"
    check_recording_grows_by_appends(server, channel, broadcast_id, len(event.segments))
    thread.join(60)
    assert "error" not in outcome, outcome.get("error")

    record = server.wait_for(
        lambda: (b := server.broadcasts(channel)) and b[0]["status"] == "ended" and b[0], 5
    )
    assert record["id"] == broadcast_id
    assert abs(record["duration"] - 20) <= 0.1
    assert record["video_codec"].startswith("avc1.") and record["audio_codec"] == "mp4a.40.2"
    assert (record["width"], record["height"]) == (640, 360)
    assert record["ended_at"] > record["started_at"]

    vod = playlist_at(server, f"/replays/{broadcast_id}/index.m3u8")
    assert vod.playlist_type == "VOD" and vod.ended
    assert abs(sum(s.duration for s in vod.segments) - 20) <= 0.1
    for listed in vod.segments:
        status, _, body = server.get(f"/replays/{broadcast_id}/{listed.uri}")
        assert status == 200
        assert analyse_segment(body).video[0][2]

    wait_mp4_ready(server, broadcast_id)
    status, headers, mp4 = server.get(f"/replays/{broadcast_id}.mp4")
    assert status == 200
    assert headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(mp4)
    assert headers["Content-Disposition"].startswith('attachment; filename="rec-20')
    boxes = top_level_boxes(mp4)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # seekable at once
    info = probe_mp4(mp4)
    assert abs(info["duration"] - 20) <= 0.1, info
    assert info["streams"]["video"]["frames"] == 20 * FPS
    # Audio and video start together, within a frame.
    assert abs(info["streams"]["video"]["start"] - info["streams"]["audio"]["start"]) <= FRAME

    status, headers, part = server.get(
        f"/replays/{broadcast_id}.mp4", headers={"Range": "bytes=1000-4999"}
    )
    assert status == 206 and part == mp4[1000:5000]
    assert headers["Content-Range"] == f"bytes 1000-4999/{len(mp4)}"

    status, headers, clip = server.get(f"/replays/{broadcast_id}.mp4?start=5&end=10")
    assert status == 200
    assert "clip-5-10s" in headers["Content-Disposition"]
    clip_info = probe_mp4(clip)
    assert abs(clip_info["duration"] - 5) <= FRAME + 0.001, clip_info

    for bad in ("start=abc", "start=10&end=5", "start=-1", "start=99"):
        status, _, _ = server.get(f"/replays/{broadcast_id}.mp4?{bad}")
        assert status == 400, bad


def check_recording_grows_by_appends(
    server: ServerProcess, channel: str, broadcast_id: str, listed: int
) -> None:
    """While live the recording playlist is appended to, not rewritten (storage/growing_file.py),
    and a player is served its complete entries only, even while an append is half done."""
    path = server.data_dir / "channels" / channel / broadcast_id / "recording.m3u8"
    url = f"/replays/{broadcast_id}/index.m3u8"
    inode = path.stat().st_ino
    grown = server.wait_for(
        lambda: (p := playlist_at(server, url)) and len(p.segments) > listed and p, 10
    )
    assert path.stat().st_ino == inode  # the same file, longer
    # Just after a segment was listed the next one is seconds away: the file is ours to tear.
    whole = path.read_bytes()
    assert parse_media_playlist(whole.decode()).segments == grown.segments
    with path.open("ab") as file:
        file.write(b"#EXT-X-PROGRAM-DATE-TIME:2026-12-04T19:0")  # an append caught half done
    try:
        status, _, body = server.get(url)
    finally:
        with path.open("r+b") as file:
            file.truncate(len(whole))
    assert status == 200 and body == whole


def playlist_at(server: ServerProcess, path: str):
    status, _, body = server.get(path)
    return parse_media_playlist(body.decode()) if status == 200 else None


def test_reconnect_within_grace_continues_the_broadcast(server: ServerProcess) -> None:
    require("ffmpeg")
    channel = "phone"
    first = subprocess.Popen(
        ffmpeg_command(server.rtmp_url(channel), 30), stderr=subprocess.DEVNULL
    )
    try:
        server.wait_for(lambda: (p := playlist(server, channel)) and len(p.segments) >= 2, 15)
    finally:
        first.kill()  # the phone dropped off the network: no unpublish
        first.wait()
    dropped_at = time.monotonic()
    second = subprocess.run(ffmpeg_command(server.rtmp_url(channel), 5), capture_output=True)
    assert time.monotonic() - dropped_at > 5
    assert second.returncode == 0, second.stderr
    (record,) = server.wait_for(
        lambda: (b := server.broadcasts(channel)) and b[0]["status"] == "ended" and b, 10
    )
    assert record["discontinuities"] == 1
    vod = playlist_at(server, f"/replays/{record['id']}/index.m3u8")
    flags = [s.discontinuity for s in vod.segments]
    assert flags.count(True) == 1 and not flags[0]
    live = playlist(server, channel)
    assert (
        live.ended
        and sum(s.discontinuity for s in live.segments) + live.discontinuity_sequence == 1
    )
    # The continuation keeps one timeline: the MP4 of the whole broadcast decodes.
    wait_mp4_ready(server, record["id"])
    status, _, mp4 = server.get(f"/replays/{record['id']}.mp4")
    assert status == 200
    assert abs(probe_mp4(mp4)["duration"] - record["duration"]) <= 0.1


def test_reconnect_after_grace_starts_a_new_broadcast(server: ServerProcess) -> None:
    require("ffmpeg")
    channel = "late"
    first = subprocess.Popen(
        ffmpeg_command(server.rtmp_url(channel), 30), stderr=subprocess.DEVNULL
    )
    try:
        server.wait_for(lambda: (p := playlist(server, channel)) and p.segments, 15)
    finally:
        first.kill()
        first.wait()
    server.wait_for(lambda: (p := playlist(server, channel)) and p.ended, GRACE + 2)
    push_pyav(server.rtmp_url(channel), 3, realtime=False)
    records = server.wait_for(
        lambda: (
            (b := server.broadcasts(channel)) and len(b) == 2 and b[0]["status"] == "ended" and b
        ),
        10,
    )
    assert len({r["id"] for r in records}) == 2
    assert all(r["discontinuities"] == 0 for r in records)


def test_archive_zip_holds_every_broadcast_as_mp4(server: ServerProcess) -> None:
    channel = "archive"
    for _ in range(2):
        push_pyav(server.rtmp_url(channel), 3, realtime=False)
    records = server.wait_for(
        lambda: (b := server.broadcasts(channel, "ended")) and len(b) == 2 and b, 10
    )
    status, headers, body = server.get(f"/api/channels/{channel}/archive.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        metadata = json.loads(archive.read(f"{channel}/broadcasts.json"))
        assert {m["id"] for m in metadata} == {r["id"] for r in records}
        mp4s = [n for n in names if n.endswith(".mp4")]
        assert len(mp4s) == 2
        for name in mp4s:
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
            info = probe_mp4(archive.read(name))
            assert abs(info["duration"] - 3) <= 0.1
    assert server.get("/api/channels/nobody/archive.zip")[0] == 404


def test_kill_9_mid_broadcast_is_recovered_as_interrupted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = ARTIFACTS / "server-kill9.log"
    log.unlink(missing_ok=True)
    proc = ServerProcess(data, log)
    proc.start()
    channel = "crash"
    thread, _ = push_in_background(push_pyav, proc.rtmp_url(channel), 30)
    proc.wait_for(lambda: (p := playlist(proc, channel)) and len(p.segments) >= 3, 20)
    assert proc.stop(signal.SIGKILL) == -signal.SIGKILL
    thread.join(30)

    restarted = ServerProcess(data, log)
    restarted.start()
    try:
        (record,) = restarted.broadcasts(channel)
        assert record["status"] == "interrupted"
        assert record["duration"] >= 6
        vod = playlist_at(restarted, f"/replays/{record['id']}/index.m3u8")
        assert vod.ended and vod.playlist_type == "VOD"
        assert abs(sum(s.duration for s in vod.segments) - record["duration"]) <= 0.01
        assert playlist(restarted, channel).ended
        # The segment being written at the kill is gone, not listed, not left half-written.
        assert not [p for p in data.rglob(".*.part") if not p.name.startswith(".recording")]
        wait_mp4_ready(restarted, record["id"])
        assert not list(data.rglob(".*.part"))
        status, _, mp4 = restarted.get(f"/replays/{record['id']}.mp4")
        assert status == 200
        assert abs(probe_mp4(mp4)["duration"] - record["duration"]) <= 0.1
    finally:
        restarted.stop()


def test_cli_lists_exports_and_rebuilds(tmp_path: Path, server: ServerProcess) -> None:
    channel = "clichan"
    push_pyav(server.rtmp_url(channel), 4, realtime=False)
    (record,) = server.wait_for(lambda: (b := server.broadcasts(channel, "ended")) and b, 10)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "periscope_ingest", *args],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = cli("broadcasts", "list", "--channel", channel, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [record["id"]]

    out = tmp_path / "one.mp4"
    result = cli("export", record["id"], "-o", str(out), "--start", "1", "--end", "3")
    assert result.returncode == 0, result.stderr
    assert abs(probe_mp4(out.read_bytes())["duration"] - 2) <= FRAME + 0.001

    folder = tmp_path / "all"
    result = cli("export", "--channel", channel, "-o", str(folder))
    assert result.returncode == 0, result.stderr
    (exported,) = folder.iterdir()
    assert abs(probe_mp4(exported.read_bytes())["duration"] - 4) <= 0.1

    result = cli("export", "nosuchbroadc", "-o", str(out))
    assert result.returncode == 1 and "no broadcast nosuchbroadc" in result.stderr

    (server.data_dir / "catalog.sqlite3").unlink()
    for suffix in ("-wal", "-shm"):
        (server.data_dir / f"catalog.sqlite3{suffix}").unlink(missing_ok=True)
    rebuilt = cli("catalog", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    listed = cli("broadcasts", "list", "--json")
    assert record["id"] in {r["id"] for r in json.loads(listed.stdout)}
