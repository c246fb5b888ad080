"""The export benchmark's recording: the looped FLV, pushed once to our server and cached."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import LOOPBACK

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
