"""A real periscope-ingest server in a subprocess, on free ports, for end-to-end tests."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Ports are drawn below Linux's ephemeral range (32768-60999 by default): a port the kernel
# gave out by bind(0) can be taken by any outgoing connection (an encoder's, a fetch's) before
# the server binds it, which made a restarted server fail with "address already in use".
_PORT_RANGE = (20000, 32767)
_handed_out: set[int] = set()


def _port_range() -> tuple[int, int]:
    """This process's share of _PORT_RANGE. scripts/test.sh runs the suite in pytest-xdist
    workers, and a port one worker picked is free until its server binds it: without disjoint
    shares another worker could pick it in that window (every fixture's server, not only ours,
    would then fail to start)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return _PORT_RANGE
    low, high = _PORT_RANGE
    share = (high - low + 1) // count
    start = low + int(worker[2:]) % count * share
    return start, start + share - 1


def free_port() -> int:
    for _ in range(200):
        port = random.randint(*_port_range())
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(RuntimeError):
    """The server could not bind a port that was free when the test picked it."""


class ServerProcess:
    def __init__(self, data_dir: Path, log_path: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "PERISCOPE_HOST": "127.0.0.1",
            "PERISCOPE_RTMP_PORT": str(self.rtmp_port),
            "PERISCOPE_HTTP_PORT": str(self.http_port),
            "PERISCOPE_DATA_DIR": str(data_dir),
            "PERISCOPE_LOG_LEVEL": "DEBUG",
            # Tests read the key=value lines; test_logs.py checks the JSON form.
            "PERISCOPE_LOG_FORMAT": "text",
            # The live-path tests publish with any key; accounts have their own tests.
            "PERISCOPE_OPEN_PUBLISH": "true",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.serve_args: list[str] = []  # after `serve`, e.g. ["--workers", "2"]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rtmp_url(self, key: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{app}/{key}"

    def start(self, timeout: float = 20) -> None:
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except PortTaken:
                # Another process took a port between our check and the server's bind:
                # new ports, unless the test chose them itself.
                if attempt == 2:
                    raise
                self._log.close()
                self._new_ports()

    def _new_ports(self) -> None:
        owned = (("PERISCOPE_RTMP_PORT", "rtmp_port"), ("PERISCOPE_HTTP_PORT", "http_port"))
        for name, attr in owned:
            if self.env[name] == str(getattr(self, attr)):
                setattr(self, attr, free_port())
                self.env[name] = str(getattr(self, attr))

    def _start_once(self, timeout: float) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        log_start = self._log.tell()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "periscope_ingest", "serve", *self.serve_args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                this_start = self.log_path.read_bytes()[log_start:].decode(errors="replace")
                if "address already in use" in this_start:
                    raise PortTaken(this_start)
                raise RuntimeError(f"server exited at start:\n{self.log()}")
            try:
                self.get_json("/healthz")
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        raise TimeoutError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        finally:
            self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.http + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.http + path, timeout=5) as response:
            return json.loads(response.read())

    def wait_for(self, predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
        """Poll ``predicate`` until it returns something truthy; the server gives no push events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}\n{self.log()[-4000:]}")

    def broadcasts(self, channel: str, status: str | None = None) -> list[dict]:
        """The channel's broadcast records (newest first), from the API; only those with
        ``status`` ("live" or "ended") when given."""
        query = f"?channel={channel}" + (f"&status={status}" if status else "")
        return self.get_json(f"/api/broadcasts{query}")["broadcasts"]

    def only_broadcast(self, channel: str) -> dict:
        """The channel's one broadcast record (fails if it has none or several)."""
        records = self.broadcasts(channel)
        assert len(records) == 1, records
        return records[0]

    def once_ended(self, channel: str, timeout: float) -> list[dict]:
        """The channel's broadcasts (newest first) once the newest one's record says ended. The
        final record is written just after the ENDLIST playlist (viewers first), so a test
        that saw that playlist waits here before it reads the record."""
        return self.wait_for(
            lambda: (rows := self.broadcasts(channel)) and rows[0]["status"] == "ended" and rows,
            timeout,
            what=f"the final record of {channel}'s broadcast",
        )
