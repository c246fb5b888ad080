"""TLS at the edge: RTMPS ingest, and the tested nginx and Caddy examples in front of HTTP, with
the real client address taken from X-Forwarded-For only when it comes from a trusted proxy."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess, free_port
from tests.e2e.test_live_push import playlist, push_in_background

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).resolve().parents[2] / "config"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    require("openssl")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    directory.chmod(0o755)  # nginx's workers read it as nobody
    for path in (cert, key):
        path.chmod(0o644)
    return cert, key


def tls_server(tmp_path: Path, certificate, name: str, **env: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    cert, key = certificate
    server = ServerProcess(
        tmp_path / "data",
        ARTIFACTS / f"server-tls-{name}.log",
        PERISCOPE_RTMPS_PORT=str(free_port()),
        PERISCOPE_HTTPS_PORT=str(free_port()),
        PERISCOPE_TLS__CERT_FILE=str(cert),
        PERISCOPE_TLS__KEY_FILE=str(key),
        PERISCOPE_RTMP__HANDSHAKE_TIMEOUT="1.5",
        PERISCOPE_TLS__HANDSHAKE_TIMEOUT="1.5",
        **env,
    )
    server.start()
    return server


def rtmps_port(server: ServerProcess) -> int:
    return int(server.env["PERISCOPE_RTMPS_PORT"])


def https_port(server: ServerProcess) -> int:
    return int(server.env["PERISCOPE_HTTPS_PORT"])


def unverified() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the test's own self-signed certificate
    return context


def https_get(url: str, headers: dict | None = None) -> tuple[int, bytes]:
    context = unverified()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# The start of a TLS ClientHello record promising 512 bytes that never come.
PARTIAL_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


def seconds_until_closed(port: int, first_bytes: bytes) -> float:
    """Open a connection, send ``first_bytes`` (maybe none), and wait for the server to close it."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        started = time.monotonic()
        sock.sendall(first_bytes)
        sock.settimeout(10)
        with contextlib.suppress(ConnectionError):
            assert sock.recv(100) == b""
        return time.monotonic() - started


def test_ffmpeg_publishes_over_rtmps_and_it_plays_over_https(tmp_path: Path, certificate) -> None:
    require("ffmpeg")
    server = tls_server(tmp_path, certificate, "rtmps")
    try:
        url = f"rtmps://127.0.0.1:{rtmps_port(server)}/live/secure"
        thread, outcome = push_in_background(
            lambda: subprocess.run(ffmpeg_command(url, 6), check=True, capture_output=True)
        )
        https = f"https://127.0.0.1:{https_port(server)}"

        def listed_over_https():
            status, body = https_get(f"{https}/live/secure/index.m3u8")
            live = parse_media_playlist(body.decode()) if status == 200 else None
            return live if live and live.segments and not live.ended else None

        live = server.wait_for(listed_over_https, 20, 0.2, "segments listed over HTTPS")
        # While live, playlist and segments come from the fast path: over TLS, the same bytes
        # as over plain HTTP (the fast path writes them to the socket itself when it can).
        # Twice on one connection: the first answer may wait behind the TLS session tickets,
        # the second finds the connection idle, where the fast path would use the socket.
        segment = f"/live/secure/{live.segments[-1].uri}"
        plain_status, _, plain = server.get(segment)
        assert plain_status == 200 and len(plain) > 10_000
        connection = http.client.HTTPSConnection(
            "127.0.0.1", https_port(server), timeout=10, context=unverified()
        )
        try:
            for _ in range(2):
                connection.request("GET", segment)
                response = connection.getresponse()
                assert response.status == 200 and response.read() == plain
        finally:
            connection.close()
        status, body = https_get(f"{https}/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"
        thread.join(60)
        assert "error" not in outcome, outcome
        ended = server.wait_for(lambda: (p := playlist(server, "secure")) and p.ended and p, 10)
        assert abs(sum(s.duration for s in ended.segments) - 6) <= 0.1
        assert f"https=https://127.0.0.1:{https_port(server)}/" in server.log()
    finally:
        server.stop()


def test_a_client_that_never_completes_tls_is_closed(tmp_path: Path, certificate) -> None:
    """rtmp.handshake_timeout on the RTMPS port, tls.handshake_timeout on the HTTPS port (both
    1.5 s here): asyncio's own default would hold such a connection for 60 s."""
    server = tls_server(tmp_path, certificate, "handshake")
    try:
        for port in (rtmps_port(server), https_port(server)):
            for first_bytes in (b"", PARTIAL_HELLO):
                assert 1.2 <= seconds_until_closed(port, first_bytes) <= 6, (port, first_bytes)
    finally:
        server.stop()


@pytest.mark.parametrize("port", ["PERISCOPE_RTMPS_PORT", "PERISCOPE_HTTPS_PORT"])
def test_an_unusable_certificate_stops_the_server_with_one_line(tmp_path: Path, port: str) -> None:
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    result = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        env={
            **os.environ,
            "PERISCOPE_DATA_DIR": str(tmp_path / "data"),
            "PERISCOPE_RTMP_PORT": "0",
            "PERISCOPE_HTTP_PORT": "0",
            port: "0",
            "PERISCOPE_TLS__CERT_FILE": str(bad),
            "PERISCOPE_TLS__KEY_FILE": str(bad),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"periscope-ingest: cannot use tls.cert_file {bad}")
    assert result.stderr.count("\n") == 1


def viewers(server: ServerProcess, channel: str) -> int:
    streams = server.get_json("/api/streams")["streams"]
    return next(s["viewers"] for s in streams if s["channel"] == channel)


def through_proxy(proxy_port: int, path: str, source: str) -> bytes:
    """A client at ``source`` fetches through the proxy, claiming to be someone else."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", proxy_port, timeout=10, context=unverified(), source_address=(source, 0)
    )
    try:
        claims = {"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "gopher"}
        connection.request("GET", path, headers=claims)
        response = connection.getresponse()
        assert response.status == 200
        return response.read()
    finally:
        connection.close()


def watch_through(proxy_port: int, path: str, source: str) -> None:
    assert through_proxy(proxy_port, path, source).startswith(b"#EXTM3U")


def check_proxy(server: ServerProcess, proxy_port: int) -> None:
    """Two players behind the proxy, one that is not a proxy, and this test's own polling: four
    viewers, by their real addresses (not the proxy's, and not the ones they claim)."""
    require("ffmpeg")
    thread, _ = push_in_background(
        lambda url: subprocess.run(ffmpeg_command(url, 8), capture_output=True),
        server.rtmp_url("tv"),
    )
    server.wait_for(lambda: (p := playlist(server, "tv")) and p.segments, 15)  # from 127.0.0.1
    status, _ = https_get(f"https://127.0.0.1:{proxy_port}/healthz")
    assert status == 200
    watch_through(proxy_port, "/live/tv/index.m3u8", "127.0.0.3")  # the fast path
    watch_through(proxy_port, "/live/tv/index.m3u8?x=1", "127.0.0.4")  # aiohttp's routes
    with socket.create_connection(("127.0.0.1", server.http_port), 5, ("127.0.0.2", 0)) as sock:
        sock.sendall(
            b"GET /live/tv/index.m3u8 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert viewers(server, "tv") == 4  # 127.0.0.1 to 127.0.0.4
    # What the server believes: the player's own address, and the HTTPS the proxy spoke.
    seen = json.loads(through_proxy(proxy_port, "/api/client", "127.0.0.5"))
    assert seen == {"address": "127.0.0.5", "scheme": "https"}
    thread.join(30)


def test_nginx_example_terminates_tls_and_passes_the_client_on(tmp_path: Path, certificate) -> None:
    require("nginx")
    cert, key = certificate
    server = tls_server(
        tmp_path, certificate, "nginx", PERISCOPE_TRUSTED_PROXIES='["127.0.0.1/32"]'
    )
    port = free_port()
    work = Path(tempfile_dir())
    example = (CONFIG / "nginx-proxy.conf").read_text()
    site = (
        example.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        .replace("/etc/letsencrypt/live/live.example.org/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/live.example.org/privkey.pem", str(key))
        .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{server.http_port}")
    )
    conf = work / "nginx.conf"
    conf.write_text(
        f"worker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/error.log info;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {work}/body;\n"
        f"proxy_temp_path {work}/proxy;\n{site}\n}}\n"
    )
    nginx = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(conf), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, nginx)
        check_proxy(server, port)
    finally:
        nginx.terminate()
        nginx.wait(10)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_caddy_example_terminates_tls_and_passes_the_client_on(tmp_path: Path, certificate) -> None:
    require("caddy")
    cert, key = certificate
    server = tls_server(tmp_path, certificate, "caddy", PERISCOPE_TRUSTED_PROXIES='["127.0.0.1"]')
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),  # Caddy keeps its state under it
        "XDG_DATA_HOME": str(tmp_path / "caddy-data"),
        "XDG_CONFIG_HOME": str(tmp_path / "caddy-config"),
        "SITE_ADDRESS": f"https://127.0.0.1:{port}",
        "SITE_TLS": f"{cert} {key}",
        "UPSTREAM": f"127.0.0.1:{server.http_port}",
    }
    # Only for the test: no admin endpoint (port 2019 may be taken) and no HTTP->HTTPS redirect.
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(
        "{\n\tadmin off\n\tauto_https disable_redirects\n}\n" + (CONFIG / "Caddyfile").read_text()
    )
    caddy = subprocess.Popen(
        ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, caddy)
        check_proxy(server, port)
    finally:
        caddy.terminate()
        caddy.wait(10)
        server.stop()


def tempfile_dir() -> str:
    """A directory nginx's workers (nobody) can enter: not under pytest's 0700 tmp_path."""
    import tempfile

    path = tempfile.mkdtemp(prefix="periscope-nginx-")
    os.chmod(path, 0o755)
    return path


def wait_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode(errors="replace"))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")
