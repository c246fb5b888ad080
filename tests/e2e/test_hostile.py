"""Hostile clients next to a real broadcast: the broadcast is not disturbed."""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

import pytest

from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist, push_in_background

pytestmark = pytest.mark.e2e

SERVER_ENV = {
    "PERISCOPE_RTMP__HANDSHAKE_TIMEOUT": "1",
    "PERISCOPE_RTMP__IDLE_TIMEOUT": "3",
    "PERISCOPE_RTMP__MAX_CONNECTIONS_PER_ADDRESS": "20",
}
CORPUS = Path(__file__).resolve().parents[1] / "rtmp" / "corpus"


def log_lines(server: ServerProcess, needle: str) -> list[str]:
    return [x for x in server.log().splitlines() if needle in x]


def test_garbage_slowloris_and_floods_do_not_disturb_a_broadcast(server: ServerProcess) -> None:
    seconds = 12
    thread, outcome = push_in_background(push_pyav, server.rtmp_url("steady"), seconds)
    server.wait_for(lambda: (p := playlist(server, "steady")) and p.segments, 15)
    rng = random.Random(7)
    sockets: list[socket.socket] = []
    try:
        # Garbage: random bytes, and a real capture with bytes flipped.
        captures = sorted(CORPUS.glob("*.bin"))
        for i in range(10):
            with socket.create_connection(("127.0.0.1", server.rtmp_port), 5) as bad:
                if i % 2 and captures:
                    data = bytearray(captures[i % len(captures)].read_bytes())
                    for _ in range(50):
                        data[rng.randrange(1600, len(data))] ^= 1 << rng.randrange(8)
                else:
                    data = bytearray(b"\x03" + rng.randbytes(1536 + 4000))
                with contextlib.suppress(OSError):
                    bad.sendall(data)
                    bad.settimeout(5)
                    while bad.recv(65536):
                        pass
        # Slowloris: connections that send nothing, or a byte now and then.
        for _ in range(5):
            sockets.append(socket.create_connection(("127.0.0.1", server.rtmp_port)))
        trickle = socket.create_connection(("127.0.0.1", server.rtmp_port))
        trickle.sendall(b"\x03")
        sockets.append(trickle)
        # A flood: far more connections than one address may hold.
        for _ in range(60):
            with contextlib.suppress(OSError):
                sockets.append(socket.create_connection(("127.0.0.1", server.rtmp_port), 2))
        server.wait_for(lambda: log_lines(server, "handshake_timeout=1"), 5, what="timeouts")
    finally:
        for s in sockets:
            s.close()
    thread.join(seconds + 30)
    assert "error" not in outcome, outcome.get("error")
    ended = server.wait_for(lambda: (p := playlist(server, "steady")) and p.ended and p, 5)
    # The broadcast is complete: every second of it listed, every segment there.
    assert abs(sum(s.duration for s in ended.segments) - seconds) <= 0.1
    for listed in ended.segments:
        assert server.get(f"/live/steady/{listed.uri}")[0] == 200
    # And each kind of abuse got its clear log line.
    assert log_lines(server, "max_connections_per_address=20 reached")
    assert log_lines(server, "no handshake and connect within handshake_timeout=1 s")
    assert any("protocol error" in x for x in log_lines(server, "rtmp_closed"))
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    "path",
    [
        "/live/%2e%2e/%2e%2e/catalog.sqlite3",
        "/live/..%2f..%2fcatalog.sqlite3/index.m3u8",
        "/live/chan%00/index.m3u8",
        "/replays/%00%00%00%00%00%00%00%00%00%00%00%00/index.m3u8",
        "//etc/passwd",
        "/live//etc/passwd/index.m3u8",
        "/live/%2Fetc%2Fpasswd/index.m3u8",
        "/replays/..%5c..%5c..%5cetc%5cpasswd.mp4",
        "/api/channels/..%2f../archive.zip",
        "/static/../catalog.sqlite3",
        "/static/%2e%2e/%2e%2e/catalog.sqlite3",
    ],
)
def test_traversal_never_leaves_the_data_directory(server: ServerProcess, path: str) -> None:
    status, _, body = server.get(path)
    assert status in (400, 404), (path, status)
    assert b"SQLite" not in body and b"root:" not in body


@pytest.mark.parametrize(
    "query",
    [
        "/api/broadcasts?limit=-1",
        "/api/broadcasts?limit=%00",
        "/api/broadcasts?status=%ff",
        "/api/broadcasts?cursor=%%%",
        "/replays/AbCdEfGhIjKl.mp4?start=nan",
        "/replays/AbCdEfGhIjKl.mp4?start=1e999",
    ],
)
def test_malformed_query_values_are_400_or_404(server: ServerProcess, query: str) -> None:
    status, _, _ = server.get(query)
    assert status in (400, 404), query
