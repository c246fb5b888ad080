"""Media packets on our own timeline, ready for a muxer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# MPEG-TS and HLS count time in 90 kHz ticks; RTMP counts milliseconds.
TICKS_PER_SECOND = 90_000
TICKS_PER_MS = 90

Track = Literal["video", "audio"]


@dataclass(slots=True)
class MediaPacket:
    track: Track
    dts: int  # 90 kHz ticks on the stream's timeline (may be slightly negative at the start)
    pts: int  # 90 kHz ticks, never below dts
    keyframe: bool  # video only: an IDR access unit a segment may start with
    data: bytes | memoryview  # AVCC length-prefixed NAL units, or one raw AAC frame
    duration: int  # 90 kHz ticks: exact for audio (from the sample count), estimated for video


def ticks_to_ms(ticks: int) -> int:
    return round(ticks / TICKS_PER_MS)
