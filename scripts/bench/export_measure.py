"""The export benchmark's measurements: HTTP GETs against a server, timed children, peak RSS."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import store_node
from common import LOOPBACK, markdown_table, r, ratio
from export_recording import MB, MIB, DataServer

# ----------------------------------------------------------------------------- measurements


def status_kib(pid: int, field_name: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Largest VmRSS and PSS of a process while it runs (every 20 ms), and its VmHWM at the end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss_max = 0
        self.pss_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            rss = status_kib(self.pid, "VmRSS")
            if rss is not None:
                self.rss_max = max(self.rss_max, rss)
            pss = common.pss_kib(self.pid)
            if pss is not None:
                self.pss_max = max(self.pss_max, pss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> dict:
    """GET with http.client: time to headers, to the first body byte, to the last; bytes."""
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=600)
    try:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        t_headers = time.perf_counter()
        t_first = None
        size = 0
        head = b""
        while True:
            n = response.readinto(view)
            if not n:
                break
            if t_first is None:
                t_first = time.perf_counter()
                head = bytes(view[:16])
            size += n
        t_end = time.perf_counter()
        return {
            "status": response.status,
            "headers_ms": r((t_headers - t0) * 1000, 2),
            "first_byte_ms": r(((t_first or t_end) - t0) * 1000, 2),
            "total_s": r(t_end - t0, 3),
            "bytes": size,
            "mb_per_s": r(size / MB / (t_end - t0), 1) if t_end > t0 else None,
            "starts_with_ftyp": head[4:8] == b"ftyp",
            "content_length": response.getheader("Content-Length"),
            "content_range": response.getheader("Content-Range"),
            "transfer_encoding": response.getheader("Transfer-Encoding"),
        }
    finally:
        conn.close()


def server_job(
    data: Path,
    src: Path,
    path: str,
    headers: dict[str, str] | None = None,
    label: str = "",
    env: dict[str, str] | None = None,
) -> dict:
    """One GET against a fresh server on the cached data: the request and the server's memory."""
    with common.step(label or f"GET {path}"), DataServer(data, src, env=env) as server:
        pid = server.process.pid  # type: ignore[union-attr]
        time.sleep(0.5)
        hwm_idle = status_kib(pid, "VmHWM") or 0
        rss_idle = status_kib(pid, "VmRSS") or 0
        cpu = common.CpuWindow([pid])
        cpu.start()
        with RssSampler(pid) as sampler:
            result = http_get(server.http_port, path, headers)
        used = cpu.stop()
        hwm = status_kib(pid, "VmHWM") or 0
    result.update(
        server_rss_idle_mib=r(rss_idle / 1024, 1),
        server_rss_peak_mib=r(max(hwm, sampler.rss_max) / 1024, 1),
        server_rss_added_mib=r((max(hwm, sampler.rss_max) - max(hwm_idle, rss_idle)) / 1024, 1),
        server_pss_peak_mib=r(sampler.pss_max / 1024, 1),
        server_cpu_seconds=used["cpu_seconds"],
        machine_busy_percent=used["machine_busy_percent"],
    )
    return result


def timed_child(cmd: list[str], env: dict[str, str] | None = None, label: str = "") -> dict:
    """Run a command; wall time and its own peak RSS (wait4's ru_maxrss), CPU seconds."""
    with common.step(label or " ".join(cmd[:3])):
        t0 = time.perf_counter()
        process = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        # Drain the pipes in threads so the child never blocks; reap it with wait4 for its rusage.
        out: dict[str, bytes] = {}
        readers = [
            threading.Thread(target=lambda k=k, s=s: out.__setitem__(k, s.read()), daemon=True)
            for k, s in (("stdout", process.stdout), ("stderr", process.stderr))
        ]
        for t in readers:
            t.start()
        _pid, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - t0
        for t in readers:
            t.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"{cmd[:4]} exited with {process.returncode}: {out.get('stderr', b'')[-2000:]!r}"
        )
    return {
        "wall_s": r(wall, 3),
        "peak_rss_mib": r(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "cpu_seconds": r(usage.ru_utime + usage.ru_stime, 3),
    }


def python_cmd() -> str:
    python = common.REPO / ".venv" / "bin" / "python"
    return str(python if python.exists() else sys.executable)


def child_env(data: Path, src: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PERISCOPE_CONFIG", None)
    env.update(
        PERISCOPE_DATA_DIR=str(data),
        PERISCOPE_LOG_LEVEL="WARNING",
        PERISCOPE_OPEN_PUBLISH="true",
        PYTHONPATH=str(Path(src).resolve()),
    )
    return env


FASTSTART_SNIPPET = """
import os, sys
from pathlib import Path
from periscope_ingest.media.export import export_mp4
segments = [Path(p) for p in Path(sys.argv[1]).read_text().split("\\n") if p]
target = Path(sys.argv[2])
partial = target.with_name("." + target.name + ".part")
export_mp4(segments, partial)
os.replace(partial, target)
"""


def output_facts(path: Path) -> dict:
    with path.open("rb") as f:
        head = f.read(16)
    return {"bytes": path.stat().st_size, "starts_with_ftyp": head[4:8] == b"ftyp"}


def ffmpeg_concat_input(segments: list[Path], workdir: Path) -> list[str]:
    """concat: protocol (the TS bytes back to back) when the argument fits, else a list file."""
    joined = "concat:" + "|".join(str(p) for p in segments)
    if len(joined) < 120_000:
        return ["-i", joined]
    listing = workdir / "segments.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in segments))
    return ["-f", "concat", "-safe", "0", "-i", str(listing)]


def store_job(
    data: Path,
    src: Path,
    node: Path,
    path: str,
    moto: store_node.MotoStore,
    label: str,
    headers: dict[str, str] | None = None,
) -> dict:
    """The GET of server_job against a node with an empty data directory reading the store;
    with the bytes the export left on that node's disk."""
    node = store_node.empty_node(data, node)
    before = store_node.disk_bytes(node)
    result = server_job(node, src, path, headers, label, env=moto.node_env())
    result["node_disk_added_mib"] = r((store_node.disk_bytes(node) - before) / MIB, 2)
    shutil.rmtree(node, ignore_errors=True)
    return result


def print_store_table(results: dict[str, dict], store: dict[str, dict]) -> None:
    print("\nFrom the object store (an empty node, moto) / from disk, same run:\n")
    rows = [
        [name, x["status"], x["first_byte_ms"], results[name]["first_byte_ms"],
         ratio(x["first_byte_ms"], results[name]["first_byte_ms"]), x["total_s"],
         results[name]["total_s"], ratio(x["total_s"], results[name]["total_s"]),
         x["server_rss_peak_mib"], results[name]["server_rss_peak_mib"],
         ratio(x["server_rss_peak_mib"], results[name]["server_rss_peak_mib"]),
         x["server_rss_added_mib"], results[name]["server_rss_added_mib"],
         x["node_disk_added_mib"]]
        for name, x in store.items()
    ]  # fmt: skip
    print(
        markdown_table(
            ["GET", "status", "1st byte ms store", "disk", "store / disk", "total s store",
             "disk", "store / disk", "RSS peak MiB store", "disk", "store / disk",
             "RSS added MiB store", "disk", "node disk added MiB"],
            rows,
            digits=2,
        )
    )  # fmt: skip
