"""The sunset lifecycle and webhooks, with real publishers and a real webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_accounts import api
from tests.e2e.test_live_push import playlist, push_in_background

pytestmark = pytest.mark.e2e

ADMIN = "sunset-admin-token-0123456789"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def start_server(tmp_path: Path, name: str, **env: str) -> ServerProcess:
    log = ARTIFACTS / f"server-sunset-{name}.log"
    log.unlink(missing_ok=True)
    server = ServerProcess(tmp_path / "data", log, PERISCOPE_ADMIN_TOKEN=ADMIN, **env)
    server.start()
    return server


def test_registrations_closed_refuses_new_accounts_only(tmp_path: Path) -> None:
    past = iso(datetime.now(UTC) - timedelta(days=1))
    env = {"PERISCOPE_OPEN_PUBLISH": "false", "PERISCOPE_DATA_DIR": str(tmp_path / "data")}
    cli = [sys.executable, "-m", "periscope_ingest", "accounts", "create"]
    existing = subprocess.run(
        [*cli, "early", "--json"], env={**__import__("os").environ, **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = json.loads(existing.stdout)["stream_key"]
    server = start_server(
        tmp_path, "registrations", PERISCOPE_SUNSET__REGISTRATIONS_CLOSE_AT=past, **env
    )
    try:
        service = server.get_json("/api/service")
        assert service["phase"] == "registrations_closed" and not service["accepts_registrations"]
        status, text = api(server, "POST", "/api/accounts", {"handle": "late"}, ADMIN)
        assert status == 403 and "Registrations are closed" in text
        late = subprocess.run(
            [*cli, "late"], env=server.env, capture_output=True, text=True, timeout=30
        )
        assert late.returncode == 1 and "Registrations are closed" in late.stderr
        push_pyav(server.rtmp_url(key), 2, realtime=False)  # existing accounts still broadcast
        server.wait_for(lambda: (p := playlist(server, "early")) and p.ended, 10)
    finally:
        server.stop()


def test_closing_broadcasts_ends_live_ones_and_keeps_downloads(tmp_path: Path) -> None:
    require("ffmpeg")
    shutdown = datetime.now(UTC) + timedelta(days=30)
    server = start_server(tmp_path, "broadcasts", PERISCOPE_SUNSET__SHUTDOWN_AT=iso(shutdown))
    try:
        thread, _ = push_in_background(push_pyav, server.rtmp_url("last"), 30)
        server.wait_for(lambda: (p := playlist(server, "last")) and p.segments, 15)
        status, body = api(
            server, "PUT", "/api/service/phase", {"phase": "broadcasts_closed"}, ADMIN
        )
        assert status == 200 and body["phase"] == "broadcasts_closed"
        # The live broadcast ends cleanly, at once: ENDLIST, recorded; its publisher is told.
        ended = server.wait_for(lambda: (p := playlist(server, "last")) and p.ended and p, 5)
        thread.join(30)
        assert not thread.is_alive()
        (record,) = server.once_ended("last", 5)
        assert abs(record["duration"] - sum(s.duration for s in ended.segments)) < 0.01

        refused = subprocess.run(
            ffmpeg_command(server.rtmp_url("new"), 2), capture_output=True, timeout=30
        )
        assert refused.returncode != 0
        line = next(x for x in server.log().splitlines() if "publish_refused" in x)
        assert "no longer accepts broadcasts" in line
        assert f"Recordings can be downloaded until {iso(shutdown).replace('+00:00', 'Z')}" in line

        # Downloads keep working.
        assert server.get(f"/replays/{record['id']}/index.m3u8")[0] == 200
        status, _, _ = server.get(f"/replays/{record['id']}.mp4")
        assert status == 200
        assert server.get("/api/channels/last/archive.zip")[0] == 200
        # Phases only move on.
        status, text = api(server, "PUT", "/api/service/phase", {"phase": "open"}, ADMIN)
        assert status == 400 and "only move on" in text
    finally:
        server.stop()


def test_dated_close_ends_a_live_broadcast_on_time(tmp_path: Path) -> None:
    # Whole seconds: the setting is given to the server at that precision.
    close_at = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    server = start_server(tmp_path, "dated", PERISCOPE_SUNSET__BROADCASTS_CLOSE_AT=iso(close_at))
    try:
        assert server.get_json("/api/service")["phase"] == "open"
        thread, _ = push_in_background(push_pyav, server.rtmp_url("dated"), 30)
        server.wait_for(lambda: (p := playlist(server, "dated")) and p.ended, 15)
        ended_at = datetime.now(UTC)
        assert close_at <= ended_at + timedelta(seconds=0.1) <= close_at + timedelta(seconds=2)
        assert server.get_json("/api/service")["phase"] == "broadcasts_closed"
        thread.join(30)
    finally:
        server.stop()


def test_shutdown_answers_410_but_keeps_the_data(tmp_path: Path) -> None:
    past = iso(datetime.now(UTC) - timedelta(hours=1))
    server = start_server(tmp_path, "shutdown", PERISCOPE_SUNSET__SHUTDOWN_AT=past)
    try:
        service = server.get_json("/api/service")
        assert service["phase"] == "shutdown" and not service["downloads_available"]
        for path in ("/live/x/index.m3u8", "/api/broadcasts", "/replays/AbCdEfGhIjKl.mp4", "/"):
            status, _, body = server.get(path)
            assert status == 410, path
            assert b"shut down" in body
        assert server.get("/healthz")[0] == 200
        assert (tmp_path / "data" / "catalog.sqlite3").exists()
    finally:
        server.stop()


class Receiver:
    """A webhook endpoint: answers 500 to the first delivery, 200 afterwards."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, bytes]] = []
        self.event = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.event:
                    receiver.requests.append((dict(self.headers), body))
                    first = len(receiver.requests) == 1
                    receiver.event.notify_all()
                self.send_response(500 if first else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def events(self) -> list[str]:
        return [json.loads(b)["event"] for _, b in self.requests]

    def wait_for(self, event: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        with self.event:
            while event not in self.events():
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"no {event}: {self.events()}"
                self.event.wait(remaining)


def test_webhooks_are_signed_retried_and_off_the_ingest_path(tmp_path: Path) -> None:
    receiver = Receiver()
    secret = "webhook-shared-secret"
    server = start_server(
        tmp_path,
        "webhooks",
        PERISCOPE_OPEN_PUBLISH="false",
        PERISCOPE_WEBHOOKS__URLS=json.dumps([receiver.url]),
        PERISCOPE_WEBHOOKS__SECRET=secret,
        PERISCOPE_WEBHOOKS__RETRY_DELAY="0.2",
    )
    try:
        status, created = api(server, "POST", "/api/accounts", {"handle": "hooked"}, ADMIN)
        assert status == 201
        receiver.wait_for("account.created")
        push_pyav(server.rtmp_url(created["stream_key"]), 3, realtime=False)
        for event in ("broadcast.started", "broadcast.ended", "recording.ready"):
            receiver.wait_for(event)
        for headers, body in receiver.requests:
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["X-Periscope-Signature"] == expected
            assert headers["X-Periscope-Event"] == json.loads(body)["event"]
        # The first delivery got a 500 and was delivered again, same event id.
        first, second = (json.loads(b) for _, b in receiver.requests[:2])
        assert first["id"] == second["id"] and first["event"] == "account.created"
        ready = next(json.loads(b) for _, b in receiver.requests if b"recording.ready" in b)
        assert ready["data"]["channel"] == "hooked" and ready["data"]["mp4_size"] > 0
        assert created["stream_key"] not in json.dumps(
            [json.loads(b) for _, b in receiver.requests]
        )
    finally:
        server.stop()
        receiver.server.shutdown()


def test_accounts_made_by_the_cli_or_at_first_start_are_announced(tmp_path: Path) -> None:
    secret = "webhook-shared-secret"
    receiver = Receiver()
    hooks = {
        "PERISCOPE_OPEN_PUBLISH": "false",
        "PERISCOPE_WEBHOOKS__URLS": json.dumps([receiver.url]),
        "PERISCOPE_WEBHOOKS__SECRET": secret,
        "PERISCOPE_WEBHOOKS__RETRY_DELAY": "0.2",
    }
    env = {**__import__("os").environ, "PERISCOPE_DATA_DIR": str(tmp_path / "cli"), **hooks}
    subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "accounts", "create", "clied", "--json"],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    # Delivered before the command returned, retried once after the receiver's first 500.
    first, second = (json.loads(body) for _, body in receiver.requests)
    assert first == second and second["event"] == "account.created"
    assert second["data"] == {"handle": "clied"}
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Periscope-Signature"] == expected
    receiver.server.shutdown()

    receiver = Receiver()
    hooks["PERISCOPE_WEBHOOKS__URLS"] = json.dumps([receiver.url])
    server = start_server(tmp_path, "first-start", **hooks)
    try:
        receiver.wait_for("account.created")
        assert json.loads(receiver.requests[0][1])["data"] == {"handle": "main"}
    finally:
        server.stop()
        receiver.server.shutdown()
