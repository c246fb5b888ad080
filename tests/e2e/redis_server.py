"""Debian's redis-server for the cluster tests: a free port, a temp dir, nothing kept on disk,
stopped by PID (and started again on the same port, for the tests that take Redis away)."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import require
from tests.e2e.server import free_port


class RedisServer:
    def __init__(self, directory: Path) -> None:
        require("redis-server")
        self.port = free_port()
        self.directory = directory
        self.start()

    def start(self) -> None:
        """Start (again, after stop: the same port, nothing kept) and wait until it answers."""
        directory = self.directory
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(directory)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)
