"""The servers under test (ours and nginx-rtmp) and running a bench against each of them."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from bench_env import LOOPBACK, NGINX_MODULE_CANDIDATES, REPO
from bench_media import ensure_test_file, ffmpeg_version
from bench_procs import children_of, free_port, raise_fd_limit, stop_process, wait_for_port


class BenchServer:
    """A server under test: RTMP publish URL, HLS playlist URL/path, processes to account."""

    name: str
    rtmp_port: int
    http_port: int
    workdir: Path
    process: subprocess.Popen | None = None

    def publish_url(self, key: str) -> str:
        raise NotImplementedError

    def playlist_url(self, key: str) -> str:
        raise NotImplementedError

    def playlist_path(self, key: str) -> Path:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """Every process of the server: for nginx the master and its workers."""
        assert self.process is not None
        return [self.process.pid, *children_of(self.process.pid)]

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def __enter__(self) -> BenchServer:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)


class OurServer(BenchServer):
    name = "periscope"

    def __init__(
        self, env: dict[str, str] | None = None, src: Path = REPO, serve_args: tuple[str, ...] = ()
    ) -> None:
        self.src = Path(src).resolve()
        self.serve_args = serve_args  # e.g. ("--workers", "2")
        self.workdir = Path(tempfile.mkdtemp(prefix="periscope-bench-"))
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.extra_env = env or {}

    def start(self) -> None:
        env = dict(os.environ)
        env.update(
            PERISCOPE_HOST=LOOPBACK,
            PERISCOPE_RTMP_PORT=str(self.rtmp_port),
            PERISCOPE_HTTP_PORT=str(self.http_port),
            PERISCOPE_DATA_DIR=str(self.workdir / "data"),
            PERISCOPE_LOG_LEVEL="WARNING",
            # No accounts: any stream key publishes and the channel name is the key.
            PERISCOPE_OPEN_PUBLISH="true",
            # Every pusher comes from 127.0.0.1: lift the per-address cap (16 by default), or
            # runs above 16 streams measure refused connections.
            PERISCOPE_RTMP__MAX_CONNECTIONS_PER_ADDRESS="1000",
            PERISCOPE_RTMP__MAX_CONNECTIONS="1000",
            PERISCOPE_RTMP__MAX_PUBLISHERS="500",
        )
        env.pop("PERISCOPE_CONFIG", None)
        # Run from src so that `-m periscope_ingest` imports that copy of the package (the
        # editable install's finder comes after the path entries).
        env["PYTHONPATH"] = str(self.src)
        env.update(self.extra_env)
        log = open(self.workdir / "server.log", "wb")  # noqa: SIM115
        python = REPO / ".venv" / "bin" / "python"
        self.process = subprocess.Popen(
            [
                str(python if python.exists() else sys.executable),
                *("-m", "periscope_ingest", "serve", *self.serve_args),
            ],
            cwd=self.src,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for_port(self.rtmp_port, 20, self.process)
        wait_for_port(self.http_port, 20, self.process)

    def publish_url(self, key: str) -> str:
        return f"rtmp://{LOOPBACK}:{self.rtmp_port}/live/{key}"

    def playlist_url(self, key: str) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/live/{key}/index.m3u8"

    def playlist_path(self, key: str) -> Path:
        return self.workdir / "data" / "channels" / key / "index.m3u8"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(
                (self.workdir / "server.log").read_text(errors="replace").splitlines()[-lines:]
            )
        return ""


def nginx_module_path() -> str | None:
    for candidate in NGINX_MODULE_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    # Debian: /usr/share/nginx/modules-available/mod-rtmp.conf names it relative to the prefix.
    conf = Path("/usr/share/nginx/modules-available/mod-rtmp.conf")
    if conf.is_file():
        m = re.search(r"load_module\s+(\S+);", conf.read_text())
        if m:
            path = Path(m.group(1))
            if not path.is_absolute():
                path = Path("/usr/share/nginx") / path
            if path.is_file():
                return str(path)
    return None


def nginx_available(install: bool = False) -> tuple[bool, str]:
    """(usable, why not). Installs with apt-get when asked and running as root."""
    if shutil.which("nginx") and nginx_module_path():
        return True, ""
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing nginx and libnginx-mod-rtmp with apt-get ...", file=sys.stderr)
        subprocess.run(
            ["apt-get", "install", "-y", "nginx", "libnginx-mod-rtmp"],
            stdout=subprocess.DEVNULL,
            check=False,
        )
        if shutil.which("nginx") and nginx_module_path():
            return True, ""
    return False, (
        "nginx-rtmp is not installed: run `apt-get install -y nginx libnginx-mod-rtmp` as root"
        " (or pass --install-nginx as root), or pass --no-nginx to measure our server alone"
    )


def nginx_version() -> str:
    out = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
    text = (out.stderr or out.stdout).strip()
    return text.split(":", 1)[-1].strip() if text else "unknown"


NGINX_CONF = """\
load_module {module};
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 8192; }}
rtmp {{
    server {{
        listen {host}:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
            hls on;
            hls_path {dir}/hls;
            hls_fragment {fragment}s;
            hls_playlist_length {playlist_length}s;
        }}
    }}
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen {host}:{http_port};
        location /hls/ {{
            alias {dir}/hls/;
            add_header Cache-Control no-cache;
        }}
    }}
}}
"""


class NginxRtmp(BenchServer):
    """nginx with nginx-rtmp's hls module, one worker (nginx-rtmp's live mode needs one worker
    unless rtmp_auto_push is on; our server is one process too)."""

    name = "nginx-rtmp"

    def __init__(self, fragment: float = 2.0, window: int = 6) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="nginx-rtmp-bench-"))
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.fragment = fragment
        self.window = window

    def start(self) -> None:
        module = nginx_module_path()
        if module is None:
            raise RuntimeError(nginx_available()[1])
        # Started as root, nginx runs its workers as "nobody": they must reach and write these.
        self.workdir.chmod(0o755)
        for sub in ("tmp", "hls"):
            (self.workdir / sub).mkdir()
            (self.workdir / sub).chmod(0o777)
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                module=module,
                dir=self.workdir,
                host=LOOPBACK,
                rtmp_port=self.rtmp_port,
                http_port=self.http_port,
                fragment=f"{self.fragment:g}",
                playlist_length=f"{self.fragment * self.window:g}",
            )
        )
        self.process = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.workdir),
                "-c",
                str(conf),
                "-e",
                str(self.workdir / "error.log"),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "wb"),  # noqa: SIM115
        )
        wait_for_port(self.rtmp_port, 10, self.process)
        wait_for_port(self.http_port, 10, self.process)

    def stop(self) -> None:
        # SIGQUIT: graceful shutdown of master and workers (SIGTERM is "fast", also fine).
        if self.process is not None:
            stop_process(self.process, signal.SIGQUIT)
            self.process = None

    def publish_url(self, key: str) -> str:
        return f"rtmp://{LOOPBACK}:{self.rtmp_port}/live/{key}"

    def playlist_url(self, key: str) -> str:
        return f"http://{LOOPBACK}:{self.http_port}/hls/{key}.m3u8"

    def playlist_path(self, key: str) -> Path:
        return self.workdir / "hls" / f"{key}.m3u8"

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(
                (self.workdir / "error.log").read_text(errors="replace").splitlines()[-lines:]
            )
        return ""


def servers_to_run(args: argparse.Namespace) -> tuple[list[type[BenchServer]], str | None]:
    """Our server always; nginx-rtmp unless --no-nginx. Exits when nginx is missing."""
    if args.no_nginx:
        return [OurServer], "--no-nginx given"
    ok, why = nginx_available(args.install_nginx)
    if not ok:
        raise SystemExit(why)
    return [OurServer, NginxRtmp], None


def server_for(server_cls: type[BenchServer], args: argparse.Namespace) -> BenchServer:
    """A fresh server of that class cutting --segment-duration segments (nginx: fragments)."""
    if server_cls is NginxRtmp:
        return NginxRtmp(fragment=args.segment_duration, window=6)
    env = {"PERISCOPE_HLS__SEGMENT_DURATION": f"{args.segment_duration:g}"}
    return server_cls(env, args.server_src)  # type: ignore[call-arg]


class Runs(NamedTuple):
    """What run_each_size did; a tuple, so that a bench unpacks it in one line."""

    results: list[dict]  # one per (size, server), in that order
    nginx_skipped: str | None  # why nginx-rtmp did not run (None: it did)
    machine: dict
    test_file: Path


def run_each_size(
    args: argparse.Namespace,
    counts: list[int],
    run_one: Callable[[type[BenchServer], int, argparse.Namespace, Path], dict],
    also: tuple[type[BenchServer], ...] = (),
) -> Runs:
    """Every (size, server) pair, each on a fresh server, one after the other; the servers in
    ``also`` (e.g. ours behind a cache) run between ours and nginx-rtmp."""
    raise_fd_limit()
    servers, skipped = servers_to_run(args)
    servers = [servers[0], *also, *servers[1:]]
    test_file = ensure_test_file(args.cache)
    machine = machine_info()
    results = [run_one(server, n, args, test_file) for n in counts for server in servers]
    return Runs(results, skipped, machine, test_file)


def side_by_side(runs: list[dict], size_key: str) -> Iterator[tuple[int, dict, dict]]:
    """(size, ours, nginx-rtmp's) for each size both servers ran: the rows of a ratio table."""
    for ours in runs:
        if ours["server"] != OurServer.name:
            continue
        theirs = next(
            (x for x in runs if x["server"] == NginxRtmp.name and x[size_key] == ours[size_key]),
            None,
        )
        if theirs is not None:
            yield ours[size_key], ours, theirs


# ------------------------------------------------------------------------------- playlists


# A run's machine: its figures are only comparable with others from the same machine.
def machine_info() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        import av

        pyav = av.__version__
    except Exception:
        pyav = "not installed"
    info = {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "pyav": pyav,
        "ffmpeg": ffmpeg_version(),
        "nginx": nginx_version() if shutil.which("nginx") else None,
        "kernel": platform.release(),
    }
    return info
