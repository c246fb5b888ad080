"""Publish authorisation by HTTP callback, with a real callback server and real publishers."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e

# In every stream key that must never reach the server's log.
SECRET = "s3cret"


class Callback:
    """The operator's service: allows, renames or refuses by stream key, records each body."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.gate: threading.Event | None = None  # set: every answer waits for it
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/followed"):  # where "redirect" points: would allow
                    self.answer(204, b"")
                    return
                outer.bodies.append(body)
                if outer.gate is not None:
                    outer.gate.wait(20)
                key = body.get("key")
                if key == "split":  # a JSON answer that arrives in two pieces
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(b'{"channel": "pieces"}')))
                    self.end_headers()
                    self.wfile.write(b'{"channel": ')
                    time.sleep(0.2)
                    self.wfile.write(b'"pieces"}')
                    return
                if key == "redirect":
                    self.send_response(307)
                    self.send_header("Location", "/followed")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, answer = {
                    "rename": (200, json.dumps({"channel": "renamed"}).encode()),
                    f"sk.{SECRET}.opaque": (200, json.dumps({"channel": "opaque"}).encode()),
                    f"sk.{SECRET}.unnamed": (200, b'{"channel": null}'),
                    f"deny-{SECRET}": (403, b"no"),
                    "badname": (200, b'{"channel": "../../etc"}'),
                    "huge": (200, b'{"channel": "huge", "pad": "' + b"x" * 70_000 + b'"}'),
                }.get(key, (200, b"OK\n"))  # a body nginx-rtmp's users send: names nothing
                self.answer(status, answer)

            def answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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


def push_command(server: ServerProcess, key: str, app: str = "live") -> list[str]:
    return [arg for arg in ffmpeg_command(server.rtmp_url(key, app), 3) if arg != "-re"]


def push(server: ServerProcess, key: str, app: str = "live") -> None:
    """A real push with ffmpeg, in its own process: PyAV would hold this process's GIL while it
    waits for the publish to be accepted, and the callback server runs in a thread here."""
    subprocess.run(push_command(server, key, app), check=True, capture_output=True, timeout=60)


def refusals(server: ServerProcess) -> list[str]:
    return [x for x in server.log().splitlines() if "publish_refused" in x]


def refused(server: ServerProcess, key: str) -> str:
    """Push with ffmpeg, which must be refused; the log line of the refusal."""
    before = len(refusals(server))
    result = subprocess.run(ffmpeg_command(server.rtmp_url(key), 2), capture_output=True)
    assert result.returncode != 0
    return server.wait_for(lambda: refusals(server)[before:], 10)[-1]


def plays(server: ServerProcess, channel: str) -> None:
    """The broadcast is listed at /live/CHANNEL with its segments, and ended."""
    server.wait_for(lambda: (p := playlist(server, channel)) and p.ended and p.segments, 10)


def test_the_callback_allows_renames_and_refuses(tmp_path: Path, callback: Callback) -> None:
    require("ffmpeg")
    server = start(
        tmp_path, "decides", PERISCOPE_AUTH__PUBLISH_URL=callback.url, PERISCOPE_AUTH__TIMEOUT="2"
    )
    try:
        # Tokens in the app (OBS's Server field) and in the stream name both reach the callback.
        push(server, "allowed?token=abc123", app="live?tenant=7")
        plays(server, "allowed")
        assert callback.bodies[-1] == {
            "action": "publish",
            "app": "live",
            "key": "allowed",
            "channel": "allowed",
            "client": "127.0.0.1",
            "query": "tenant=7&token=abc123",
        }
        push(server, "rename")
        plays(server, "renamed")
        assert playlist(server, "rename") is None
        push(server, "split")  # the channel named in an answer that came in two pieces
        plays(server, "pieces")
        # With open publishing, a key that is not a channel name goes to the callback, which
        # names the channel (opaque secret keys): without a name it is refused.
        push(server, f"sk.{SECRET}.opaque")
        plays(server, "opaque")
        assert callback.bodies[-1]["channel"] is None
        line = refused(server, f"sk.{SECRET}.unnamed")
        assert "the publish check named no channel" in line

        line = refused(server, f"deny-{SECRET}")
        assert 'reason="the publish check answered 403"' in line
        line = refused(server, "redirect")  # not followed: only a 2xx allows
        assert 'reason="the publish check answered 307"' in line
        line = refused(server, "badname")
        assert "not JSON naming a valid channel" in line
        line = refused(server, "huge")
        assert "answer over auth.max_answer_bytes=65536" in line
        assert SECRET not in server.log()  # refused or renamed, a key is never logged
    finally:
        server.stop()


def test_a_callback_too_slow_or_down_refuses_or_allows_as_configured(tmp_path: Path) -> None:
    require("ffmpeg")
    for on_failure in ("refuse", "allow"):
        # A listener that never accepts: the callback's request hangs until auth.timeout. Once
        # it is closed, nothing listens there: the callback is down.
        hung = socket.create_server(("127.0.0.1", 0), backlog=8)
        server = start(
            tmp_path,
            on_failure,
            PERISCOPE_AUTH__PUBLISH_URL=f"http://127.0.0.1:{hung.getsockname()[1]}/on_publish",
            PERISCOPE_AUTH__ON_FAILURE=on_failure,
            PERISCOPE_AUTH__TIMEOUT="0.5",
        )
        logged = len(server.log().splitlines())  # the log file is kept across runs
        try:
            if on_failure == "refuse":
                assert "no answer within auth.timeout=0.5 s" in refused(server, "slow")
                hung.close()
                assert "the publish check failed (ClientConnectorError)" in refused(server, "down")
            else:
                push(server, "slow")
                plays(server, "slow")
                hung.close()
                push(server, "down")
                plays(server, "down")
                lines = server.log().splitlines()[logged:]
                failed = [x for x in lines if "publish_check_failed" in x]
                assert len(failed) == 2
                assert "(no answer within auth.timeout=0.5 s); allowed" in failed[0]
                assert "(ClientConnectorError); allowed" in failed[1]
        finally:
            hung.close()
            server.stop()


def test_with_accounts_the_key_is_checked_first_and_checks_in_flight_are_bounded(
    tmp_path: Path, callback: Callback
) -> None:
    require("ffmpeg")
    server = start(
        tmp_path,
        "accounts",
        PERISCOPE_OPEN_PUBLISH="false",
        PERISCOPE_AUTH__PUBLISH_URL=callback.url,
        PERISCOPE_AUTH__SEND_KEY="false",
        PERISCOPE_AUTH__MAX_CONCURRENT="1",
    )
    held = None
    try:
        key = (server.data_dir / "first-start-secrets.txt").read_text().split("Stream key:")[1]
        key = key.split()[0]
        before = len(callback.bodies)
        assert "unknown, rotated or disabled stream key" in refused(server, "not-a-key-0000")
        assert len(callback.bodies) == before  # a wrong key never reaches the callback

        # One check in flight (auth.max_concurrent=1): the next publish is refused at once.
        callback.gate = threading.Event()
        held = subprocess.Popen(push_command(server, key), stdout=subprocess.DEVNULL)
        server.wait_for(lambda: len(callback.bodies) > before, 10, what="the held check")
        line = refused(server, key)
        assert "too many publish checks in progress (auth.max_concurrent=1)" in line
        assert len(callback.bodies) == before + 1
        callback.gate.set()
        assert held.wait(60) == 0
        plays(server, "main")
        assert callback.bodies[-1]["channel"] == "main" and "key" not in callback.bodies[-1]
        assert key not in server.log()
    finally:
        if callback.gate is not None:
            callback.gate.set()
            callback.gate = None
        if held is not None and held.poll() is None:
            held.kill()
            held.wait()
        server.stop()
