"""Record what real RTMP publishers send, for the replay and fuzz tests in test_fuzz.py.

A tiny asyncio TCP proxy on 127.0.0.1 sits in front of a real ``periscope_ingest serve``
subprocess; Debian's ffmpeg and PyAV publish through it, and the proxy keeps the client-to-server
bytes of each connection (handshake included). Each capture is ~1.5 s of 160x120 video with
low-bitrate mono AAC, so the files stay at tens of KB and can be committed.

Regenerate (overwrites tests/rtmp/corpus/*.bin)::

    .venv/bin/python -m tests.rtmp.make_corpus
    .venv/bin/python -m tests.rtmp.make_corpus --server-revision HEAD  # server as committed

The second form runs the server from `git archive` of a revision, for when the working tree's
server is mid-change; the RTMP replies the publishers react to come from the same code either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

CORPUS_DIR = Path(__file__).parent / "corpus"
WIDTH, HEIGHT, FPS = 160, 120, 15
SAMPLE_RATE = 48_000
SECONDS = 1.5
STREAM_KEY = "corpus"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingProxy:
    """Forwards TCP connections to an upstream port, recording each client's bytes."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._lock = threading.Lock()
        self._finished: list[bytes] = []
        self._changed = threading.Condition(self._lock)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = bytearray()
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bool) -> None:
            try:
                while data := await src.read(65536):
                    if keep:
                        record.extend(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                if keep:
                    with self._changed:
                        self._finished.append(bytes(record))
                        self._changed.notify_all()
                with contextlib.suppress(ConnectionError, OSError):
                    dst.close()

        await asyncio.gather(
            pump(reader, up_writer, True), pump(up_reader, writer, False), return_exceptions=True
        )

    def take(self, timeout: float = 20) -> bytes:
        """The client bytes of the next connection to finish (waits for the client to close)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no proxied connection finished")
                self._changed.wait(left)
            return self._finished.pop(0)


class _Server:
    """``python -m periscope_ingest serve`` on free ports, data in a temporary directory."""

    def __init__(self, data_dir: Path, source_dir: Path = REPO_ROOT) -> None:
        self.source_dir = source_dir
        self.rtmp_port = _free_port()
        self.http_port = _free_port()
        self.env = {
            **os.environ,
            "PERISCOPE_HOST": "127.0.0.1",
            "PERISCOPE_RTMP_PORT": str(self.rtmp_port),
            "PERISCOPE_HTTP_PORT": str(self.http_port),
            "PERISCOPE_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(source_dir),
            # Newer servers need accounts unless publishing is open (older ones ignore this).
            "PERISCOPE_OPEN_PUBLISH": "true",
        }
        self.log_path = data_dir / "server.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> _Server:
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "periscope_ingest", "serve"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.source_dir,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/healthz", timeout=2
                ):
                    return self
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.05)
        self.__exit__()
        raise TimeoutError("server did not start")

    def __exit__(self, *exc_info: object) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# ------------------------------------------------------------------------------ publishers


def push_ffmpeg(url: str) -> None:
    """Debian's ffmpeg: H.264 (with B-frames) + AAC, native RTMP, default chunk size 128."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SAMPLE_RATE}",
        "-t", str(SECONDS),
        "-c:v", "libx264", "-preset", "veryfast", "-g", str(FPS), "-bf", "2",
        "-b:v", "60k", "-maxrate", "60k", "-bufsize", "60k", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ac", "1", "-b:a", "24k",
        "-f", "flv", url,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {result.stderr.decode(errors='replace')}")


def push_pyav(url: str, codec: str) -> None:
    """PyAV's bundled FFmpeg: libx264 (legacy FLV) or libx265 (Enhanced RTMP) + AAC."""
    import av

    out = av.open(url, mode="w", format="flv")
    video = out.add_stream(codec, rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.codec_context.gop_size = FPS
    video.codec_context.max_b_frames = 2
    video.codec_context.bit_rate = 60_000
    if codec == "libx265":
        video.codec_context.options = {
            "preset": "ultrafast",
            "x265-params": f"log-level=none:keyint={FPS}:bframes=2:bitrate=60",
        }
    else:
        video.codec_context.options = {"preset": "veryfast", "x264-params": f"keyint={FPS}"}
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "mono"
    audio.codec_context.bit_rate = 24_000
    frames = round(SECONDS * FPS)
    samples_sent = 0
    for i in range(frames):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shade = (i * 8) % 200 + 20
        frame.planes[0].update(bytes([shade]) * frame.planes[0].buffer_size)
        frame.planes[1].update(bytes([(shade * 3) % 256]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        for packet in video.encode(frame):
            out.mux(packet)
        while samples_sent < (i + 1) * SAMPLE_RATE / FPS:
            tone = [
                0.2 * math.sin(2 * math.pi * 440 * (samples_sent + n) / SAMPLE_RATE)
                for n in range(1024)
            ]
            aframe = av.AudioFrame(format="flt", layout="mono", samples=1024)
            aframe.planes[0].update(struct.pack("<1024f", *tone))
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = samples_sent
            aframe.time_base = Fraction(1, SAMPLE_RATE)
            for packet in audio.encode(aframe):
                out.mux(packet)
            samples_sent += 1024
    for stream in (video, audio):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()


def push_pyav_subprocess(url: str, codec: str) -> None:
    """push_pyav in a child process: PyAV holds the GIL while it blocks on the socket, which
    would starve the proxy's event loop thread in this process."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.rtmp.make_corpus", "--pyav-push", codec, url],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"PyAV push failed: {result.stderr.decode(errors='replace')}")


PUSHERS = {
    "ffmpeg-h264": push_ffmpeg,
    "pyav-h264": lambda url: push_pyav_subprocess(url, "libx264"),
    "pyav-hevc": lambda url: push_pyav_subprocess(url, "libx265"),
}


def _export_revision(revision: str, into: Path) -> Path:
    """The package as committed at revision (read-only `git archive`), for a stable server."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "periscope_ingest"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def record_corpus(
    out_dir: Path = CORPUS_DIR, names: list[str] | None = None, server_revision: str | None = None
) -> dict[str, int]:
    """Push through the proxy with every publisher; write <name>.bin; return the sizes.

    The server runs from the working tree, or from server_revision (e.g. "HEAD") exported to a
    temporary directory when the working tree is mid-change.
    """
    if shutil.which("ffmpeg") is None and (names is None or "ffmpeg-h264" in names):
        raise RuntimeError("Debian ffmpeg is not on PATH")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rtmp-corpus-") as tmp:
        source = REPO_ROOT
        if server_revision is not None:
            source = _export_revision(server_revision, Path(tmp) / "src")
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        with _Server(data_dir, source) as server, RecordingProxy(server.rtmp_port) as proxy:
            sizes = _record(proxy, out_dir, names)
    return sizes


def _record(proxy: RecordingProxy, out_dir: Path, names: list[str] | None) -> dict[str, int]:
    sizes = {}
    for name in names or list(PUSHERS):
        url = f"rtmp://127.0.0.1:{proxy.port}/live/{STREAM_KEY}"
        PUSHERS[name](url)
        capture = proxy.take()
        (out_dir / f"{name}.bin").write_bytes(capture)
        sizes[name] = len(capture)
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(PUSHERS)} (default: all)")
    parser.add_argument(
        "--server-revision",
        help="run the server from this git revision (e.g. HEAD) instead of the working tree",
    )
    parser.add_argument("--pyav-push", nargs=2, metavar=("CODEC", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pyav_push:
        push_pyav(args.pyav_push[1], args.pyav_push[0])
        return
    sizes = record_corpus(names=args.names or None, server_revision=args.server_revision)
    for name, size in sizes.items():
        print(f"{CORPUS_DIR / name}.bin: {size} bytes")


if __name__ == "__main__":
    main()
