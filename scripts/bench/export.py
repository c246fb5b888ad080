"""Export benchmark: a recorded broadcast as MP4, over HTTP and from the CLI, next to ffmpeg.

    .venv/bin/python scripts/bench/export.py --minutes 30

The broadcast is made once and cached (--cache): the 60 s test file is looped into a --minutes
FLV with `ffmpeg -stream_loop -c copy` (same encoding: testsrc2 720p 30 fps 3 Mb/s, 2 s GOPs, 2
B-frames, AAC 128k), pushed to our server WITHOUT -re (as fast as the server takes it; the data
directory is what the server records, with PERISCOPE_RECORDING__MAKE_MP4=false so it makes no
recording.mp4), and the server's data directory is kept in the cache. Later runs start servers
on that directory.

Measured, each with a fresh process so that peak RSS (VmHWM) belongs to that one job:

* stream: GET /replays/ID.mp4 while no recording.mp4 exists (fragmented MP4 made while sent):
  time to the response headers and to the first body byte, total time, MB/s, server peak RSS;
* faststart: export_mp4() into recording.mp4, in a subprocess, as the server's make_mp4 does
  (wall time, MB/s, peak RSS from wait4);
* file: GET /replays/ID.mp4 once recording.mp4 exists (sendfile), and a 1 MiB Range request;
* cli: `periscope-ingest export ID -o FILE` (wall time, MB/s, peak RSS from wait4);
* clip: GET /replays/ID.mp4?start=S&end=E, 60 s from the middle (a temporary faststart MP4);
* ffmpeg: `ffmpeg -i concat:SEG1|SEG2|... -c copy -movflags +faststart out.mp4` over the same TS
  segments, the peer (nginx-rtmp has no export). Ratios are ours / ffmpeg.

With --store, the stream, clip, file and range GETs are made a second time against a node whose
data directory is empty (storage.url s3:// on moto's server, started here: store_node.py), so
that it reads the broadcast from the store; ratios are store / disk, from the same run, with the
bytes the export left on the node's disk.

MB/s is output MP4 bytes per wall second. The segments are read once before measuring, so every
job reads them from the page cache. The HTTP client is Python's http.client reading into a 1 MiB
buffer; it shares the 2 cores with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
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

CHANNEL = "export"
CACHE_VERSION = "v2"
MIB = 1024 * 1024
MB = 1_000_000


# ------------------------------------------------------------------------------ the recording


def minutes_label(minutes: float) -> str:
    return f"{minutes:g}".replace(".", "p")


def ensure_flv(cache: Path, minutes: float) -> Path:
    """The test file looped to --minutes, as FLV (packets copied, never re-encoded)."""
    test_file = common.ensure_test_file(cache)
    path = cache / f"export-{minutes_label(minutes)}min-{CACHE_VERSION}.flv"
    if path.is_file() and path.stat().st_size > 0:
        return path
    seconds = minutes * 60
    loops = max(0, int(seconds // common.TEST_FILE_SECONDS))
    partial = path.with_suffix(".partial.flv")
    # The test file's audio ends 46 ms after its video; -stream_loop offsets each pass by the
    # longest stream, so the first audio packet of a pass would repeat the last DTS of the one
    # before (FLV counts in ms). Our server's segment writer fails on that (see
    # docs/benchmarks.md), an encoder never sends it: loop a copy whose audio stops 0.1 s early.
    loop_source = cache / f"export-loop-source-{CACHE_VERSION}.mp4"
    with common.step(f"making {path.name} ({seconds:g} s, once)"):
        if not loop_source.is_file():
            subprocess.run(
                ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                 "-i", str(test_file), "-t", f"{common.TEST_FILE_SECONDS - 0.1:g}",
                 "-i", str(test_file), "-map", "0:v", "-map", "1:a", "-c", "copy",
                 str(loop_source)],
                check=True,
            )  # fmt: skip
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
             "-stream_loop", str(loops), "-i", str(loop_source), "-t", f"{seconds:g}",
             "-c", "copy", "-f", "flv", str(partial)],
            check=True,
        )  # fmt: skip
    partial.rename(path)
    return path


class DataServer(common.OurServer):
    """Our server on a given data directory (kept: only its temporary log dir is removed)."""

    def __init__(
        self, data_dir: Path, src: Path, make_mp4: bool = False, env: dict | None = None
    ) -> None:
        super().__init__(
            {
                "PERISCOPE_DATA_DIR": str(data_dir),
                "PERISCOPE_RECORDING__MAKE_MP4": "true" if make_mp4 else "false",
                "PERISCOPE_RECORDING__RECONNECT_GRACE": "0",
                **(env or {}),
            },
            src,
        )
        self.data_dir = data_dir


def api_get(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return json.loads(body)
    finally:
        conn.close()


def ensure_recording(cache: Path, minutes: float, src: Path) -> dict:
    """The cached data directory with one finished broadcast; made once."""
    base = cache / f"export-data-{minutes_label(minutes)}min-{CACHE_VERSION}"
    meta_path = base / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if (base / "data").is_dir():
            return meta
    flv = ensure_flv(cache, minutes)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    data = base / "data.partial"
    server = DataServer(data, src)
    with common.step(f"recording {minutes:g} min without -re (once)"), server:
        t0 = time.monotonic()
        push = subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(flv),
             "-c", "copy", "-f", "flv", server.publish_url(CHANNEL)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
        pushed = time.monotonic() - t0
        if push.returncode != 0:
            raise RuntimeError(f"push failed: {push.stderr[-2000:]}\n{server.log_tail()}")
        record = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = api_get(server.http_port, f"/api/broadcasts?channel={CHANNEL}")["broadcasts"]
            if listed and listed[0]["status"] in ("ended", "interrupted"):
                record = listed[0]
                break
            time.sleep(0.2)
        ended = time.monotonic() - t0
        if record is None:
            raise RuntimeError(f"the broadcast did not end\n{server.log_tail()}")
    data.rename(base / "data")
    meta = {
        "broadcast_id": record["id"],
        "channel": CHANNEL,
        "minutes": minutes,
        "duration_s": record["duration"],
        "segments": record["segments"],
        "segment_bytes": record["size"],
        "flv": str(flv),
        "flv_bytes": flv.stat().st_size,
        "push_wall_s": round(pushed, 2),
        "push_to_ended_s": round(ended, 2),
        "ingest_x_realtime": round(minutes * 60 / pushed, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def segment_paths(data: Path, broadcast_id: str) -> list[Path]:
    directory = data / "channels" / CHANNEL / broadcast_id
    names = [
        line.strip()
        for line in (directory / "recording.m3u8").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return [directory / n for n in names]


def warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with path.open("rb") as f:
            while f.read(1 << 20):
                pass


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


# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=30, help="length of the broadcast (default 30)"
    )
    parser.add_argument(
        "--clip-seconds", type=float, default=60, help="clip length, from the middle (default 60)"
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="also export from the object store (moto's server, started here) on an empty node",
    )
    common.add_common_arguments(parser, "export")
    args = parser.parse_args(argv)
    if not 0.1 <= args.minutes <= 240:
        parser.error("--minutes: from 0.1 to 240")
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed: apt-get install -y ffmpeg")
    machine = common.machine_info()
    src = args.server_src

    meta = ensure_recording(args.cache, args.minutes, src)
    base = args.cache / f"export-data-{minutes_label(args.minutes)}min-{CACHE_VERSION}"
    data = base / "data"
    bid = meta["broadcast_id"]
    segments = segment_paths(data, bid)
    recording_mp4 = data / "channels" / CHANNEL / bid / "recording.mp4"
    recording_mp4.unlink(missing_ok=True)  # left by an interrupted run: measure streaming first
    work = base / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with common.step(f"reading {len(segments)} segments into the page cache"):
        warm_page_cache(segments)
    total = meta["duration_s"]
    clip_len = min(args.clip_seconds, total / 4)
    clip_start = round(total / 2, 3)
    clip_end = round(clip_start + clip_len, 3)
    results: dict[str, dict] = {}
    store: dict[str, dict] = {}
    clip_path = f"/replays/{bid}.mp4?start={clip_start:g}&end={clip_end:g}"
    stack = contextlib.ExitStack()
    try:
        # (a) streamed fragmented MP4 (no recording.mp4)
        results["stream"] = server_job(data, src, f"/replays/{bid}.mp4", label="(a) GET streamed")
        # (d) a clip from the middle: a temporary faststart MP4, then sent. A clip kept in the
        # data directory's clip cache by an earlier run would be measured as a file send.
        shutil.rmtree(data / "clip-cache", ignore_errors=True)
        results["clip"] = server_job(
            data, src, clip_path, label=f"(d) GET clip {clip_start:g}-{clip_end:g} s"
        )
        if args.store:
            moto = stack.enter_context(store_node.MotoStore(work.parent / "moto.log"))
            broadcast_dir = segments[0].parent
            with common.step("uploading the broadcast to moto"):
                moto.upload(data, [p for p in broadcast_dir.iterdir() if p.is_file()])
            for name, path, label in (
                ("stream", f"/replays/{bid}.mp4", "(a) GET streamed from the store"),
                ("clip", clip_path, "(d) GET clip from the store"),
            ):
                store[name] = store_job(data, src, work / f"node-{name}", path, moto, label)
        # the peer: ffmpeg over the same TS segments
        peer_out = work / "ffmpeg.mp4"
        peer = timed_child(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
             *ffmpeg_concat_input(segments, work), "-map", "0", "-c", "copy",
             "-movflags", "+faststart", str(peer_out)],
            label="ffmpeg concat -c copy +faststart",
        )  # fmt: skip
        peer.update(output_facts(peer_out))
        peer_out.unlink()
        results["ffmpeg"] = peer
        # (c) the CLI export (fragmented MP4 written to a file)
        cli_out = work / "cli.mp4"
        cli = timed_child(
            [python_cmd(), "-m", "periscope_ingest", "export", bid, "-o", str(cli_out)],
            env=child_env(data, src),
            label="(c) periscope-ingest export",
        )
        cli.update(output_facts(cli_out))
        cli_out.unlink()
        results["cli"] = cli
        # faststart recording.mp4, as the server's make_mp4 makes it
        listing = work / "segments.list"
        listing.write_text("\n".join(str(p) for p in segments))
        faststart = timed_child(
            [python_cmd(), "-c", FASTSTART_SNIPPET, str(listing), str(recording_mp4)],
            env=child_env(data, src),
            label="export_mp4 -> recording.mp4 (faststart)",
        )
        faststart.update(output_facts(recording_mp4))
        results["faststart"] = faststart
        # (b) the finished file over HTTP, whole and a 1 MiB range from the middle
        results["file"] = server_job(data, src, f"/replays/{bid}.mp4", label="(b) GET file")
        size = recording_mp4.stat().st_size
        first = size // 2
        last = min(size - 1, first + MIB - 1)
        results["range"] = server_job(
            data,
            src,
            f"/replays/{bid}.mp4",
            headers={"Range": f"bytes={first}-{last}"},
            label="(b) GET range",
        )
        if args.store:
            moto.upload(data, [recording_mp4])
            mp4 = f"/replays/{bid}.mp4"
            store["file"] = store_job(
                data, src, work / "node-file", mp4, moto, "(b) GET file from the store"
            )
            store["range"] = store_job(
                data,
                src,
                work / "node-range",
                mp4,
                moto,
                "(b) GET range from the store",
                {"Range": f"bytes={first}-{last}"},
            )
    finally:
        stack.close()
        recording_mp4.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)

    for name in ("cli", "faststart", "ffmpeg"):
        x = results[name]
        x["mb_per_s"] = r(x["bytes"] / MB / x["wall_s"], 1) if x["wall_s"] else None
    peer = results["ffmpeg"]
    ratios = {
        "stream_wall": ratio(results["stream"]["total_s"], peer["wall_s"]),
        "cli_wall": ratio(results["cli"]["wall_s"], peer["wall_s"]),
        "cli_peak_rss": ratio(results["cli"]["peak_rss_mib"], peer["peak_rss_mib"]),
        "faststart_wall": ratio(results["faststart"]["wall_s"], peer["wall_s"]),
        "faststart_peak_rss": ratio(results["faststart"]["peak_rss_mib"], peer["peak_rss_mib"]),
    }

    print(
        f"\n## export: {meta['duration_s']:g} s broadcast, {meta['segments']} segments, "
        f"{meta['segment_bytes'] / MB:.0f} MB of TS (recorded at "
        f"{meta['ingest_x_realtime']:g}x real time)\n"
    )
    http_rows = [
        [name, x["status"], x["headers_ms"], x["first_byte_ms"], x["total_s"],
         x["bytes"] / MB, x["mb_per_s"], x["server_rss_idle_mib"], x["server_rss_peak_mib"],
         x["server_rss_added_mib"], x["server_cpu_seconds"], x["machine_busy_percent"]]
        for name, x in ((n, results[n]) for n in ("stream", "file", "range", "clip"))
    ]  # fmt: skip
    print(
        markdown_table(
            ["GET", "status", "headers ms", "1st byte ms", "total s", "MB", "MB/s",
             "server RSS idle MiB", "server RSS peak MiB", "added MiB", "server CPU s",
             "box busy %"],
            http_rows,
            digits=2,
        )
    )  # fmt: skip
    print()
    job_rows = [
        [name, x["wall_s"], x["bytes"] / MB, x["mb_per_s"], x["peak_rss_mib"], x["cpu_seconds"],
         ratio(x["wall_s"], peer["wall_s"]), ratio(x["peak_rss_mib"], peer["peak_rss_mib"])]
        for name, x in (
            ("periscope-ingest export (fragmented)", results["cli"]),
            ("export_mp4 -> recording.mp4 (faststart)", results["faststart"]),
            ("ffmpeg concat -c copy +faststart", peer),
        )
    ]  # fmt: skip
    print(
        markdown_table(
            ["job", "wall s", "MB", "MB/s", "peak RSS MiB", "CPU s", "wall / ffmpeg",
             "RSS / ffmpeg"],
            job_rows,
            digits=2,
        )
    )  # fmt: skip
    if store:
        print_store_table(results, store)
        ratios["store_over_disk"] = {
            name: {
                "first_byte_ms": ratio(x["first_byte_ms"], results[name]["first_byte_ms"]),
                "total_s": ratio(x["total_s"], results[name]["total_s"]),
                "server_rss_peak_mib": ratio(
                    x["server_rss_peak_mib"], results[name]["server_rss_peak_mib"]
                ),
                "server_rss_added_mib": ratio(
                    x["server_rss_added_mib"], results[name]["server_rss_added_mib"]
                ),
            }
            for name, x in store.items()
        }
        results["store"] = store
    common.write_results(
        args.json,
        "export",
        {
            "machine": machine,
            "params": {
                "minutes": args.minutes,
                "clip_start": clip_start,
                "clip_end": clip_end,
                "cache": str(args.cache),
                "server_src": str(src),
            },
            "recording": meta,
            "results": results,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
