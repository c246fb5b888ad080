"""Where to cut a stream into HLS segments. Pure: packets in, decisions out.

Rules (RFC 8216 and Apple's authoring guidelines, the way nginx-rtmp's hls module cuts):
- With video, a segment starts with a keyframe: cut at the first keyframe whose PTS is at or after
  the target duration. Decisions use PTS, not DTS: GStreamer's flvmux clamps the first DTS so a 2 s
  GOP can show a 1.951 s DTS distance while its PTS distance is 2.000 s.
- EXT-X-TARGETDURATION may never change, yet the encoder's GOP length is only known once a GOP has
  been seen. It is fixed when the first segment closes: the larger of the target and the first
  segment's duration, rounded. A later GOP so long that its segment would round above it is cut
  before a reference frame anyway ("forced"), since the playlist rule is a MUST.
- Audio-only streams are cut on any audio frame at the target duration.
- Everything before the first keyframe is dropped: no player can decode it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from periscope_ingest.media.packets import TICKS_PER_SECOND, MediaPacket

# Frame timestamps arrive in whole milliseconds: a 2 s GOP at 30 fps can come out as 1999 ms.
# Without slack such a keyframe would be skipped and the segment doubled.
CUT_SLACK_TICKS = 45 * 90  # 45 ms


class Action(Enum):
    DROP = "drop"  # before the first keyframe: not written anywhere
    WRITE = "write"  # goes into the open segment
    CUT = "cut"  # close the open segment (if any), start a new one with this packet


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    closed_duration: int | None = None  # ticks of the segment this cut closes, None for the first
    discontinuity: bool = False  # the new segment follows a timeline discontinuity
    forced: bool = False  # the new segment does not start with a keyframe


_DROP = Decision(Action.DROP)
_WRITE = Decision(Action.WRITE)


class Segmenter:
    def __init__(self, target_duration_s: float, has_video: bool) -> None:
        self._target = round(target_duration_s * TICKS_PER_SECOND)
        self._has_video = has_video
        self._start: int | None = None  # PTS of the open segment's first frame
        self._end = 0  # end (PTS + duration) of the latest frame of the cutting track
        self._max_video_pts = 0
        self._pending_discontinuity = False
        self.target_duration_s: int | None = None  # EXT-X-TARGETDURATION once fixed

    @property
    def started(self) -> bool:
        return self._start is not None

    def _longest_allowed(self) -> int:
        """Longest segment whose duration still rounds to at most the target duration."""
        assert self.target_duration_s is not None
        return self.target_duration_s * TICKS_PER_SECOND + TICKS_PER_SECOND // 2 - 1

    def _cut(self, pts: int, forced: bool = False) -> Decision:
        closed = None
        if self._start is not None:
            closed = pts - self._start
            if self.target_duration_s is None:
                wanted = max(self._target, closed)
                self.target_duration_s = max(1, math.floor(wanted / TICKS_PER_SECOND + 0.5))
        decision = Decision(Action.CUT, closed, self._pending_discontinuity, forced)
        self._start = pts
        self._pending_discontinuity = False
        return decision

    def place(self, packet: MediaPacket, discontinuity: bool = False) -> Decision:
        """Decide what to do with the next packet (in arrival order)."""
        if discontinuity and self._start is not None:
            self._pending_discontinuity = True
        cutting_track = "video" if self._has_video else "audio"
        if packet.track != cutting_track:
            return _WRITE if self._start is not None else _DROP

        decision = _WRITE
        if self._has_video:
            if packet.keyframe:
                if self._start is None or self._due(packet.pts):
                    decision = self._cut(packet.pts)
            elif self._start is None:
                return _DROP
            elif (
                self.target_duration_s is not None
                and packet.pts > self._max_video_pts  # a reference frame, not a B-frame
                and packet.pts - self._start > self._longest_allowed() - packet.duration
            ):
                decision = self._cut(packet.pts, forced=True)
            self._max_video_pts = max(self._max_video_pts, packet.pts)
        elif self._start is None or self._due(packet.pts) or self._pending_discontinuity:
            decision = self._cut(packet.pts)
        self._end = max(self._end, packet.pts + packet.duration)
        return decision

    def _due(self, pts: int) -> bool:
        assert self._start is not None
        # Audio timestamps are rebuilt from the sample count, so only video needs the slack.
        slack = CUT_SLACK_TICKS if self._has_video else 0
        return self._pending_discontinuity or pts - self._start >= self._target - slack

    def finish(self) -> int | None:
        """The duration of the open segment when the stream ends, None if none is open."""
        if self._start is None:
            return None
        duration = max(1, self._end - self._start)
        if self.target_duration_s is None:
            wanted = max(self._target, duration)
            self.target_duration_s = max(1, math.floor(wanted / TICKS_PER_SECOND + 0.5))
        self._start = None
        return duration
