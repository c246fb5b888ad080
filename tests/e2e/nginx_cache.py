"""A real nginx running config/nginx-cache.conf in front of a test server, on a free port.

The example is used as written: only its listen port, the origin's address and the cache
directory are replaced, so what the tests measure is what the example does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.e2e.server import free_port
from tests.e2e.test_tls import tempfile_dir, wait_port

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "nginx-cache.conf"
_HTTP_REQUESTS = re.compile(
    r'^periscope_http_requests_total\{route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$', re.M
)


def requests_by_route(metrics_text: str, status: str = "200") -> dict[str, int]:
    """The origin's request counters (GET /metrics) by route pattern, for one status."""
    return {
        route: int(float(value))
        for route, code, value in _HTTP_REQUESTS.findall(metrics_text)
        if code == status
    }


class CachingNginx:
    """nginx with the cache example, in a directory its workers (nobody) can use."""

    def __init__(self, origin_port: int) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile_dir())
        example = EXAMPLE.read_text()
        for needle in ("listen 80;", "server 127.0.0.1:8080;", "/var/cache/nginx/periscope"):
            assert needle in example, f"{EXAMPLE.name} no longer says {needle!r}"
        site = (
            example.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
            .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{origin_port};")
            .replace("/var/cache/nginx/periscope", str(self.workdir / "cache"))
        )
        work = self.workdir
        self.conf = work / "nginx.conf"
        self.conf.write_text(
            f"worker_processes 1;\npid {work}/nginx.pid;\nerror_log {work}/error.log info;\n"
            f"events {{ worker_connections 512; }}\n"
            f"http {{\naccess_log {work}/access.log;\nclient_body_temp_path {work}/body;\n"
            f"proxy_temp_path {work}/proxy;\n{site}\n}}\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.workdir), "-c", str(self.conf), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        wait_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def access_log(self) -> str:
        path = self.workdir / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> CachingNginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
