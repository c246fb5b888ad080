"""Real recorded segments for export tests: PyAV encodes an FLV, our own muxer cuts it into TS.

Every video frame has its own flat brightness (frame_shade), so a decoded frame tells its number.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction
from pathlib import Path

import av

from periscope_ingest.media import flv
from periscope_ingest.media.muxer import StreamTemplates, TsSegmentMuxer
from periscope_ingest.media.packets import TICKS_PER_MS, MediaPacket
from tests.flv_file import read_tags

WIDTH, HEIGHT, FPS = 320, 180, 30
SAMPLE_RATE = 48_000
SECONDS = 20
SEGMENT_TICKS = 2 * 90_000
AAC_FRAME_TICKS = 1024 * 90_000 // SAMPLE_RATE


def frame_shade(index: int) -> int:
    """Luma of frame ``index``: steps of 4 survive compression; repeats every 50 frames."""
    return 16 + (index % 50) * 4


def encode_flv(
    path: Path,
    seconds: int = SECONDS,
    width: int = WIDTH,
    height: int = HEIGHT,
    preset: str = "veryfast",
) -> None:
    """H.264 (2 s GOP, 2 B-frames, no scene cuts) and 48 kHz stereo AAC, 30 fps."""
    out = av.open(str(path), mode="w", format="flv")
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.codec_context.gop_size = 2 * FPS
    video.codec_context.max_b_frames = 2
    video.codec_context.options = {
        "preset": preset,
        "x264-params": f"keyint={2 * FPS}:min-keyint={2 * FPS}:scenecut=0:bframes=2",
    }
    audio = out.add_stream("aac", rate=SAMPLE_RATE)
    audio.layout = "stereo"
    sent = 0
    for i in range(seconds * FPS):
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(bytes([frame_shade(i)]) * frame.planes[0].buffer_size)
        frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
        frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        out.mux(video.encode(frame))
        while sent * 1024 < (i + 1) * SAMPLE_RATE / FPS:
            phase = 2 * math.pi * 440 / SAMPLE_RATE
            tone = [0.2 * math.sin(phase * (sent * 1024 + n)) for n in range(1024)]
            data = struct.pack("<1024f", *tone)
            aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            aframe.planes[0].update(data)
            aframe.planes[1].update(data)
            aframe.sample_rate, aframe.pts = SAMPLE_RATE, sent * 1024
            aframe.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(audio.encode(aframe))
            sent += 1
    out.mux(video.encode(None))
    out.mux(audio.encode(None))
    out.close()


def _packets(flv_path: Path, video: bool, audio: bool) -> tuple[bytes | None, bytes | None, list]:
    """The FLV's packets on a 90 kHz timeline, as our ingest would produce them."""
    avcc = asc = None
    packets: list[MediaPacket] = []
    audio_start = None
    audio_count = 0
    for tag_type, ms, body in read_tags(flv_path):
        if tag_type == 9 and video:
            for item in flv.parse_video(body):
                if isinstance(item, flv.VideoSequenceStart):
                    avcc = item.record
                elif isinstance(item, flv.VideoFrame):
                    dts = ms * TICKS_PER_MS
                    pts = dts + item.composition_offset * TICKS_PER_MS
                    packets.append(MediaPacket("video", dts, pts, item.keyframe, item.data, 3000))
        elif tag_type == 8 and audio:
            for item in flv.parse_audio(body):
                if isinstance(item, flv.AudioSequenceStart):
                    asc = item.record
                elif isinstance(item, flv.AudioFrame):
                    # Audio time from the sample count, like timeline.py does.
                    audio_start = ms * TICKS_PER_MS if audio_start is None else audio_start
                    ts = audio_start + audio_count * AAC_FRAME_TICKS
                    audio_count += 1
                    packets.append(MediaPacket("audio", ts, ts, False, item.data, AAC_FRAME_TICKS))
    return avcc, asc, packets


def write_segments(
    flv_path: Path,
    out_dir: Path,
    *,
    video: bool = True,
    audio: bool = True,
    jump_at: int | None = None,
    jump_ticks: int = 0,
) -> list[Path]:
    """Cut at the first keyframe (or, audio-only, any frame) 2 s after the segment's start.

    From segment ``jump_at`` on, every timestamp moves by ``jump_ticks`` (a clock jump).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    avcc, asc, packets = _packets(flv_path, video, audio)
    templates = StreamTemplates(avcc, asc)
    paths: list[Path] = []
    muxer = None
    segment_start = 0
    for packet in packets:
        can_cut = packet.keyframe if video else True
        if can_cut and (muxer is None or packet.pts - segment_start >= SEGMENT_TICKS):
            if muxer is not None:
                muxer.close()
            segment_start = packet.pts
            paths.append(out_dir / f"{len(paths):06d}.ts")
            muxer = TsSegmentMuxer(templates, paths[-1])
        if muxer is None:
            continue  # audio before the first keyframe
        if jump_at is not None and len(paths) - 1 >= jump_at:
            packet.dts += jump_ticks
            packet.pts += jump_ticks
        muxer.write(packet)
    assert muxer is not None
    muxer.close()
    templates.close()
    return paths
