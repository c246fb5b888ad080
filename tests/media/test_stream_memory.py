"""What the FFmpeg objects a stream keeps open hold in memory (#17: memory per stream).

- StreamTemplates live for a whole publish; an open FLV demuxer holds about 2 MiB of zeroed
  context, so keeping it open cost every stream that much. Counted here as the process's
  resident anonymous memory while many templates are alive: about 2.2 MiB each with the demuxer
  kept open, well under 100 KiB each without it.
- A TsSegmentMuxer is open for the whole segment; FFmpeg's file: protocol gave it a 256 KiB
  write buffer, its pipe: protocol a 32 KiB one. Counted as the bytes glibc has handed out and
  not taken back (mallinfo2), which do not depend on what earlier tests freed.
- And that 32 KiB buffer is what reaches the file: by default FFmpeg flushes a pipe after every
  packet (a write(2) per audio frame). Counted as this process's write calls (/proc/self/io).
"""

from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path

import pytest

from periscope_ingest.media.muxer import StreamTemplates, TsSegmentMuxer
from periscope_ingest.media.packets import MediaPacket

# A real 1280x720 High profile avcC (SPS + PPS) and AAC-LC 48 kHz stereo.
AVCC = bytes.fromhex(
    "01640028ffe1001b67640028acd940780227e5c04400000303040000030f03c60c658001000568ebecb22c"
)
ASC = bytes.fromhex("1190")
TEMPLATES = 20


def _proc_count(path: str, field: str) -> int:
    """The number after ``field:`` in a /proc/self file (``RssAnon`` in status, ``syscw`` in io)."""
    with open(path) as lines:
        for line in lines:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in {path}")


def _resident_anonymous_kib() -> int:
    return _proc_count("/proc/self/status", "RssAnon")


def test_live_templates_keep_no_demuxer_resident() -> None:
    StreamTemplates(AVCC, ASC).close()  # FFmpeg's one-time allocations are not counted
    before = _resident_anonymous_kib()
    alive = [StreamTemplates(AVCC, ASC) for _ in range(TEMPLATES)]
    try:
        grown = _resident_anonymous_kib() - before
        # With the demuxer open: about 44 MiB for 20. The bound leaves room for allocator noise.
        assert grown < TEMPLATES * 512, f"{grown} KiB resident for {TEMPLATES} templates"
        for templates in alive:
            assert templates.video is not None and templates.audio is not None
            assert templates.video.codec_context.extradata == AVCC
            assert templates.audio.codec_context.extradata == ASC
    finally:
        for templates in alive:
            templates.close()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _malloc_in_use_kib() -> float:
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 1024


# One 12 KB H.264 slice (4-byte NAL length, then the NAL), as an encoder's frame of 3 Mb/s.
_SLICE = (12001).to_bytes(4, "big") + b"\x65" + bytes(12000)
_AAC = bytes(400)  # a raw AAC frame's worth of bytes: the muxer does not parse them


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallinfo2 is glibc's")
def test_open_ts_segments_hold_small_write_buffers(tmp_path: Path) -> None:
    templates = StreamTemplates(AVCC, ASC)
    descriptors = len(os.listdir("/proc/self/fd"))
    before = _malloc_in_use_kib()
    muxers = [TsSegmentMuxer(templates, tmp_path / f"{i}.ts") for i in range(TEMPLATES)]
    try:
        for muxer in muxers:
            audio_ticks = 0
            for frame in range(30):  # 360 KB: past any write buffer of 256 KiB
                ticks = frame * 3000
                muxer.write(MediaPacket("video", ticks, ticks, frame == 0, _SLICE, 3000))
                # Audio too, in DTS order: without it the muxer holds video back to interleave.
                while audio_ticks <= ticks:
                    muxer.write(MediaPacket("audio", audio_ticks, audio_ticks, True, _AAC, 1920))
                    audio_ticks += 1920
        held = (_malloc_in_use_kib() - before) / TEMPLATES
        # file: protocol: about 320 KiB per open segment (its buffer and the muxer); pipe: about
        # 100 KiB.
        assert held < 192, f"{held:.0f} KiB held per open segment"
    finally:
        sizes = [muxer.close() for muxer in muxers]
        templates.close()
    assert all(size > 30 * 12000 for size in sizes)
    assert len(os.listdir("/proc/self/fd")) == descriptors  # each segment's closed once


def _write_calls() -> int:
    return _proc_count("/proc/self/io", "syscw")


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="Linux's per-process I/O counts")
def test_a_ts_segment_reaches_its_file_in_buffer_sized_writes(tmp_path: Path) -> None:
    templates = StreamTemplates(AVCC, ASC)
    muxer = TsSegmentMuxer(templates, tmp_path / "segment.ts")
    packets = 0
    before = _write_calls()
    try:
        audio_ticks = 0
        for frame in range(60):  # two seconds at 30 fps, 720 KB
            ticks = frame * 3000
            muxer.write(MediaPacket("video", ticks, ticks, frame == 0, _SLICE, 3000))
            packets += 1
            while audio_ticks <= ticks:
                muxer.write(MediaPacket("audio", audio_ticks, audio_ticks, True, _AAC, 1920))
                audio_ticks += 1920
                packets += 1
    finally:
        size = muxer.close()
        templates.close()
    writes = _write_calls() - before
    # One per 32 KiB buffer and a few more (the header, the last partial buffer); flushing after
    # each packet made it one per packet: 154 here.
    assert size > 60 * 12000
    assert writes <= size // 32768 + 4 < packets, (writes, size, packets)
