"""The publisher of latency.py and part_wait.py: PyAV pushes 640x360 30 fps H.264 + AAC in real
time and paints into every frame the wall-clock time at which it was made.

The time (ms, 32 bits, MSB first) is a band of black/white blocks across the top BAND_H rows;
hlsjs_player.py reads it back from the frame on screen. Run as a subprocess (start_pusher), so
that encoding does not share the benchmark's interpreter:

    .venv/bin/python scripts/bench/stamped_publisher.py --push URL [--push-seconds S] [--gop G]
"""

from __future__ import annotations

import argparse
import math
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

WIDTH, HEIGHT, FPS = 640, 360, 30
SAMPLE_RATE = 48_000
BITS = 32
BLOCK_W = WIDTH // BITS  # 20 px per bit
BAND_H = 32  # two macroblock rows: survives x264 untouched


def stamp_band(ms: int) -> bytes:
    """The luma of the top BAND_H rows: bit i of ms (MSB first) as a white or black block."""
    row = b"".join(
        (b"\xeb" if (ms >> (BITS - 1 - i)) & 1 else b"\x10") * BLOCK_W for i in range(BITS)
    )
    return row * BAND_H


def push(url: str, seconds: float, gop: float) -> None:
    """Publish in real time; every frame carries the wall-clock ms at which it was made."""
    import av

    out = av.open(url, mode="w", format="flv")
    keyint = round(gop * FPS)
    vstream = out.add_stream("libx264", rate=FPS)
    vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vstream.codec_context.gop_size = keyint
    vstream.codec_context.max_b_frames = 2
    vstream.codec_context.options = {
        "preset": "veryfast",
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2",
    }
    astream = out.add_stream("aac", rate=SAMPLE_RATE)
    astream.layout = "stereo"
    tone = struct.pack(
        "<1024f", *(0.1 * math.sin(2 * math.pi * 375 * n / SAMPLE_RATE) for n in range(1024))
    )
    rest = WIDTH * (HEIGHT - BAND_H)
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    audio_sent = 0
    started = time.monotonic()
    frames = round(seconds * FPS) if seconds > 0 else 1 << 62
    for i in range(frames):
        ahead = started + i / FPS - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shade = (i * 3) % 180 + 40
        luma = stamp_band(int(time.time() * 1000) & 0xFFFFFFFF) + bytes([shade]) * rest
        # Planes may be padded: write row by row at the plane's stride.
        _fill(frame.planes[0], luma, WIDTH, HEIGHT)
        _fill(frame.planes[1], chroma, WIDTH // 2, HEIGHT // 2)
        _fill(frame.planes[2], chroma, WIDTH // 2, HEIGHT // 2)
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        for packet in vstream.encode(frame):
            out.mux(packet)
        while audio_sent * 1024 < (i + 1) * SAMPLE_RATE / FPS:
            aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            aframe.planes[0].update(tone)
            aframe.planes[1].update(tone)
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = audio_sent * 1024
            aframe.time_base = Fraction(1, SAMPLE_RATE)
            for packet in astream.encode(aframe):
                out.mux(packet)
            audio_sent += 1
    for stream in (vstream, astream):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()


def _fill(plane, data: bytes, width: int, height: int) -> None:
    stride = plane.line_size
    if stride == width:
        plane.update(data)
        return
    padded = bytearray(stride * height)
    for y in range(height):
        padded[y * stride : y * stride + width] = data[y * width : (y + 1) * width]
    plane.update(bytes(padded))


def start_pusher(url: str, seconds: float, gop: float, log: Path) -> subprocess.Popen:
    python = common.REPO / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), __file__, "--push", url]
    cmd += ["--push-seconds", str(seconds), "--gop", str(gop)]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--push", required=True, help="RTMP URL to publish to")
    parser.add_argument("--push-seconds", type=float, default=0, help="0: until stopped")
    parser.add_argument("--gop", type=float, default=2.0, help="keyframe interval, seconds")
    args = parser.parse_args(argv)
    push(args.push, args.push_seconds, args.gop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
