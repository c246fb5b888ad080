"""Where to cut a stream into HLS segments. Pure: packets in, decisions out.

Rules (RFC 8216 and Apple's authoring guidelines, the way nginx-rtmp's hls module cuts):
- With video, a segment starts with a keyframe: cut at the first keyframe whose PTS is at or after
  the target duration. Decisions use PTS, not DTS: GStreamer's flvmux clamps the first DTS so a 2 s
  GOP can show a 1.951 s DTS distance while its PTS distance is 2.000 s.
- EXT-X-TARGETDURATION may never change, yet the encoder's GOP length is only known once a GOP has
  been seen. It is fixed when the first segment closes: the larger of the target and the first
  segment's duration, rounded.
- Every segment has a hard cap: the first one ``max_duration_s`` (nginx-rtmp's hls_max_fraglen,
  ten target durations by default), every later one the longest that TARGETDURATION allows (a
  MUST). A segment waits for a keyframe up to its cap; a GOP that would run past it is cut before
  a reference frame anyway ("forced"), and when the video has stopped while the audio goes on (a
  camera unplugged), before an audio frame. A forced cut in a continuous timeline is not a
  discontinuity: a player going on from the segment before decodes the next one with the
  reference frames it already has (nothing claims that segment is independent: LL-HLS parts say
  INDEPENDENT only on a keyframe), while EXT-X-DISCONTINUITY would make it reset its decoder and
  drop the video up to the next keyframe. nginx-rtmp marks its forced splits discontinuous
  because it forces them chiefly on timestamp jumps; ours come from media/timeline, which flags
  them, so the discontinuity is marked exactly where the timeline breaks (MediaMTX, for its part,
  never cuts without a keyframe and lets TARGETDURATION change, which the RFC forbids).
- Audio-only streams are cut on any audio frame at the target duration.
- Everything before the first keyframe is dropped: no player can decode it.
- A segment never spans a hole in its media longer than the target duration, nor lasts longer
  than its cap: when the frame that cuts comes after such a hole (an encoder whose clock jumped
  ahead by less than the timeline calls a jump, a publisher that paused), the closed segment ends
  where its media ends, and the next one starts after a discontinuity. Its EXTINF is then what it
  holds, and no single wrong timestamp can make a segment too long for the playlist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from periscope_ingest.media.packets import TICKS_PER_MS, TICKS_PER_SECOND, MediaPacket

# Frame timestamps arrive in whole milliseconds: a 2 s GOP at 30 fps can come out as 1999 ms.
# Without slack such a keyframe would be skipped and the segment doubled.
CUT_SLACK_TICKS = 45 * 90  # 45 ms
# The first segment's cap when none is given: nginx-rtmp's default hls_max_fraglen.
DEFAULT_CAP_TARGETS = 10
# Audio that runs on this far past the last video frame means the video stopped: the segment
# then lasts as long as its audio. "Past" counts in arrival order too: an encoder whose audio
# timestamps lead its video by more than this (an A/V sync offset, or a clock that stepped back
# on the video alone) still sends a video frame between every few audio frames, and its video
# has not stopped.
VIDEO_STOPPED_TICKS = TICKS_PER_SECOND // 2


def longest_listed_ms(target_duration_s: int) -> int:
    """The longest EXTINF, in whole ms, that still rounds (half up) to EXT-X-TARGETDURATION."""
    return target_duration_s * 1000 + 499


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
_NEVER = 1 << 62


class Segmenter:
    def __init__(
        self, target_duration_s: float, has_video: bool, max_duration_s: float | None = None
    ) -> None:
        self._target = round(target_duration_s * TICKS_PER_SECOND)
        first_cap_s = max_duration_s or DEFAULT_CAP_TARGETS * target_duration_s
        # The longest the open segment may be: the first cap until TARGETDURATION is fixed.
        self._cap = max(self._target, round(first_cap_s * TICKS_PER_SECOND))
        self._has_video = has_video
        self._start: int | None = None  # PTS of the open segment's first frame
        # End (PTS + duration) of the open segment's media: of the latest frame of the cutting
        # track, and with video, of the audio too while it runs on with (or without) the video.
        self._end = 0
        self._video_end = 0  # with video: the end of the latest video frame alone
        self._max_video_pts = 0
        # PTS distance between the last two video reference frames: with B-frames several frames
        # apart, so the next reference frame comes that much later, and the frames shown in
        # between arrive after it.
        self._step = 0
        # With video: the audio's latest end, where its current unbroken run began, and the PTS
        # past which an audio frame would make the open segment longer than its cap.
        self._audio_end = -_NEVER
        self._audio_since = _NEVER
        self._audio_deadline = _NEVER
        # PTS of the first audio frame that arrived after the latest video frame (_NEVER while a
        # video frame came last): how long the audio has gone on alone, in arrival order.
        self._audio_alone_since = _NEVER
        self._pending_discontinuity = False
        self.target_duration_s: int | None = None  # EXT-X-TARGETDURATION once fixed

    @property
    def started(self) -> bool:
        return self._start is not None

    @property
    def listing_limit_ms(self) -> int:
        """The longest the open segment may be listed, in ms: what EXT-X-TARGETDURATION allows
        once it is fixed; before that, the first segment's cap (see ``cover_first``)."""
        if self.target_duration_s is not None:
            return longest_listed_ms(self.target_duration_s)
        return self._cap // TICKS_PER_MS

    def continue_with(self, target_duration_s: int) -> None:
        """A broadcast continued from another node keeps its EXT-X-TARGETDURATION (it never
        changes): it is fixed from the first segment here on."""
        self.target_duration_s = target_duration_s
        self._cap = self._longest_allowed()

    def cover_first(self, listed_ms: int) -> None:
        """LL-HLS lists a segment as long as its parts add up to, which after a gap in its media
        can be longer than the media measured here: once the first segment is closed, its
        target duration is made to cover what is listed (at most its cap, as its parts are)."""
        assert self.target_duration_s is not None
        listed_s = max(1, math.floor(listed_ms / 1000 + 0.5))
        if listed_s > self.target_duration_s:
            self.target_duration_s = listed_s
            self._cap = self._longest_allowed()

    def _longest_allowed(self) -> int:
        """Longest segment whose duration still rounds to at most the target duration, also
        once it is listed in whole milliseconds."""
        assert self.target_duration_s is not None
        return longest_listed_ms(self.target_duration_s) * TICKS_PER_MS

    def _fix_target(self, closed: int) -> None:
        wanted = max(self._target, closed)
        self.target_duration_s = max(1, math.floor(wanted / TICKS_PER_SECOND + 0.5))
        self._cap = self._longest_allowed()

    def _cut(self, pts: int, forced: bool = False) -> Decision:
        closed = None
        if self._start is not None:
            closed = pts - self._start
            fixed = self.target_duration_s is not None
            if closed > (self._cap if fixed else self._target):
                # A hole before this frame would make the segment too long: it ends with its
                # media, and the timeline breaks here. (B-frames shown before this frame arrive
                # after it: up to one reference step is not a hole.)
                if pts - self._end > CUT_SLACK_TICKS + self._step:
                    closed = max(1, self._end - self._start)
                    self._pending_discontinuity = True
                if fixed:
                    # The playlist refuses a segment longer than its target duration (a MUST):
                    # should frames overlapping oddly still make one, it is listed a few ms
                    # short rather than the broadcast failing.
                    closed = min(closed, self._cap)
            if not fixed:
                # The first segment fixes EXT-X-TARGETDURATION, which the cap bounds. Audio that
                # ran on past the cap before the video was known to have stopped (_audio waits
                # VIDEO_STOPPED_TICKS for it) is listed that much short, as in a fixed target,
                # rather than raising the target above hls.max_segment_duration.
                closed = min(closed, self._cap)
                self._fix_target(closed)
        decision = Decision(Action.CUT, closed, self._pending_discontinuity, forced)
        self._start = pts
        self._end = max(self._end, pts)  # the new segment's media starts here (at an audio cut)
        self._audio_deadline = pts + self._cap
        self._pending_discontinuity = False
        return decision

    def place(self, packet: MediaPacket, discontinuity: bool = False) -> Decision:
        """Decide what to do with the next packet (in arrival order)."""
        if discontinuity and self._start is not None:
            self._pending_discontinuity = True
        if not self._has_video:
            decision = _WRITE
            if self._start is None or self._due(packet.pts) or self._pending_discontinuity:
                decision = self._cut(packet.pts)
            self._end = max(self._end, packet.pts + packet.duration)
            return decision
        if packet.track != "video":
            return _DROP if self._start is None else self._audio(packet)

        self._audio_alone_since = _NEVER
        decision = _WRITE
        if packet.keyframe:
            if self._start is None or self._due(packet.pts):
                decision = self._cut(packet.pts)
        elif self._start is None:
            return _DROP
        elif packet.pts > self._max_video_pts:  # a reference frame, not a B-frame
            step = packet.pts - self._max_video_pts
            if (
                packet.pts - self._end > self._target  # after a hole longer than a segment
                # or the next reference frame would come after the cap: cut now
                or packet.pts - self._start + max(self._step, packet.duration) > self._cap
            ):
                decision = self._cut(packet.pts, forced=True)
            # Learnt after the decision: the step to a frame that follows a hole is the hole,
            # and taken as the B-frame distance it would hide that hole from _cut (which then
            # listed the hole as media, past the segment's cap).
            if step <= self._target and decision is _WRITE:
                self._step = step
        self._max_video_pts = max(self._max_video_pts, packet.pts)
        self._video_end = max(self._video_end, packet.pts + packet.duration)
        self._end = max(self._end, self._video_end)
        return decision

    def _audio(self, packet: MediaPacket) -> Decision:
        """An audio frame of a stream with video, in an open segment."""
        pts = packet.pts
        end = pts + packet.duration
        if self._audio_alone_since == _NEVER:
            self._audio_alone_since = pts
        decision = _WRITE
        if pts - self._audio_end > CUT_SLACK_TICKS:
            self._audio_since = pts  # the audio broke off (a hole, a jump): a new run begins
            if pts - self._end > self._target:
                # A hole in all of the media, longer than a segment: cut here, as with video.
                decision = self._cut(pts, forced=True)
        elif (
            self._audio_since <= self._end + CUT_SLACK_TICKS
            or pts - self._audio_since > VIDEO_STOPPED_TICKS
        ):
            # The audio runs on with the video, or on its own for longer than audio and video
            # are ever apart (the video stopped): the media lasts as long as it does. (Not the
            # first audio after a hole, which the video may be about to follow.)
            self._end = max(self._end, end)
        if (
            decision is _WRITE
            and end > self._audio_deadline
            and (
                end - self._audio_alone_since > VIDEO_STOPPED_TICKS
                or end - self._video_end > self._cap
            )
        ):
            # No video frame cut the segment before its cap, and the video stopped (no frame
            # arrived while this much audio did) or its clock lags the audio by more than a
            # whole segment. It is cut here rather than growing without end, and the audio in
            # it is its media, whether the video follows or not. Audio that merely leads a
            # running video (an A/V offset) waits for the video's keyframe: cutting on it would
            # start every segment without a keyframe.
            self._end = max(self._end, self._audio_end)
            decision = self._cut(pts, forced=True)
        self._audio_end = end
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
        end = self._end
        if self._has_video and self._audio_end > end:
            # Audio the stream ended with, after a hole or past the last video frame: while
            # the stream goes on it waits to see whether the video follows (module docstring);
            # none will now, and it is in the segment.
            end = self._audio_end
        if self._has_video and end - self._video_end <= CUT_SLACK_TICKS:
            # The audio counts when it ran on after the last video frame, not for the few ms
            # an encoder's last audio frame overhangs it. (Not VIDEO_STOPPED_TICKS: no video is
            # coming any more, and a camera that stopped 0.48 s before the end left 0.48 s of
            # audio out of the listed duration.)
            end = self._video_end
        duration = max(1, end - self._start)
        if self.target_duration_s is None:
            self._fix_target(duration)
        else:
            duration = min(duration, self._cap)  # as in _cut
        self._start = None
        return duration
