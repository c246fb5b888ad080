"""What is known and measured about one live stream, for /api/streams and the posters.

The pipeline fills it in (tracks, metadata, and per closed segment the measured bitrate and frame
rate); the edge hands it to web/, which turns it into JSON.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from periscope_ingest.media.aac import AacConfig
from periscope_ingest.media.ingest import VideoConfig
from periscope_ingest.media.packets import TICKS_PER_SECOND

# Segments over which the bitrate and frame rate are measured.
STATS_SEGMENTS = 5


@dataclass(slots=True)
class StreamInfo:
    channel: str
    broadcast_id: str
    started_at: datetime
    video: VideoConfig | None = None
    audio: AacConfig | None = None
    metadata: dict = field(default_factory=dict)
    segments: int = 0
    bitrate: int | None = None  # measured bits/s of the media payload
    frame_rate: float | None = None  # measured frames/s

    def describe(self) -> dict:
        """What /api/streams says of the stream (web/ adds its URLs and viewer counts); in a
        cluster, what the other nodes are told of it."""
        video = self.video
        audio = self.audio
        return {
            "key": self.channel,
            "channel": self.channel,
            "broadcast_id": self.broadcast_id,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "video_codec": video.codecs if video else None,
            "audio_codec": audio.codecs if audio else None,
            "resolution": f"{video.width}x{video.height}" if video else None,
            "width": video.width if video else None,
            "height": video.height if video else None,
            "frame_rate": self.frame_rate or (video.frame_rate if video else None),
            "audio_sample_rate": audio.sample_rate if audio else None,
            "audio_channels": audio.channels if audio else None,
            "bitrate": self.bitrate,
            "segments": self.segments,
        }


@dataclass(slots=True)
class _SegmentTally:
    payload_bytes: int = 0
    video_frames: int = 0


class StreamMeter:
    """Counts the payload and video frames of the open segment; at each cut, the bitrate and
    frame rate over the last STATS_SEGMENTS segments go into the StreamInfo."""

    def __init__(self, info: StreamInfo) -> None:
        self._info = info
        self._tally = _SegmentTally()
        self._recent: deque[tuple[int, _SegmentTally]] = deque(maxlen=STATS_SEGMENTS)

    def packet(self, size: int, video: bool) -> None:
        tally = self._tally
        tally.payload_bytes += size
        if video:
            tally.video_frames += 1

    def segment_closed(self, duration_ticks: int) -> None:
        self._recent.append((duration_ticks, self._tally))
        self._tally = _SegmentTally()
        total_ticks = sum(d for d, _ in self._recent)
        if total_ticks > 0:
            seconds = total_ticks / TICKS_PER_SECOND
            info = self._info
            info.bitrate = round(sum(t.payload_bytes for _, t in self._recent) * 8 / seconds)
            frames = sum(t.video_frames for _, t in self._recent)
            info.frame_rate = round(frames / seconds, 3) if frames else None
