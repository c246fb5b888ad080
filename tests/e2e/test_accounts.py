"""Accounts and stream keys with real publishers; secrets never in logs or API answers."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.e2e.conftest import require
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e

ADMIN = "admin-token-for-tests-0123456789"
SERVER_ENV = {"PERISCOPE_OPEN_PUBLISH": "false", "PERISCOPE_ADMIN_TOKEN": ADMIN}


def api(server: ServerProcess, method: str, path: str, body=None, token: str | None = ADMIN):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.http + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def refused(server: ServerProcess, key: str) -> subprocess.CompletedProcess:
    return subprocess.run(ffmpeg_command(server.rtmp_url(key), 2), capture_output=True, timeout=30)


def structured_log(server: ServerProcess) -> str:
    """The log lines (not the one-time banner the first start prints to the terminal)."""
    return "\n".join(
        line for line in server.log().splitlines() if re.match(r"\d{4}-\d\d-\d\dT", line)
    )


def test_first_start_leaves_a_working_key_in_a_private_file(server: ServerProcess) -> None:
    """Not on a terminal, stdout is a log (journald, docker logs): the secrets go to a 0600 file
    named in the log, and appear in no output of the server at all."""
    line = next(x for x in server.log().splitlines() if "first_channel_created" in x)
    path = server.data_dir / "first-start-secrets.txt"
    assert f"secrets_file={path}" in line
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    banner = path.read_text()
    key = re.search(r"Stream key:\s+(\S+)", banner).group(1)
    token = re.search(r"API token:\s+(\S+)", banner).group(1)
    assert len(key) >= 22  # >= 128 bits, URL-safe base64
    push_pyav(server.rtmp_url(key), 3, realtime=False)
    ended = server.wait_for(lambda: (p := playlist(server, "main")) and p.ended and p, 10)
    assert ended.segments
    output = server.log()
    assert key not in output and token not in output
    assert "publish_started channel=main" in output


def test_first_start_on_a_terminal_shows_the_key_there(tmp_path) -> None:
    """On a terminal the operator reads the banner at once: no file is left behind."""
    terminal, child_side = pty.openpty()
    probe = ServerProcess(tmp_path / "data", tmp_path / "unused.log", **SERVER_ENV)
    process = subprocess.Popen(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        env=probe.env,
        stdout=child_side,
        stderr=subprocess.DEVNULL,
    )
    os.close(child_side)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"Watch:" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.5)
            if ready:
                seen += os.read(terminal, 4096)
    finally:
        process.terminate()
        process.wait(20)
        os.close(terminal)
    assert re.search(rb"Stream key:\s+\S{22,}", seen), seen
    assert not (tmp_path / "data" / "first-start-secrets.txt").exists()


def test_keys_are_checked_rotated_and_disabled(server: ServerProcess) -> None:
    require("ffmpeg")
    status, created = api(server, "POST", "/api/accounts", {"handle": "alice"})
    assert status == 201 and created["handle"] == "alice"
    key, token = created["stream_key"], created["token"]

    result = refused(server, "not-a-real-key-0000000000000")
    assert result.returncode != 0
    line = server.wait_for(
        lambda: next((x for x in server.log().splitlines() if "publish_refused" in x), None), 5
    )
    assert 'reason="unknown, rotated or disabled stream key"' in line
    assert "client=127.0.0.1:" in line and "not-a-real-key" not in line

    push_pyav(server.rtmp_url(key), 3, realtime=False)
    server.wait_for(lambda: (p := playlist(server, "alice")) and p.ended, 10)

    # Rotation: the old key stops at once, the new one works.
    status, rotated = api(server, "POST", "/api/accounts/alice/rotate-key")
    assert status == 200 and rotated["stream_key"] != key
    assert refused(server, key).returncode != 0
    push_pyav(server.rtmp_url(rotated["stream_key"]), 2, realtime=False)

    # No secret in listings, ever again.
    status, listing = api(server, "GET", "/api/accounts")
    assert status == 200
    text = json.dumps(listing)
    assert key not in text and token not in text and rotated["stream_key"] not in text
    assert api(server, "GET", "/api/accounts", token=None)[0] == 401
    assert api(server, "GET", "/api/accounts", token="wrong")[0] == 401

    # The owner's token downloads the owner's archive, and only that.
    assert server.get("/api/channels/alice/archive.zip")[0] == 401
    other = api(server, "POST", "/api/accounts", {"handle": "bob"})[1]
    bearer = {"Authorization": f"Bearer {other['token']}"}
    assert server.get("/api/channels/alice/archive.zip", headers=bearer)[0] == 401
    owner = {"Authorization": f"Bearer {token}"}
    status, headers, _ = server.get("/api/channels/alice/archive.zip", headers=owner)
    assert status == 200 and headers["Content-Type"] == "application/zip"

    assert api(server, "POST", "/api/accounts/alice/disable")[0] == 204
    assert refused(server, rotated["stream_key"]).returncode != 0
    log = structured_log(server)
    for secret in (key, token, rotated["stream_key"], other["token"], other["stream_key"]):
        assert secret not in log

    assert api(server, "POST", "/api/accounts", {"handle": "alice"})[0] == 400  # taken
    assert api(server, "POST", "/api/accounts", {"handle": "../x"})[0] == 400


def test_cli_accounts(server: ServerProcess) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "periscope_ingest", "accounts", *args],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    created = cli("create", "carol", "--json")
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    assert set(credentials) == {"handle", "stream_key", "token"}
    assert "carol" in cli("list").stdout
    rotated = json.loads(cli("rotate-key", "carol", "--json").stdout)
    assert rotated["stream_key"] != credentials["stream_key"]
    # The running server sees the CLI's changes: the old key is refused, the new one works.
    assert refused(server, credentials["stream_key"]).returncode != 0
    push_pyav(server.rtmp_url(rotated["stream_key"]), 2, realtime=False)
    server.wait_for(lambda: (p := playlist(server, "carol")) and p.ended, 10)
    assert cli("disable", "carol").returncode == 0
    missing = cli("disable", "nobody")
    assert missing.returncode == 1 and "no account 'nobody'" in missing.stderr
