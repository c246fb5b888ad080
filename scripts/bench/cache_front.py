"""Our server with config/nginx-cache.conf in front of it, for viewers.py --through-nginx-cache.

The example is used as written, as tests/e2e/nginx_cache.py does: only its listen port, the
origin's address and the cache directory are replaced. Viewers fetch from nginx; the server's
CPU (pids()) and the cache's (front_pids()) are accounted separately, and what reached the
origin is read from its own request counters (GET /metrics).
"""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import common

EXAMPLE = common.REPO / "config" / "nginx-cache.conf"
_REQUESTS = re.compile(
    r'^periscope_http_requests_total\{route="([^"]*)",status="(\d+)"\} ([0-9.e+]+)$', re.M
)
LIVE_ROUTES = ("/live/{channel}/index.m3u8", "/live/{channel}/{broadcast}/{segment}")


def origin_requests(http_port: int) -> dict[str, int]:
    """The server's answered requests (status 200) by route, from its /metrics."""
    url = f"http://{common.LOOPBACK}:{http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        route: int(float(value))
        for route, status, value in _REQUESTS.findall(text)
        if status == "200" and route in LIVE_ROUTES
    }


class OurServerBehindCache(common.OurServer):
    name = "periscope+cache"

    def __init__(self, env: dict[str, str] | None = None, src: Path = common.REPO) -> None:
        # The origin believes nginx's X-Forwarded-For, as config/nginx-cache.conf asks.
        super().__init__({"PERISCOPE_TRUSTED_PROXIES": '["127.0.0.1/32"]', **(env or {})}, src)
        self.cache_port = common.free_port()
        self.nginx: subprocess.Popen | None = None

    def start(self) -> None:
        super().start()
        example = EXAMPLE.read_text()
        for needle in ("listen 80;", "server 127.0.0.1:8080;", "/var/cache/nginx/periscope"):
            if needle not in example:
                raise RuntimeError(f"{EXAMPLE.name} no longer says {needle!r}")
        front = self.workdir / "nginx"
        front.mkdir()
        # Started as root, the workers run as "nobody": they must reach and write these.
        self.workdir.chmod(0o755)
        front.chmod(0o777)
        site = (
            example.replace("listen 80;", f"listen {common.LOOPBACK}:{self.cache_port};")
            .replace("server 127.0.0.1:8080;", f"server {common.LOOPBACK}:{self.http_port};")
            .replace("/var/cache/nginx/periscope", str(front / "cache"))
        )
        # One worker, as the nginx-rtmp peer has; enough connections for thousands of viewers.
        conf = front / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\nworker_rlimit_nofile 20000;\npid {front}/nginx.pid;\n"
            f"error_log {front}/error.log warn;\nevents {{ worker_connections 16384; }}\n"
            # sendfile and tcp_nopush as in Debian's nginx.conf and the nginx-rtmp peer's.
            f"http {{\naccess_log off;\nsendfile on;\ntcp_nopush on;\n"
            f"client_body_temp_path {front}/body;\n"
            f"proxy_temp_path {front}/proxy;\n{site}\n}}\n"
        )
        self.nginx = subprocess.Popen(
            ["nginx", "-p", str(front), "-c", str(conf), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(front / "stderr.log", "wb"),  # noqa: SIM115
        )
        common.wait_for_port(self.cache_port, 10, self.nginx)

    def stop(self) -> None:
        if self.nginx is not None:
            common.stop_process(self.nginx, signal.SIGQUIT)
            self.nginx = None
        super().stop()

    def playlist_url(self, key: str) -> str:
        return f"http://{common.LOOPBACK}:{self.cache_port}/live/{key}/index.m3u8"

    def front_pids(self) -> list[int]:
        """nginx's master and worker."""
        assert self.nginx is not None
        return [self.nginx.pid, *common.children_of(self.nginx.pid)]


def origin_requests_of(server: common.BenchServer) -> dict[str, int] | None:
    """What reached our server (with or without the cache); None for nginx-rtmp."""
    if not isinstance(server, common.OurServer):
        return None
    return origin_requests(server.http_port)


def behind_the_cache(runs: list[dict]) -> list[dict]:
    """For each size: our server behind the nginx cache against our server alone."""
    found = []
    for cached in runs:
        if cached["server"] != OurServerBehindCache.name:
            continue
        alone = next(
            x
            for x in runs
            if x["server"] == common.OurServer.name and x["viewers"] == cached["viewers"]
        )
        both = (cached["cpu_percent_of_core"] or 0) + (cached["cache_cpu_percent_of_core"] or 0)
        found.append(
            {
                "viewers": cached["viewers"],
                "server_cpu": common.ratio(
                    cached["cpu_percent_of_core"], alone["cpu_percent_of_core"]
                ),
                "server_and_cache_cpu": common.ratio(both, alone["cpu_percent_of_core"]),
                # A few dozen against tens of thousands: more digits than common.ratio keeps.
                "origin_requests": round(
                    sum(cached["origin_requests"].values())
                    / max(1, sum(alone["origin_requests"].values())),
                    5,
                ),
            }
        )
    return found
