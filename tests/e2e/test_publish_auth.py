"""Publish authorisation by HTTP callback, with a real callback server and real publishers."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess, free_port
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e


class Callback:
    """The operator's service: allows, renames or refuses by stream key, records each body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                key = body.get("key")
                if key == "slow":
                    time.sleep(3)
                status, answer = {
                    "rename": (200, json.dumps({"channel": "renamed"}).encode()),
                    "deny": (403, b"no"),
                    "badname": (200, b'{"channel": "../../etc"}'),
                }.get(key, (204, b""))
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/on_publish"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def callback():
    receiver = Callback()
    yield receiver
    receiver.server.shutdown()


def start(tmp_path: Path, name: str, **env: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    server = ServerProcess(tmp_path / name, ARTIFACTS / f"server-publish-auth-{name}.log", **env)
    server.start()
    return server


def push(server: ServerProcess, key: str) -> None:
    """A real push with ffmpeg, in its own process: PyAV would hold this process's GIL while it
    waits for the publish to be accepted, and the callback server runs in a thread here."""
    command = [arg for arg in ffmpeg_command(server.rtmp_url(key), 3) if arg != "-re"]
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def refused(server: ServerProcess, key: str) -> str:
    """Push with ffmpeg, which must be refused; the log line of the refusal."""
    result = subprocess.run(ffmpeg_command(server.rtmp_url(key), 2), capture_output=True)
    assert result.returncode != 0
    return server.wait_for(
        lambda: [x for x in server.log().splitlines() if "publish_refused" in x], 10
    )[-1]


def test_the_callback_allows_renames_and_refuses(tmp_path: Path, callback: Callback) -> None:
    require("ffmpeg")
    server = start(
        tmp_path, "decides", PERISCOPE_AUTH__PUBLISH_URL=callback.url, PERISCOPE_AUTH__TIMEOUT="1"
    )
    try:
        push(server, "allowed?token=abc123")
        server.wait_for(lambda: (p := playlist(server, "allowed")) and p.ended, 10)
        assert callback.bodies[-1] == {
            "action": "publish",
            "app": "live",
            "key": "allowed",
            "channel": "allowed",
            "client": "127.0.0.1",
            "query": "token=abc123",
        }
        push(server, "rename")
        renamed = server.wait_for(lambda: (p := playlist(server, "renamed")) and p.ended and p, 10)
        assert renamed.segments and playlist(server, "rename") is None

        line = refused(server, "deny")
        assert 'reason="the publish check answered 403"' in line
        line = refused(server, "slow")  # longer than auth.timeout: refused by default
        assert "the publish check failed (" in line
        line = refused(server, "badname")
        assert "not JSON naming a valid channel" in line
    finally:
        server.stop()


def test_an_unreachable_callback_refuses_or_allows_as_configured(tmp_path: Path) -> None:
    require("ffmpeg")
    nowhere = f"http://127.0.0.1:{free_port()}/on_publish"  # nothing listens there
    strict = start(tmp_path, "strict", PERISCOPE_AUTH__PUBLISH_URL=nowhere)
    try:
        assert "the publish check failed (" in refused(strict, "anyone")
    finally:
        strict.stop()
    lenient = start(
        tmp_path,
        "lenient",
        PERISCOPE_AUTH__PUBLISH_URL=nowhere,
        PERISCOPE_AUTH__ON_FAILURE="allow",
    )
    try:
        push(lenient, "anyone")
        lenient.wait_for(lambda: (p := playlist(lenient, "anyone")) and p.ended, 10)
    finally:
        lenient.stop()


def test_with_accounts_the_key_is_checked_first_and_not_sent_when_told(
    tmp_path: Path, callback: Callback
) -> None:
    server = start(
        tmp_path,
        "accounts",
        PERISCOPE_OPEN_PUBLISH="false",
        PERISCOPE_AUTH__PUBLISH_URL=callback.url,
        PERISCOPE_AUTH__SEND_KEY="false",
    )
    try:
        key = (server.data_dir / "first-start-secrets.txt").read_text().split("Stream key:")[1]
        key = key.split()[0]
        before = len(callback.bodies)
        assert "unknown, rotated or disabled stream key" in refused(server, "not-a-key-0000")
        assert len(callback.bodies) == before  # a wrong key never reaches the callback
        push(server, key)
        server.wait_for(lambda: (p := playlist(server, "main")) and p.ended, 10)
        assert callback.bodies[-1]["channel"] == "main" and "key" not in callback.bodies[-1]
    finally:
        server.stop()
