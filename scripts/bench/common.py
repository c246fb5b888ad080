"""Shared pieces of the benchmark scripts: servers, process accounting, test media, playlists.

Everything here talks to 127.0.0.1 only. Servers are started on free ports with their own
temporary directories and stopped by PID (SIGTERM, then SIGKILL after a grace period).

Figures are only meaningful next to nginx-rtmp measured in the same run: the machines are
shared and noisy, so every script reports ratios (ours / nginx) as the headline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "periscope-bench"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The test file: 720p 30 fps 3 Mb/s H.264 (2 s GOP, B-frames) + AAC 128k 48 kHz, 60 s.
TEST_FILE_NAME = "testsrc2-720p30-3M-g60-bf2-aac128k48k-60s-v1.mp4"
TEST_FILE_SECONDS = 60

NGINX_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
)


# ----------------------------------------------------------------------------- arguments


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help=f"where to write the results (default: scripts/bench/results/{name}.json)",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the test file is cached"
    )
    parser.add_argument(
        "--no-nginx",
        action="store_true",
        help="measure our server only (no ratios); used when nginx-rtmp cannot be installed",
    )
    parser.add_argument(
        "--server-src",
        type=Path,
        default=REPO,
        help="directory holding the periscope_ingest package to run (default: this checkout);"
        " e.g. a `git archive HEAD | tar -x -C DIR` snapshot while the tree is being edited",
    )
    parser.add_argument(
        "--install-nginx",
        action="store_true",
        help="apt-get install nginx libnginx-mod-rtmp when missing (needs root)",
    )


def raise_fd_limit() -> None:
    """Many viewers or pushers need more file descriptors; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 65536
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    """Poll predicate every 0.1 s until it returns something true (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> int:
    """Stop one process we started, by its PID; SIGKILL if it ignores sig."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)
    return process.returncode


# ----------------------------------------------------------------------- process accounting


def children_of(pid: int) -> list[int]:
    """Direct children of pid (nginx workers of the master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def pss_kib(pid: int) -> int | None:
    """Proportional set size from /proc/PID/smaps_rollup, in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU used by a set of processes between start() and stop(), as % of one core."""

    pids: list[int]
    _start_ticks: dict[int, int] = field(default_factory=dict)
    _start_time: float = 0.0
    _start_machine: tuple[int, int] = (0, 0)
    _start_load: float = 0.0

    def start(self) -> None:
        self._start_time = time.monotonic()
        self._start_ticks = {pid: cpu_ticks(pid) or 0 for pid in self.pids}
        self._start_machine = machine_ticks()
        self._start_load = os.getloadavg()[0]

    def stop(self) -> dict:
        elapsed = time.monotonic() - self._start_time
        used = 0
        for pid in self.pids:
            ticks = cpu_ticks(pid)
            if ticks is not None:
                used += ticks - self._start_ticks.get(pid, 0)
        seconds = used / CLOCK_TICKS
        busy, total = machine_ticks()
        busy -= self._start_machine[0]
        total -= self._start_machine[1]
        return {
            # Everything the machine did meanwhile (all cores, all processes, ours included):
            # other people's jobs on a shared box show up here.
            "machine_busy_percent": round(100.0 * busy / total, 1) if total else None,
            "loadavg_1m_start_end": [round(self._start_load, 2), round(os.getloadavg()[0], 2)],
            "cpu_seconds": round(seconds, 3),
            "interval_s": round(elapsed, 3),
            "cpu_percent_of_core": round(100.0 * seconds / elapsed, 2) if elapsed else None,
        }


def total_pss_kib(pids: list[int]) -> int:
    return sum(pss_kib(pid) or 0 for pid in pids)


async def sample_pss(
    pids_of: Callable[[], list[int]], until: float, samples: list[int], every: float = 1.0
) -> None:
    """Append the processes' total PSS (KiB) to samples every ``every`` s until ``until``."""
    while time.monotonic() < until:
        samples.append(total_pss_kib(pids_of()))
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))


# ---------------------------------------------------------------------------------- media


def ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "unknown"


def ensure_test_file(cache: Path) -> Path:
    """The pre-encoded test file, made once with ffmpeg and cached."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / TEST_FILE_NAME
    if path.is_file() and path.stat().st_size > 1_000_000:
        return path
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed to make the test file: apt-get install -y ffmpeg")
    print(f"making the test file {path} (once) ...", file=sys.stderr)
    partial = path.with_suffix(".partial.mp4")
    # testsrc2 is moving enough that x264 actually spends the 3 Mb/s.
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(TEST_FILE_SECONDS),
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-b:v", "3M", "-maxrate", "3M", "-bufsize", "6M",
        "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-bf", "2",
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2",
        "-movflags", "+faststart", str(partial),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    partial.rename(path)
    return path


def start_pusher(
    test_file: Path, url: str, log_path: Path | None = None, progress: bool = False
) -> subprocess.Popen:
    """ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv URL (a realistic -re encoder).

    With ``progress``, ffmpeg reports its output time on stdout every 0.1 s (``-progress``):
    read it with PushClock to know when it sent what."""
    cmd = [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error",
        "-re", "-stream_loop", "-1", "-i", str(test_file),
        "-c", "copy", "-f", "flv", url,
    ]  # fmt: skip
    if progress:
        cmd[1:1] = ["-progress", "pipe:1", "-stats_period", "0.1"]
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        stdout = subprocess.PIPE if progress else log
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=log)
    finally:
        if log_path:
            log.close()  # type: ignore[union-attr]


class PushClock:
    """When a -re pusher sent media time 0, from its -progress reports (a thread reads them).

    Each report says which media time (out_time_us) had been sent when it was written; it is
    read a little later. So every report gives an upper bound of wall time - media time, and the
    smallest over the run is the best estimate of when media time 0 went out. Measured this
    way, latency no longer includes ffmpeg's own start-up, which grows with the box's load."""

    def __init__(self, pusher: subprocess.Popen) -> None:
        self.content_start: float | None = None
        self.reports = 0
        self._thread = threading.Thread(target=self._read, args=(pusher,), daemon=True)
        self._thread.start()

    def _read(self, pusher: subprocess.Popen) -> None:
        assert pusher.stdout is not None
        for raw in pusher.stdout:
            now = time.monotonic()
            line = raw.decode(errors="replace").strip()
            if not line.startswith("out_time_us="):
                continue
            value = line.partition("=")[2]
            if not value.isdigit() or int(value) == 0:
                continue  # "N/A" before the first packet
            start = now - int(value) / 1e6
            self.reports += 1
            if self.content_start is None or start < self.content_start:
                self.content_start = start


def stop_pushers(pushers: list[subprocess.Popen]) -> None:
    # SIGINT makes ffmpeg finish the FLV stream (FCUnpublish/deleteStream) like a real encoder.
    for p in pushers:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 5
    for p in pushers:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def stop_pusher(pusher: subprocess.Popen) -> None:
    """Stop latency.py's PyAV publisher (SIGTERM: it has no stream to finish), SIGKILL after 5 s.

    ffmpeg pushers stop with stop_pushers instead, which lets them end the FLV stream."""
    stop_process(pusher, signal.SIGTERM, grace=5.0)


# -------------------------------------------------------------------------------- servers


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


@dataclass(frozen=True, slots=True)
class PlaylistEntry:
    sequence: int
    uri: str
    duration: float


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    target_duration: float
    media_sequence: int
    segments: tuple[PlaylistEntry, ...]
    ended: bool


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Just what the benches need from an RFC 8216 media playlist."""
    target = 0.0
    sequence = 0
    ended = False
    entries: list[PlaylistEntry] = []
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif not line.startswith("#"):
            entries.append(PlaylistEntry(sequence + len(entries), line, duration or 0.0))
            duration = None
    return MediaPlaylist(target, sequence, tuple(entries), ended)


# ---------------------------------------------------------------------------------- stats


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs == 0:
        return None
    return round(ours / theirs, 2)


def fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: list[str], rows: list[list[object]], digits: int = 1) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# A column of a results table: its header, and the run's field shown in it (a key of the run's
# dict, or a function of the run for a figure shown differently from how it is stored).
Column = tuple[str, str | Callable[[dict], object]]


def results_table(columns: list[Column], runs: list[dict], digits: int = 1) -> str:
    """A markdown table with one row per run: the benches list their columns, not their rows."""
    rows = [[value(x) if callable(value) else x[value] for _, value in columns] for x in runs]
    return markdown_table([header for header, _ in columns], rows, digits)


def ms(seconds: float | None) -> int | None:
    """Seconds as whole milliseconds, for tables."""
    return None if seconds is None else round(seconds * 1000)


# ------------------------------------------------------------------------------ reporting


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


def write_results(path: Path, bench: str, data: dict) -> None:
    """A benchmark's JSON file: its name and when it ran, then what it measured."""
    write_json(path, {"bench": bench, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data})


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    print(f"\nresults written to {path}")


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    print(f"... {message}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    yield
    print(f"    done in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
