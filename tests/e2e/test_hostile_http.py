"""Downloads that are never read, and clips asked for over and over, against a real server.

Before (#13 items 1 and 6), each stalled download held a thread of the executor that catalog
queries and the key lookup of a new publisher also used, forever: eight of them and the API
stopped answering, and publishers were kept waiting. Here 24 clients on 24 addresses start MP4
downloads, clips and archives and never read, and the server keeps answering the API, its health
check and a publisher; then it cuts the stalled clients off and frees what they held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from periscope_ingest.service import Service
from periscope_ingest.web import fast_path
from tests.e2e.conftest import ARTIFACTS, assert_prompt, require
from tests.e2e.server import ServerProcess
from tests.in_process import local_settings
from tests.rtmp.client import C0_C1, C2, ScriptedClient, ServerOutput

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-for-hostile-http-tests"
WRITE_TIMEOUT_S = 4.0
SECONDS = 20


def api(server: ServerProcess, method: str, path: str, body=None, token: str = ADMIN):
    request = urllib.request.Request(
        server.http + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def push_noise(url: str) -> None:
    """20 s of noise at ~6 Mb/s (15 MB: far more than socket buffers hold), as fast as ffmpeg
    encodes it."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error",
         "-f", "lavfi", "-i", f"color=c=gray:s=640x360:r=30:d={SECONDS},noise=alls=60:allf=t",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-b:v", "6M",
         "-maxrate", "6M", "-bufsize", "3M", "-c:a", "aac", "-f", "flv", url],
        check=True, timeout=120,
    )  # fmt: skip


def stalled(server: ServerProcess, source: str, path: str, token: str | None = None):
    """A client that asks and then reads nothing (a tiny receive window)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.http_port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n{auth}\r\n".encode())
    return sock


def timed_get(server: ServerProcess, path: str) -> tuple[int, float]:
    started = time.perf_counter()
    status, _, _ = server.get(path)
    return status, time.perf_counter() - started


def publish_start_seconds(server: ServerProcess, key: str) -> float:
    """From the first byte to NetStream.Publish.Start, as an encoder sees it."""
    client = ScriptedClient()
    output = ServerOutput()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", server.rtmp_port), 10) as sock:
        sock.sendall(
            C0_C1
            + C2
            + client.command("connect", 1, {"app": "live"})
            + client.command("createStream", 2, None)
            + client.command("publish", 3, None, key, "live", stream_id=1)
        )
        sock.settimeout(10)
        while True:
            data = sock.recv(65536)
            assert data, "closed before Publish.Start"
            for reply in output.feed(data):
                if reply.name == "onStatus":
                    code = reply.values[3]["code"]
                    assert code == "NetStream.Publish.Start", code
                    return time.perf_counter() - started


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    require("ffmpeg")
    ARTIFACTS.mkdir(exist_ok=True)
    proc = ServerProcess(
        tmp_path_factory.mktemp("server") / "data",
        ARTIFACTS / "server-test_hostile_http.log",
        PERISCOPE_OPEN_PUBLISH="false",
        PERISCOPE_ADMIN_TOKEN=ADMIN,
        PERISCOPE_HTTP_WRITE_TIMEOUT=str(WRITE_TIMEOUT_S),
        PERISCOPE_DOWNLOADS__THREADS="4",
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def recording(server: ServerProcess) -> dict:
    created = api(server, "POST", "/api/accounts", {"handle": "big"})
    push_noise(server.rtmp_url(created["stream_key"]))
    listed = server.wait_for(
        lambda: [b for b in server.get_json("/api/broadcasts?channel=big")["broadcasts"]
                 if b["status"] == "ended" and b["mp4_ready"]],
        60, interval=0.2, what="the recording's MP4",
    )  # fmt: skip
    return {**listed[0], "token": created["token"], "key": created["stream_key"]}


def test_stalled_downloads_starve_nothing_and_are_cut_off(
    server: ServerProcess, recording: dict
) -> None:
    broadcast = recording["id"]
    paths = (
        [f"/replays/{broadcast}.mp4"] * 8
        + [f"/replays/{broadcast}.mp4?start={n}&end={n + 8}" for n in range(8)]
        + ["/api/channels/big/archive.zip"] * 8
    )
    mark = len(server.log())  # the log file is appended to by every run
    clients = [
        stalled(server, f"127.0.0.{n + 2}", path, recording["token"])
        for n, path in enumerate(paths)
    ]
    started = time.monotonic()
    try:
        time.sleep(1.0)  # every download has started and filled the buffers
        api_times, health_times = [], []
        for _ in range(5):
            status, seconds = timed_get(server, f"/api/broadcasts/{broadcast}")
            assert status == 200
            api_times.append(seconds)
            status, seconds = timed_get(server, "/healthz")
            assert status == 200
            health_times.append(seconds)
        # Before: no answer at all while the downloads held the threads.
        assert_prompt(api_times, 1, 3)
        assert_prompt(health_times, 0.25, 1.0)  # loaded CI boxes: 190 ms seen
        assert publish_start_seconds(server, recording["key"]) < 2
        # The stalled clients are cut off after http_write_timeout, one log line each.
        aborted = server.wait_for(
            lambda: len(lines := _aborted_lines(server, mark)) >= len(paths) and lines,
            3 * WRITE_TIMEOUT_S + 20,
            what="the stalled downloads to be cut off",
        )
        assert time.monotonic() - started >= WRITE_TIMEOUT_S - 0.5
        assert len(aborted) == len(paths), aborted
        assert "Traceback" not in server.log()[mark:]
    finally:
        for sock in clients:
            sock.close()
    # What they held is free: a whole download from one of their addresses works.
    status, headers, body = server.get(f"/replays/{broadcast}.mp4")
    assert status == 200 and len(body) == int(headers["Content-Length"]) > 10_000_000


def _aborted_lines(server: ServerProcess, mark: int) -> list[str]:
    return [line for line in server.log()[mark:].splitlines() if "download_aborted" in line]


def test_downloads_and_clips_per_address_are_limited(
    server: ServerProcess, recording: dict
) -> None:
    broadcast = recording["id"]
    source = "127.0.0.77"
    held = [stalled(server, source, f"/replays/{broadcast}.mp4") for _ in range(4)]
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.http_port), 5, (source, 0)) as sock:
            sock.sendall(f"GET /replays/{broadcast}.mp4 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head = sock.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 429")
        assert "Retry-After: 5" in head and "downloads.max_per_address" in head
    finally:
        for sock in held:
            sock.close()

    source = "127.0.0.78"
    clips = [
        stalled(server, source, f"/replays/{broadcast}.mp4?start={n}.5&end={n + 9}")
        for n in range(2)
    ]
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", server.http_port), 5, (source, 0)) as sock:
            path = f"/replays/{broadcast}.mp4?start=3&end=4"
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            head = sock.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 429") and "downloads.max_clips_per_address" in head
    finally:
        for sock in clips:
            sock.close()


@pytest.mark.parametrize("start", ["\u0661\u0662", "1_0", "\u00b2"])
def test_clip_times_are_ascii_numbers(server: ServerProcess, recording: dict, start: str) -> None:
    query = urllib.parse.urlencode({"start": start, "end": "15"})
    status, _, body = server.get(f"/replays/{recording['id']}.mp4?{query}")
    assert status == 400 and b"start: seconds" in body


def test_a_clip_is_made_once_and_served_from_the_cache(
    server: ServerProcess, recording: dict
) -> None:
    path = f"/replays/{recording['id']}.mp4?start=2&end=6"
    cached = server.data_dir / "clip-cache" / f"{recording['id']}-2000-6000.mp4"
    with contextlib.suppress(FileNotFoundError):
        cached.unlink()
    status, _, first = server.get(path)
    assert status == 200 and cached.is_file()
    made = cached.stat().st_ino
    status, _, again = server.get(path)
    assert status == 200 and again == first == cached.read_bytes()
    # Served from the file, not made again (a new export would replace it: a new inode).
    assert cached.stat().st_ino == made
    # Deleting the broadcast deletes its clips.
    api(server, "DELETE", f"/api/broadcasts/{recording['id']}")
    assert not cached.exists()


async def test_stalled_downloads_are_aborted_without_the_kernels_help(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a system without TCP_USER_TIMEOUT (macOS, the BSDs) or a Linux before 5.11 (whose
    zero-window probes ignore it), nothing but the server itself cuts a stalled reader off:
    aiohttp has no write timeout. Every download path (an MP4 and an archive streamed from a
    worker thread, a clip sent with sendfile) is aborted after http_write_timeout, with one
    log line each, and its slot and thread are free again."""
    require("ffmpeg")
    monkeypatch.setattr(fast_path, "_TCP_USER_TIMEOUT", None)  # such a system
    caplog.set_level(logging.INFO, logger="periscope_ingest.web.downloads")
    write_timeout = 2.0
    settings = local_settings(
        tmp_path / "d",
        http_write_timeout=write_timeout,
        downloads={"threads": 8, "clip_threads": 2},
        recording={"make_mp4": False},  # whole MP4s are streamed from a thread too
    )
    service = Service(settings)
    await service.start()
    try:
        assert service.rtmp is not None and service.catalog is not None
        await asyncio.to_thread(push_noise, f"rtmp://127.0.0.1:{service.rtmp.port}/live/big")
        deadline = time.monotonic() + 30
        while not (records := [r for r in service.catalog.all() if r.status == "ended"]):
            assert time.monotonic() < deadline, "the broadcast did not end"
            await asyncio.sleep(0.1)
        broadcast = records[0].id
        port = service.http_port
        paths = (
            [f"/replays/{broadcast}.mp4"] * 8
            + [f"/replays/{broadcast}.mp4?start={n}&end={n + 8}" for n in range(8)]
            + ["/api/channels/big/archive.zip"] * 8
        )
        clients = []
        for n, path in enumerate(paths):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            sock.bind((f"127.0.0.{n + 2}", 0))
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            sock.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            clients.append(sock)
        started = time.monotonic()
        downloads = service.downloads
        assert downloads is not None
        try:
            while len(aborted := _aborted(caplog)) < len(paths):
                # Two rounds at most: 16 streamed downloads on 8 threads (a clip is made first).
                assert time.monotonic() - started < 3 * write_timeout + 10, aborted
                await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
        finally:
            for sock in clients:
                sock.close()
        assert elapsed >= write_timeout - 0.5, elapsed
        assert sorted(a.split("path=")[1].split()[0] for a in aborted) == sorted(
            path.split("?")[0] for path in paths
        )
        assert all(f'reason="read nothing for http_write_timeout={write_timeout:g} s"' in a
                   for a in aborted), aborted  # fmt: skip
        # Their slots and threads are free: nothing counted, and a thread answers at once.
        assert downloads._active == 0 and not downloads._per_address
        await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(downloads.streams, int), 1
        )
        # Nothing else about them in the log (one line each, no traceback).
        assert not [r for r in caplog.records if r.exc_info], caplog.text
    finally:
        await service.stop()


def _aborted(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "download_aborted" in r.getMessage()]
