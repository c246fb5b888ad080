"""Object storage (storage.url s3://) against a real S3 endpoint (moto's server): every finished
file reaches the bucket with the bytes on disk, a node with an empty data directory serves the
replay and its MP4 from the bucket (exports read in ranges, never copied to its disk), and a
store that stops answering never holds up ingest.

A second node gets the broadcast's catalog row by a copy of the first node's catalog file (the
catalog is per node here; a shared PostgreSQL catalog is another piece of issue #15).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.moto_s3 import MotoS3
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess, free_port
from tests.e2e.test_live_push import playlist
from tests.e2e.test_recordings import probe_mp4

pytestmark = pytest.mark.e2e

BUCKET = "recordings"
PREFIX = "node-files"
ADMIN_TOKEN = "object-storage-admin-token"
SERVER_ENV = {
    "PERISCOPE_ADMIN_TOKEN": ADMIN_TOKEN,
    "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",  # init segments must be stored too
    # A paused store must fail fast here, so that its retries are seen within the test.
    "PERISCOPE_STORAGE__REQUEST_TIMEOUT": "1",
    "PERISCOPE_STORAGE__UPLOAD_RETRY_MAX": "1",
}


def start_server(moto: MotoS3, data_dir: Path, name: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"server-test_object_storage-{name}.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(data_dir, log_path, **SERVER_ENV, **moto.env(BUCKET, PREFIX))
    server.start()
    return server


def recorded_files(directory: Path) -> dict[str, bytes]:
    """What must be in the store: the segments the recording lists, the init segments, the
    recording playlist, the record and the MP4 (not the live-only LL-HLS parts, no temp files)."""
    listed = [
        s.uri for s in parse_media_playlist((directory / "recording.m3u8").read_text()).segments
    ]
    names = {*listed, "recording.m3u8", "broadcast.json"}
    names |= {p.name for p in directory.glob("init-*.mp4")}
    names |= {p.name for p in directory.glob("recording.mp4")}
    names |= {p.name for p in directory.glob("poster.jpg")}
    return {name: (directory / name).read_bytes() for name in names}


def wait_uploaded(moto: MotoS3, server: ServerProcess, directory: Path, timeout: float = 30):
    """Until the bucket holds every recorded file of ``directory`` with the same bytes."""
    channel, broadcast_id = directory.parent.name, directory.name
    prefix = f"{PREFIX}/channels/{channel}/{broadcast_id}/"

    def same() -> dict[str, bytes] | None:
        local = recorded_files(directory)
        stored = moto.objects(BUCKET, prefix)
        return local if all(stored.get(name) == data for name, data in local.items()) else None

    return server.wait_for(same, timeout, interval=0.5, what="every file in the bucket")


def test_recording_goes_to_the_bucket_and_another_node_serves_it(
    moto: MotoS3, tmp_path: Path
) -> None:
    require("ffmpeg")
    first = start_server(moto, tmp_path / "node-a", "a")
    try:
        subprocess.run(ffmpeg_command(first.rtmp_url("stored"), 6), check=True, timeout=60)
        record = first.wait_for(
            lambda: (b := first.only_broadcast("stored"))["mp4_ready"] and b,
            30,
            interval=0.2,
            what="the broadcast ended with its MP4",
        )
        broadcast_id = record["id"]
        status, _, poster = first.get(f"/replays/{broadcast_id}/poster.jpg")
        assert status == 200 and poster.startswith(b"\xff\xd8")
        directory = tmp_path / "node-a" / "channels" / "stored" / broadcast_id
        # (a) every finished file is in the bucket with the bytes on disk, the VOD playlist too.
        files = wait_uploaded(moto, first, directory)
        assert "#EXT-X-ENDLIST" in files["recording.m3u8"].decode()
        segments = [n for n in files if re.fullmatch(r"\d{6}\.m4s", n)]
        assert len(segments) >= 2 and any(n.startswith("init-") for n in files)
        assert {"recording.mp4", "poster.jpg", "broadcast.json"} <= files.keys()
        answers = {
            path: first.get(path)
            for path in [
                f"/replays/{broadcast_id}/index.m3u8",
                f"/replays/{broadcast_id}.mp4",
                *(f"/replays/{broadcast_id}/{name}" for name in files if name.endswith("4s")),
                *(f"/replays/{broadcast_id}/{n}" for n in files if n.startswith("init-")),
            ]
        }
        assert all(status == 200 for status, _, _ in answers.values())
        # The same clip from the disk, to compare with the one read from the store.
        status, _, clip_from_disk = first.get(f"/replays/{broadcast_id}.mp4?start=1&end=3")
        assert status == 200
    finally:
        first.stop()

    # (b) a second node with an empty data directory (the catalog file copied: see the module
    # docstring) answers the same bytes, fetched from the bucket.
    second_dir = tmp_path / "node-b"
    second_dir.mkdir()
    shutil.copy(tmp_path / "node-a" / "catalog.sqlite3", second_dir / "catalog.sqlite3")
    second = start_server(moto, second_dir, "b")
    try:
        assert not (second_dir / "channels" / "stored").exists()
        # A store that does not answer: a clear 503 (within storage.request_timeout), no 500.
        moto.pause()
        try:
            status, headers, _ = second.get(f"/replays/{broadcast_id}/index.m3u8")
            assert status == 503 and headers.get("Retry-After") == "10"
        finally:
            moto.resume()
        for path, (_, _, body) in answers.items():
            status, _, got = second.get(path)
            assert status == 200, (path, status, got[:200])
            assert got == body, path
        status, _, got = second.get(f"/replays/{broadcast_id}/poster.jpg")
        assert status == 200 and got == poster
        fetched = second_dir / "channels" / "stored" / broadcast_id
        metrics = second.get("/metrics")[2].decode()
        assert re.search(r"^periscope_store_fetched_files_total [1-9]", metrics, re.M), metrics
        # The local disk wiped: exports read the bucket in ranges, nothing big lands on disk.
        shutil.rmtree(fetched)
        recording_from_the_store(second, broadcast_id, files["recording.mp4"])
        moto.pause()  # exports from a store that does not answer: a clear 503, no 500
        try:
            for path in [f"/replays/{broadcast_id}.mp4", f"/replays/{broadcast_id}.mp4?end=2"]:
                status, headers, _ = second.get(path)
                assert status == 503 and headers.get("Retry-After") == "10", (path, status)
        finally:
            moto.resume()
        status, _, clip = second.get(f"/replays/{broadcast_id}.mp4?start=1&end=3")
        assert status == 200 and clip == clip_from_disk
        assert archived_mp4(second) == files["recording.mp4"]
        assert not_copied(fetched, files)
        # Without recording.mp4 in the bucket: an MP4 made on the fly from the stored segments.
        moto.client().delete_object(
            Bucket=BUCKET, Key=f"{PREFIX}/channels/stored/{broadcast_id}/recording.mp4"
        )
        status, headers, whole = second.get(f"/replays/{broadcast_id}.mp4")
        assert status == 200 and headers.get("Accept-Ranges") == "none"
        duration = probe_mp4(whole)["duration"]
        assert abs(duration - record["duration"]) < 0.5, (duration, record["duration"])
        assert abs(probe_mp4(archived_mp4(second))["duration"] - duration) < 0.1
        assert not_copied(fetched, files)
        # Deleting the broadcast deletes its objects too: nothing in the bucket outlives it.
        request = urllib.request.Request(
            f"{second.http}/api/broadcasts/{broadcast_id}",
            method="DELETE",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204
        prefix = f"{PREFIX}/channels/stored/{broadcast_id}/"
        assert moto.objects(BUCKET, prefix) == {}
        assert not fetched.exists()
    finally:
        second.stop()


def recording_from_the_store(server: ServerProcess, broadcast_id: str, mp4: bytes) -> None:
    """The finished recording.mp4, only in the bucket, is sent from it with Range and HEAD."""
    path = f"/replays/{broadcast_id}.mp4"
    status, headers, body = server.get(path)
    assert status == 200 and body == mp4
    assert headers["Accept-Ranges"] == "bytes" and int(headers["Content-Length"]) == len(mp4)
    status, headers, body = server.get(path, {"Range": "bytes=100-1099"})
    assert status == 206 and body == mp4[100:1100]
    assert headers["Content-Range"] == f"bytes 100-1099/{len(mp4)}"
    status, _, body = server.get(path, {"Range": "bytes=-500"})
    assert status == 206 and body == mp4[-500:]
    status, _, body = server.get(path, {"Range": f"bytes={len(mp4) - 10}-"})
    assert status == 206 and body == mp4[-10:]
    status, headers, body = server.get(path, {"Range": "bytes=0-"})
    assert status == 206 and body == mp4 and headers["Content-Range"].endswith(f"/{len(mp4)}")
    status, headers, _ = server.get(path, {"Range": f"bytes={len(mp4)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(mp4)}"
    request = urllib.request.Request(server.http + path, method="HEAD")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.read() == b""
        assert int(response.headers["Content-Length"]) == len(mp4)


def archived_mp4(server: ServerProcess) -> bytes:
    status, _, archive = server.get("/api/channels/stored/archive.zip")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        mp4s = [n for n in opened.namelist() if n.endswith(".mp4")]
        assert len(mp4s) == 1
        return opened.read(mp4s[0])


def not_copied(directory: Path, files: dict[str, bytes]) -> bool:
    """Neither a media segment nor the recording.mp4 was copied into ``directory`` (the
    playlist and init segments may be: they are small)."""
    present = {p.name for p in directory.iterdir()} if directory.exists() else set()
    big = {n for n in files if n.endswith(".m4s") or n == "recording.mp4"}
    assert big and not present & big, sorted(present)
    return True


def test_a_store_that_stops_answering_never_holds_up_ingest(moto: MotoS3, tmp_path: Path) -> None:
    require("ffmpeg")
    server = start_server(moto, tmp_path / "data", "outage")
    push = subprocess.Popen(ffmpeg_command(server.rtmp_url("outage"), 22))
    try:
        server.wait_for(
            lambda: (p := playlist(server, "outage")) and len(p.segments) >= 2,
            20,
            what="two live segments",
        )
        moto.pause()
        try:
            before = playlist(server, "outage")
            newest_before = before.media_sequence + len(before.segments)
            time.sleep(10)  # the 10 s outage
            after = playlist(server, "outage")
            # Ingest went on while every upload timed out: ~5 more segments were listed.
            assert after.media_sequence + len(after.segments) >= newest_before + 4
            metrics = server.get("/metrics")[2].decode()
            queued = re.search(r"^periscope_upload_queued_files (\S+)", metrics, re.M)
            assert queued is not None and float(queued.group(1)) >= 1, metrics
        finally:
            moto.resume()
        assert push.wait(40) == 0
        broadcast_id = server.wait_for(
            lambda: (b := server.only_broadcast("outage"))["status"] == "ended" and b["id"],
            20,
            what="the broadcast ended",
        )
        directory = tmp_path / "data" / "channels" / "outage" / broadcast_id
        # Once the store answers again, the retries bring every segment in.
        files = wait_uploaded(moto, server, directory, timeout=40)
        assert len([n for n in files if n.endswith(".m4s")]) >= 6
        metrics = server.get("/metrics")[2].decode()
        errors = re.search(r"^periscope_upload_errors_total (\S+)", metrics, re.M)
        assert errors is not None and float(errors.group(1)) >= 1, metrics
    finally:
        if push.poll() is None:
            push.kill()
            push.wait(10)
        server.stop()


def test_a_broadcast_recovered_after_a_crash_reaches_the_store_finished(
    moto: MotoS3, tmp_path: Path
) -> None:
    require("ffmpeg")
    server = start_server(moto, tmp_path / "data", "crash")
    push = subprocess.Popen(ffmpeg_command(server.rtmp_url("crashed"), 30))
    try:
        server.wait_for(
            lambda: (p := playlist(server, "crashed")) and len(p.segments) >= 2,
            20,
            what="two live segments",
        )
        server.stop(signal.SIGKILL)
    finally:
        push.kill()
        push.wait(10)
    server.start()
    try:
        record = server.only_broadcast("crashed")
        assert record["status"] == "interrupted"
        directory = tmp_path / "data" / "channels" / "crashed" / record["id"]
        # Recovery rewrote the playlist (now VOD) and the record: the store has those too.
        files = wait_uploaded(moto, server, directory)
        assert "#EXT-X-ENDLIST" in files["recording.m3u8"].decode()
        assert b'"interrupted"' in files["broadcast.json"]
    finally:
        server.stop()


def test_cluster_status_asks_the_store_too(moto: MotoS3, redis) -> None:
    """`cluster status` reports the object store (storage.url) beside Redis."""

    def status(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "periscope_ingest", "cluster", "status", "--json"],
            env={**os.environ, "PERISCOPE_CLUSTER__REDIS_URL": redis.url, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    up = status(**moto.env(BUCKET, PREFIX), PERISCOPE_STORAGE__REQUEST_TIMEOUT="2")
    assert up.returncode == 0, up.stderr
    store = json.loads(up.stdout)["store"]
    assert store["reachable"] and store["address"] == f"s3://{BUCKET}/{PREFIX}"
    nowhere = {**moto.env(BUCKET, PREFIX), "PERISCOPE_STORAGE__REQUEST_TIMEOUT": "2"}
    nowhere["PERISCOPE_STORAGE__S3_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    down = status(**nowhere)
    assert down.returncode == 1 and not json.loads(down.stdout)["store"]["reachable"]
