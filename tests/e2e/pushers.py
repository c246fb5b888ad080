"""Real RTMP publishers: PyAV (bundled FFmpeg), Debian's ffmpeg, GStreamer's rtmp2sink.

Each pushes ``seconds`` of 640x360 30 fps H.264 (2 s GOP, B-frames) and 48 kHz stereo AAC in real
time and returns when the publisher has finished (its connection closed).
"""

from __future__ import annotations

import math
import struct
import subprocess
import time
from fractions import Fraction

import av

WIDTH, HEIGHT, FPS = 640, 360, 30
SAMPLE_RATE = 48_000


def push_pyav(
    url: str, seconds: float, video: bool = True, audio: bool = True, realtime: bool = True
) -> None:
    """Encode and publish; with a file path as ``url`` and realtime=False it writes an FLV file."""
    out = av.open(url, mode="w", format="flv")
    vstream = astream = None
    if video:
        vstream = out.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vstream.codec_context.gop_size = 2 * FPS
        vstream.codec_context.max_b_frames = 2
        vstream.codec_context.options = {
            "preset": "veryfast",
            "x264-params": f"keyint={2 * FPS}:min-keyint={2 * FPS}:scenecut=0:bframes=2",
        }
    if audio:
        astream = out.add_stream("aac", rate=SAMPLE_RATE)
        astream.layout = "stereo"
    frames = round(seconds * FPS)
    audio_frames_sent = 0
    started = time.monotonic()
    for i in range(frames):
        if vstream is not None:
            frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
            # A moving gradient: cheap to make, and not blank after decoding.
            shade = (i * 4) % 200 + 20
            frame.planes[0].update(bytes([shade]) * frame.planes[0].buffer_size)
            frame.planes[1].update(bytes([(shade * 3) % 256]) * frame.planes[1].buffer_size)
            frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in vstream.encode(frame):
                out.mux(packet)
        if astream is not None:
            # Keep audio up to the video clock, 1024 samples at a time.
            while audio_frames_sent * 1024 < (i + 1) * SAMPLE_RATE / FPS:
                samples = [
                    0.2 * math.sin(2 * math.pi * 440 * (audio_frames_sent * 1024 + n) / SAMPLE_RATE)
                    for n in range(1024)
                ]
                aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                data = struct.pack(f"<{len(samples)}f", *samples)
                aframe.planes[0].update(data)
                aframe.planes[1].update(data)
                aframe.sample_rate = SAMPLE_RATE
                aframe.pts = audio_frames_sent * 1024
                aframe.time_base = Fraction(1, SAMPLE_RATE)
                for packet in astream.encode(aframe):
                    out.mux(packet)
                audio_frames_sent += 1
        # Real time, like an encoder: the server sees a live stream, not a file upload.
        ahead = started + (i + 1) / FPS - time.monotonic()
        if realtime and ahead > 0:
            time.sleep(ahead)
    for stream in (vstream, astream):
        if stream is not None:
            for packet in stream.encode(None):
                out.mux(packet)
    out.close()


def ffmpeg_command(url: str, seconds: float) -> list[str]:
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate={SAMPLE_RATE}",
        "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-bf", "2", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-ar", str(SAMPLE_RATE), "-ac", "2",
        "-f", "flv", url,
    ]  # fmt: skip


def gstreamer_command(url: str, seconds: float) -> list[str]:
    video_buffers = round(seconds * FPS)
    audio_buffers = round(seconds * SAMPLE_RATE / 1024)
    return [
        "gst-launch-1.0", "-q", "-e",
        "videotestsrc", "is-live=true", f"num-buffers={video_buffers}", "pattern=ball", "!",
        f"video/x-raw,width={WIDTH},height={HEIGHT},framerate={FPS}/1,format=I420", "!",
        "x264enc", "key-int-max=60", "bframes=2", "speed-preset=veryfast", "!",
        "video/x-h264,profile=main", "!", "h264parse", "!", "queue", "!",
        "flvmux", "name=mux", "streamable=true", "!", "rtmp2sink", f"location={url}",
        "audiotestsrc", "is-live=true", f"num-buffers={audio_buffers}", "samplesperbuffer=1024",
        "!", f"audio/x-raw,rate={SAMPLE_RATE},channels=2", "!", "audioconvert", "!",
        "avenc_aac", "!", "aacparse", "!", "queue", "!", "mux.",
    ]  # fmt: skip


def run_pusher(command: list[str], timeout: float) -> None:
    result = subprocess.run(command, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(
            f"{command[0]} failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
        )
