"""The remaining client-controlled limits, each hit by a real client with its log line."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time

import pytest

from tests.e2e.conftest import require
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist, push_in_background
from tests.rtmp.client import C0_C1, C2, ScriptedClient

pytestmark = pytest.mark.e2e

SERVER_ENV = {
    "PERISCOPE_RTMP__IDLE_TIMEOUT": "1.5",
    "PERISCOPE_RTMP__MAX_CONNECTIONS": "6",
    "PERISCOPE_RTMP__MAX_PUBLISHERS": "1",
}


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def test_idle_client_after_connect_is_dropped(server: ServerProcess) -> None:
    client = ScriptedClient()
    with socket.create_connection(("127.0.0.1", server.rtmp_port), 5) as sock:
        sock.sendall(C0_C1 + C2 + client.command("connect", 1, {"app": "live"}))
        started = time.monotonic()
        assert closed_by_server(sock, 10)
        assert time.monotonic() - started >= 1.4
    server.wait_for(lambda: "no data for idle_timeout=1.5 s" in server.log(), 5)


def test_total_connections_and_publishers_are_bounded(server: ServerProcess) -> None:
    require("ffmpeg")
    thread, outcome = push_in_background(push_pyav, server.rtmp_url("only"), 6)
    server.wait_for(lambda: (p := playlist(server, "only")) and p.segments, 15)
    # A second publisher on another key: the server holds max_publishers=1.
    refused = subprocess.run(ffmpeg_command(server.rtmp_url("second"), 2), capture_output=True)
    assert refused.returncode != 0
    server.wait_for(lambda: "max_publishers=1" in server.log(), 5)
    # Idle sockets up to max_connections=6 (the publisher holds one): the next is refused.
    sockets = []
    try:
        for _ in range(8):
            with contextlib.suppress(OSError):
                sockets.append(socket.create_connection(("127.0.0.1", server.rtmp_port), 2))
        server.wait_for(lambda: "max_connections=6 reached" in server.log(), 5)
    finally:
        for s in sockets:
            s.close()
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    ended = server.wait_for(lambda: (p := playlist(server, "only")) and p.ended and p, 5)
    assert abs(sum(s.duration for s in ended.segments) - 6) <= 0.1
