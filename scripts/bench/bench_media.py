"""The bench test media (generated once, cached) and the ffmpeg pushers that publish it."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_env import TEST_FILE_NAME, TEST_FILE_SECONDS
from bench_procs import stop_process


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
