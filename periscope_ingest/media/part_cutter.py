"""Where LL-HLS partial segments end, and the PART-TARGET a broadcast declares. Pure.

The draft (draft-pantos-hls-rfc8216bis 4.4.4.9) wants every part at most PART-TARGET long and,
except an INDEPENDENT part and the last part of a segment, at least 85 % of it. Parts can only
end before a reference frame: with B-frames every few frames (a 100 ms rhythm at 30 fps with two
B-frames), so a 0.25 s target would give 0.2 s parts, 80 %. The target the playlist declares is
therefore the setting snapped up to the stream's rhythm (``declared_part_target_ms``), fixed once
per broadcast, before the first part is cut, like EXT-X-TARGETDURATION it never changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from periscope_ingest.media.packets import TICKS_PER_MS, MediaPacket

# The draft: a part that is neither INDEPENDENT nor its segment's last lasts at least this share
# of PART-TARGET.
MIN_PART_SHARE = 0.85
# The longest step between reference frames taken as the stream's rhythm (four frames at 15 fps,
# a slow camera's one frame): a longer one is a gap in the media, and would snap the target up
# for the whole broadcast.
LONGEST_RHYTHM_TICKS = 300 * TICKS_PER_MS
_NEVER = 1 << 62


def position_ms(ticks: int) -> int:
    """A timeline position in whole ms, rounded half up (the same rule for every boundary)."""
    return (ticks * 2 + TICKS_PER_MS) // (2 * TICKS_PER_MS)


def shortest_allowed_ms(part_target_ms: int) -> int:
    """The shortest part the 85 % rule allows (INDEPENDENT and last parts excepted)."""
    return math.ceil(MIN_PART_SHARE * part_target_ms)


def declared_part_target_ms(setting_ms: int, step_ticks: int, longest_ms: int) -> int:
    """The PART-TARGET to declare for parts cut on a rhythm of ``step_ticks`` (the distance
    between reference frames): the setting when whole steps fill at least 85 % of it, else the
    length of one step more, at most ``longest_ms`` (no part may outlast a segment).

    Timestamps arrive in whole ms, so a measured step is up to 1 ms off the true one (29.97 fps
    and 30 fps look alike from a few frames) and a part of n steps up to 1 ms off n true steps:
    a part of n steps is taken to last from floor(n x step) - n - 1 to ceil(n x step) + n + 1 ms.
    The declared target holds the longest, so that an n-step part never has to drop a step
    (which would leave it far below 85 %)."""
    step = step_ticks / TICKS_PER_MS
    if step <= 0:
        return setting_ms

    def longest(steps: int) -> int:
        return math.ceil(steps * step) + steps + 1

    fitting = 0
    while longest(fitting + 1) <= setting_ms:
        fitting += 1
    shortest = math.floor(fitting * step) - fitting - 1
    if fitting and shortest >= MIN_PART_SHARE * setting_ms:
        return setting_ms
    return max(setting_ms, min(longest(fitting + 1), longest_ms))


@dataclass(frozen=True, slots=True)
class PartCut:
    """A partial segment that ends here: its duration and whether it began with a keyframe."""

    duration_ms: int
    independent: bool


class PartCutter:
    """Where LL-HLS partial segments end, between the segment cuts the Segmenter makes.

    Parts and segments are measured from the same integer millisecond positions, so the parts
    of a segment add up exactly to its EXTINF. A part ends:
    - at every segment cut (the new segment's first frame starts a new part);
    - before the first frame of the cutting track (video, or audio when there is none) that
      would make the part longer than the part target. With B-frames only a reference frame
      (a PTS beyond every PTS so far) may start a part, so that the frames shown before it stay
      in the earlier part; the part then ends where its latest frame's presentation ends;
    - before a keyframe inside a segment (a GOP shorter than the segment), so that it starts an
      INDEPENDENT part, when the part so far keeps the 85 % rule; else the keyframe stays inside.
    Nothing here waits for a timer: the part is complete the moment the frame after it arrives.

    The part target (``part_target_ms``, what the playlist declares) is fixed when the first
    part is cut, from the longest reference step seen by then (``declared_part_target_ms``).
    It holds every part of a stream whose rhythm stays as it began. A part that whole steps
    would leave short of 85 % (more B-frames than at the start: x264's adaptive B-frames, or a
    GOP's odd last steps) ends where the next reference frame starts instead, listing the
    B-frames shown before that frame, which come after it; that absorbs such changes. What
    cannot be guaranteed: after a gap in the media, or a rhythm much slower than at the start
    (a reconnect with other encoder settings), a part may still be short of 85 %.

    A part never lasts longer than the target (PART-TARGET is a MUST): after a gap in the media
    a boundary is placed at most one target after the part's start, and the positions that
    follow carry the difference until a shorter part absorbs it.

    Nor may a segment's parts add up to more than its ``limit_ms`` (the longest EXTINF that
    EXT-X-TARGETDURATION allows, another MUST; the playlist refuses such a segment): carried
    over a segment cut, a gap's difference would otherwise be listed, on top of its own media,
    in a segment the segmenter ended at its cap. Its parts stop at the limit, and what they
    could not list is carried on to the next segments, up to the limit of each.
    """

    def __init__(
        self, part_target_s: float, has_video: bool, segment_target_s: float | None = None
    ) -> None:
        self.setting_ms = max(1, round(part_target_s * 1000))
        # The declared target may be snapped up to the shortest EXT-X-TARGETDURATION the
        # segmenter can fix for this segment target (it rounds half up): never past it.
        longest_ms = _NEVER
        if segment_target_s is not None:
            longest_ms = 1000 * max(1, math.floor(segment_target_s + 0.5))
        self._longest_ms = max(self.setting_ms, longest_ms)
        self.part_target_ms: int | None = None  # PART-TARGET, once fixed
        self._largest_step = 0  # ticks: the longest reference step seen before it was fixed
        self._has_video = has_video
        self._segment_start: int | None = None  # ms position of the open segment
        self._part_start = 0  # ms position of the open part
        self._limit = 0  # ms position the open segment's parts may not pass
        self._audio_cut = False  # the open segment was cut by an audio frame
        self._independent = False  # the open part began with a keyframe
        self._max_pts: int | None = None  # ticks: latest PTS of the cutting track in the segment
        self._max_end: int | None = None  # ticks: latest PTS + duration in the open part
        self._next_start: int | None = None  # where the next segment starts (after a close)
        # ticks: PTS of the first audio frame that arrived after the latest video frame
        self._audio_alone_since: int | None = None

    @property
    def open(self) -> bool:
        return self._segment_start is not None

    @property
    def target_ms(self) -> int:
        """The part target in effect: the declared one, or the setting until it is fixed."""
        return self.part_target_ms or self.setting_ms

    def fix_part_target(self) -> int:
        """Fix PART-TARGET (once) from the rhythm seen so far, and return it."""
        if self.part_target_ms is None:
            self.part_target_ms = declared_part_target_ms(
                self.setting_ms, self._largest_step, self._longest_ms
            )
        return self.part_target_ms

    def open_segment(
        self, packet: MediaPacket, discontinuity: bool = False, limit_ms: int = _NEVER
    ) -> None:
        """A segment starts with ``packet`` (the Segmenter decided CUT); its parts may add up
        to ``limit_ms`` at most (Segmenter.listing_limit_ms)."""
        start = self._next_start
        if start is None or discontinuity:
            start = position_ms(packet.pts)
        self._next_start = None
        self._segment_start = self._part_start = start
        self._limit = start + max(2, limit_ms)
        # Independent: a keyframe, or audio in a stream without video (not audio that cut a
        # segment because the video stopped).
        self._independent = packet.keyframe if packet.track == "video" else not self._has_video
        # A segment the audio cut (the video stopped, or lags it by more than a segment): its
        # parts are ended by the audio, whatever video frames come.
        self._audio_cut = self._has_video and packet.track != "video"
        self._max_pts = None
        self._max_end = None
        self._track(packet)

    def place(self, packet: MediaPacket) -> PartCut | None:
        """A packet inside the open segment: the part it closes, if it starts a new one."""
        if self._segment_start is None:
            return None
        cutting_track = "video" if self._has_video else "audio"
        if packet.track != cutting_track:
            return self._audio_while_video_stopped(packet)
        reference = self._max_pts is None or packet.pts > self._max_pts
        if not reference or self._max_end is None:
            self._track(packet)
            return None
        if self.part_target_ms is None and self._max_pts is not None:
            step = packet.pts - self._max_pts
            if step <= LONGEST_RHYTHM_TICKS:
                self._largest_step = max(self._largest_step, step)
        keyframe = packet.keyframe and packet.track == "video"
        span = position_ms(packet.pts + packet.duration) - self._part_start
        cut = None
        if span > self.target_ms or keyframe:
            target = self.fix_part_target()  # may be longer than the setting checked first
            too_long = span > target
            boundary = self._boundary(packet, target)
            # A keyframe inside a segment (a GOP shorter than the segment) starts a part of its
            # own, flagged INDEPENDENT: a joining player (hls.js loads from the last independent
            # part before its start position) then loads less before it can play. Not when the
            # part before it would break the 85 % rule: the keyframe then stays inside.
            if not too_long and boundary - self._part_start < shortest_allowed_ms(target):
                boundary = self._part_start
            if boundary > self._part_start:
                cut = PartCut(boundary - self._part_start, self._independent)
                self._part_start = boundary
                self._independent = packet.keyframe or packet.track == "audio"
                self._max_end = None
        self._track(packet)
        return cut

    def _boundary(self, packet: MediaPacket, target: int) -> int:
        """Where the open part ends, before ``packet``: where its frames' presentation ends, or
        when that is short of 85 % of the target, where ``packet`` starts (the part then also
        lists a gap before it, or the B-frames shown before it that come after it)."""
        assert self._max_end is not None
        start = position_ms(packet.pts)
        boundary = min(position_ms(self._max_end), start)
        if boundary - self._part_start < shortest_allowed_ms(target):
            boundary = start
        return min(boundary, self._part_start + target, self._limit - 1)

    def _audio_while_video_stopped(self, packet: MediaPacket) -> PartCut | None:
        # The video ends parts. Audio ends one in a segment the audio cut, or when no video
        # frame did because the video stopped: none arrived while more than a part target of
        # audio did, and none in the part or none for a part target past its latest one.
        # (Audio that leads a running video by more than a part must not end parts: their
        # positions would run ahead of the video's, and the segment the video's keyframe
        # closes would be listed too long.)
        if self._audio_alone_since is None:
            self._audio_alone_since = packet.pts
        audio_end = packet.pts + packet.duration
        if position_ms(audio_end) - self._part_start <= self.target_ms:
            return None
        target_ticks = self.target_ms * TICKS_PER_MS
        video_end = self._max_end
        if self._audio_cut:
            end = packet.pts
        else:
            if audio_end - self._audio_alone_since <= target_ticks:
                return None
            if video_end is not None and packet.pts - video_end <= target_ticks:
                return None
            end = packet.pts if video_end is None else min(video_end, packet.pts)
        target = self.fix_part_target()
        boundary = min(position_ms(end), self._part_start + target, self._limit - 1)
        if boundary <= self._part_start:
            return None
        cut = PartCut(boundary - self._part_start, self._independent)
        self._part_start = boundary
        self._independent = False
        self._max_end = None
        return cut

    def close_segment(self, end_pts: int) -> tuple[PartCut, int]:
        """The open segment ends at ``end_pts`` (ticks): its last part and its duration in ms."""
        assert self._segment_start is not None
        target = self.fix_part_target()
        boundary = min(position_ms(end_pts), self._part_start + target, self._limit)
        boundary = max(boundary, self._part_start + 1)
        last = PartCut(boundary - self._part_start, self._independent)
        duration = boundary - self._segment_start
        self._next_start = boundary
        self._segment_start = None
        return last, duration

    def _track(self, packet: MediaPacket) -> None:
        cutting_track = "video" if self._has_video else "audio"
        if packet.track != cutting_track:
            return
        self._audio_alone_since = None
        end = packet.pts + max(packet.duration, 0)
        self._max_end = end if self._max_end is None else max(self._max_end, end)
        self._max_pts = packet.pts if self._max_pts is None else max(self._max_pts, packet.pts)
