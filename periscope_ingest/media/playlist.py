"""HLS playlists (RFC 8216) rendered from plain data.

`LivePlaylist` holds the state of one media playlist: the segments currently listed, the media
sequence number and the discontinuity sequence number, kept by the rules of RFC 8216 section
6.2.2 as segments slide out of the window. `render_master` writes the multivariant ("master")
playlist. Nothing here touches files, sockets or clocks: the caller appends segments and writes
the rendered text wherever it wants (atomically, see storage/).

Choices the RFC leaves open, made once here:

* EXT-X-VERSION is 3: EXTINF durations are decimal-floating-point (RFC 8216 section 7), and no
  tag we write needs more.
* EXT-X-DISCONTINUITY-SEQUENCE is written only when it is nonzero. Absent means 0 (4.3.3.3), so
  the output is equivalent and older clients see nothing new until a discontinuity has slid out.
* EXT-X-PROGRAM-DATE-TIME is written on every segment, with millisecond precision and a "Z".
  Each segment carries its own measured wall-clock time; a client extrapolating from EXTINF sums
  would drift from it whenever the encoder clock and the wall clock disagree.
* A discontinuity tag in front of the first listed segment is rendered and counts for that segment
  (a segment's discontinuity sequence number is EXT-X-DISCONTINUITY-SEQUENCE plus the tags
  preceding its URI line), so the number is incremented when that segment is removed. This keeps
  every segment's discontinuity sequence number the same across reloads (6.2.2).
* A VOD playlist must be complete, so rendering one before `end()` raises `PlaylistStateError`
  instead of publishing a playlist that claims it will never change while it still will.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

__all__ = [
    "DELTA_PROTOCOL_VERSION",
    "MAP_PROTOCOL_VERSION",
    "PLAYLIST_TYPES",
    "PROTOCOL_VERSION",
    "LivePlaylist",
    "LowLatencyPlaylist",
    "LowLatencySettings",
    "Part",
    "PartDurationMismatchError",
    "PartTooLongError",
    "PlaylistError",
    "PlaylistStateError",
    "Segment",
    "SegmentOrderError",
    "SegmentTooLongError",
    "Variant",
    "render_master",
    "segment_bitrate",
]

# Floating-point EXTINF values need protocol version 3 (RFC 8216 section 7).
PROTOCOL_VERSION = 3

PLAYLIST_TYPES = frozenset({"EVENT", "VOD"})

# RFC 8216 6.2.2: a live playlist must never be shorter than three target durations.
_MIN_TARGET_DURATIONS_LISTED = 3


class PlaylistError(ValueError):
    """A segment or setting that would make the playlist violate RFC 8216."""


class SegmentOrderError(PlaylistError):
    """The appended segment does not carry the next media sequence number."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"segment sequence {got} appended, expected {expected}")
        self.expected = expected
        self.got = got


class SegmentTooLongError(PlaylistError):
    """The segment's duration, rounded to whole seconds, exceeds EXT-X-TARGETDURATION."""

    def __init__(self, sequence: int, duration_ms: int, target_duration_s: int) -> None:
        super().__init__(
            f"segment {sequence} lasts {duration_ms} ms, which rounds to more than the "
            f"target duration of {target_duration_s} s; the segmenter must cut earlier"
        )
        self.sequence = sequence
        self.duration_ms = duration_ms
        self.target_duration_s = target_duration_s


class PlaylistStateError(PlaylistError):
    """The operation does not fit the playlist's state (appending after end, unfinished VOD)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One media segment as it is listed in a media playlist."""

    sequence: int  # media sequence number of this segment (0-based, increasing by 1)
    uri: str  # relative URI as it goes into the playlist, e.g. "k3x9/000042.ts"
    duration_ms: int  # first keyframe PTS to the next segment's first PTS
    program_date_time: datetime  # wall-clock (aware) of the segment's first sample
    discontinuity: bool = False  # an EXT-X-DISCONTINUITY precedes this segment
    size: int = 0  # bytes, for bandwidth measurement
    # fMP4: the init segment (EXT-X-MAP URI) this segment is decoded with; None for MPEG-TS.
    map_uri: str | None = None


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF entry of a master playlist."""

    uri: str  # e.g. "index.m3u8"
    bandwidth: int  # peak segment bitrate, bits/s (RFC 8216 4.3.4.2: BANDWIDTH is the peak)
    average_bandwidth: int | None = None
    codecs: tuple[str, ...] = ()  # e.g. ("avc1.64001f", "mp4a.40.2")
    resolution: tuple[int, int] | None = None  # (width, height) in pixels
    frame_rate: float | None = None


def _rounded_seconds(duration_ms: int) -> int:
    # Half up, not Python's half-to-even round(): 6.5 s must count as 7 against a target of 6,
    # because that is how strict validators (Apple's mediastreamvalidator) round.
    return (duration_ms + 500) // 1000


def _format_seconds(duration_ms: int) -> str:
    # Exact from integers: no float ever sits between the measured ms and the text.
    return f"{duration_ms // 1000}.{duration_ms % 1000:03d}"


def _format_date_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    # Truncated to the millisecond rather than rounded: rounding could carry into the seconds
    # and beyond, and half a millisecond means nothing to a player.
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def _check_line(value: str, what: str) -> None:
    # A line break would let a value start a tag of its own; an empty URI line is no URI.
    if not value or "\n" in value or "\r" in value:
        raise PlaylistError(f"{what} must be a non-empty single line, got {value!r}")


def segment_bitrate(size_bytes: int, duration_ms: int) -> int:
    """Bits per second of a segment of `size_bytes` lasting `duration_ms`; 0 for no duration.

    Rounded up, because BANDWIDTH is an upper bound a client uses to pick a variant it can
    sustain: under-stating it by a bit is the wrong direction.
    """
    if size_bytes < 0 or duration_ms < 0:
        raise ValueError(f"size and duration must be >= 0, got {size_bytes} B, {duration_ms} ms")
    if duration_ms == 0:
        return 0
    return -(-size_bytes * 8 * 1000 // duration_ms)


class LivePlaylist:
    """The state of one live media playlist: a sliding window of segments, per RFC 8216 6.2.2."""

    __slots__ = (
        "_discontinuity_sequence",
        "_duration_ms",
        "_ended",
        "_longest_duration_ms",
        "_media_sequence",
        "_playlist_type",
        "_segment_lines",
        "_segments",
        "_target_duration_s",
        "_window",
    )

    def __init__(
        self, target_duration_s: int, window: int | None = 6, playlist_type: str | None = None
    ) -> None:
        if target_duration_s < 1:
            raise PlaylistError(f"target duration must be >= 1 s, got {target_duration_s}")
        window = window or 0
        if window < 0:
            raise PlaylistError(f"window must be >= 0 segments (0 = keep all), got {window}")
        if playlist_type is not None and playlist_type not in PLAYLIST_TYPES:
            raise PlaylistError(f"playlist type must be EVENT, VOD or None, got {playlist_type!r}")
        if playlist_type is not None and window:
            # EVENT and VOD playlists may only grow at the end (4.3.3.5): no segment may leave.
            raise PlaylistError(f"a {playlist_type} playlist keeps every segment: window must be 0")
        self._target_duration_s = target_duration_s
        self._window = window
        self._playlist_type = playlist_type
        self._segments: deque[Segment] = deque()
        # Each segment's own lines, formatted once: a recording's EVENT playlist is rendered
        # again after every segment, and formatting thousands of dates each time made that
        # O(n) per segment in Python (15 ms for a 3-hour broadcast).
        self._segment_lines: dict[int, tuple[Segment, str]] = {}
        # While the window is empty this is the sequence number the next segment must carry.
        self._media_sequence = 0
        self._discontinuity_sequence = 0
        self._duration_ms = 0
        self._longest_duration_ms = 0
        self._ended = False

    @classmethod
    def starting_at(
        cls,
        target_duration_s: int,
        window: int | None,
        media_sequence: int,
        discontinuity_sequence: int,
        playlist_type: str | None = None,
        **options: Any,
    ) -> Self:
        """A playlist continuing earlier numbering: the next segment must carry `media_sequence`.

        ``options`` go to the constructor (a LowLatencyPlaylist's ``low_latency``, ``map_uri``).

        Used when a publisher reconnects to the same broadcast, so clients reloading the
        playlist see sequence numbers keep increasing instead of starting over (6.2.2).
        """
        if media_sequence < 0 or discontinuity_sequence < 0:
            raise PlaylistError(
                f"sequence numbers must be >= 0, got media {media_sequence}, "
                f"discontinuity {discontinuity_sequence}"
            )
        playlist = cls(target_duration_s, window, playlist_type, **options)
        playlist._media_sequence = media_sequence
        playlist._discontinuity_sequence = discontinuity_sequence
        return playlist

    @property
    def target_duration_s(self) -> int:
        return self._target_duration_s

    @property
    def window(self) -> int:
        return self._window

    @property
    def playlist_type(self) -> str | None:
        return self._playlist_type

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def segments(self) -> tuple[Segment, ...]:
        """The segments currently listed, oldest first."""
        return tuple(self._segments)

    @property
    def media_sequence(self) -> int:
        """EXT-X-MEDIA-SEQUENCE: the sequence number of the first listed segment."""
        return self._media_sequence

    @property
    def next_sequence(self) -> int:
        """The sequence number the next appended segment must carry."""
        return self._media_sequence + len(self._segments)

    @property
    def discontinuity_sequence(self) -> int:
        """EXT-X-DISCONTINUITY-SEQUENCE: discontinuity tags that have left the window."""
        return self._discontinuity_sequence

    @property
    def duration_ms(self) -> int:
        """Sum of the listed segments' durations."""
        return self._duration_ms

    @property
    def longest_duration_ms(self) -> int:
        """The longest this playlist has ever been, in ms.

        RFC 8216 6.2.2 wants a removed segment to stay available for its own duration plus the
        duration of the longest playlist it appeared in; the longest playlist ever is an upper
        bound of that, so holding for `hold_ms(segment)` is always long enough.
        """
        return self._longest_duration_ms

    def hold_ms(self, segment: Segment) -> int:
        """How long a segment returned by `append` must stay downloadable after its removal."""
        return segment.duration_ms + self._longest_duration_ms

    def append(self, segment: Segment) -> list[Segment]:
        """List `segment` at the end; return the segments that left the window, oldest first.

        The returned segments are no longer listed but clients that loaded an earlier playlist
        may still ask for them: keep them downloadable for `hold_ms(segment)`.
        """
        if self._ended:
            raise PlaylistStateError("the playlist has ended; no segment can be appended")
        if segment.sequence != self.next_sequence:
            raise SegmentOrderError(self.next_sequence, segment.sequence)
        if segment.duration_ms < 0:
            raise PlaylistError(f"segment {segment.sequence} has a negative duration")
        if _rounded_seconds(segment.duration_ms) > self._target_duration_s:
            raise SegmentTooLongError(
                segment.sequence, segment.duration_ms, self._target_duration_s
            )
        _check_line(segment.uri, "segment URI")
        if segment.map_uri is not None:
            _check_quoted(segment.map_uri, "EXT-X-MAP URI")
        if segment.program_date_time.utcoffset() is None:
            # A naive time would be rendered as whatever zone this host happens to be in.
            raise PlaylistError(f"segment {segment.sequence} has a naive program_date_time")

        self._segments.append(segment)
        self._duration_ms += segment.duration_ms
        removed = self._slide()
        self._longest_duration_ms = max(self._longest_duration_ms, self._duration_ms)
        return removed

    def _slide(self) -> list[Segment]:
        removed: list[Segment] = []
        if not self._window:
            return removed
        min_duration_ms = _MIN_TARGET_DURATIONS_LISTED * self._target_duration_s * 1000
        while len(self._segments) > self._window:
            oldest = self._segments[0]
            # 6.2.2: never drop below three target durations, even if that lists more than
            # `window` segments for a while (many short segments after a discontinuity).
            if self._duration_ms - oldest.duration_ms < min_duration_ms:
                break
            self._segments.popleft()
            self._segment_lines.pop(oldest.sequence, None)
            self._duration_ms -= oldest.duration_ms
            self._media_sequence += 1
            if oldest.discontinuity:
                # The tag leaves with its segment; counting it keeps the discontinuity sequence
                # number of every segment still listed unchanged.
                self._discontinuity_sequence += 1
            removed.append(oldest)
        return removed

    def end(self) -> None:
        """The publisher stopped: EXT-X-ENDLIST from now on. Idempotent."""
        self._ended = True

    def render(self) -> str:
        """The whole m3u8 text, every line ending in "\\n"."""
        if self._playlist_type == "VOD" and not self._ended:
            raise PlaylistStateError("a VOD playlist is rendered only once it has ended")
        # fMP4 segments carry EXT-X-MAP, which needs version 6 (RFC 8216 section 7).
        mapped = any(segment.map_uri for segment in self._segments)
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{MAP_PROTOCOL_VERSION if mapped else PROTOCOL_VERSION}",
            f"#EXT-X-TARGETDURATION:{self._target_duration_s}",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
        ]
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        if self._playlist_type is not None:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self._playlist_type}")
        # Every segment starts with a keyframe (the segmenter cuts only there), so each one can
        # be decoded without its predecessor; the tag is allowed in media playlists (4.3.5.1).
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        current_map: str | None = None
        for segment in self._segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.map_uri is not None and segment.map_uri != current_map:
                # Applies to every segment after it, until the next EXT-X-MAP (4.3.2.5).
                current_map = segment.map_uri
                lines.append(_map_line(current_map))
            lines.append(self._lines_of(segment))
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _lines_of(self, segment: Segment) -> str:
        cached = self._segment_lines.get(segment.sequence)
        if cached is not None and cached[0] is segment:
            return cached[1]
        text = (
            f"#EXT-X-PROGRAM-DATE-TIME:{_format_date_time(segment.program_date_time)}\n"
            f"#EXTINF:{_format_seconds(segment.duration_ms)},\n"
            f"{segment.uri}"
        )
        self._segment_lines[segment.sequence] = (segment, text)
        return text


def _stream_inf(variant: Variant) -> str:
    if variant.bandwidth <= 0:
        raise PlaylistError(f"variant {variant.uri!r}: BANDWIDTH must be > 0")
    attributes = [f"BANDWIDTH={variant.bandwidth}"]
    if variant.average_bandwidth is not None:
        if variant.average_bandwidth <= 0:
            raise PlaylistError(f"variant {variant.uri!r}: AVERAGE-BANDWIDTH must be > 0")
        attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
    if variant.codecs:
        for codec in variant.codecs:
            # The list is one quoted string separated by commas: neither may appear inside.
            if not codec or any(c in codec for c in ',"\r\n'):
                raise PlaylistError(f"variant {variant.uri!r}: bad codec string {codec!r}")
        attributes.append(f'CODECS="{",".join(variant.codecs)}"')
    if variant.resolution is not None:
        width, height = variant.resolution
        if width <= 0 or height <= 0:
            raise PlaylistError(f"variant {variant.uri!r}: bad resolution {width}x{height}")
        attributes.append(f"RESOLUTION={width}x{height}")
    if variant.frame_rate is not None:
        if not (math.isfinite(variant.frame_rate) and variant.frame_rate > 0):
            raise PlaylistError(f"variant {variant.uri!r}: bad frame rate {variant.frame_rate}")
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    return "#EXT-X-STREAM-INF:" + ",".join(attributes)


def render_master(variants: list[Variant]) -> str:
    """The multivariant playlist listing `variants` in the given order."""
    if not variants:
        raise PlaylistError("a master playlist needs at least one variant")
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PROTOCOL_VERSION}",
        # Applies to every media playlist listed: all of them are cut at keyframes.
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for variant in variants:
        _check_line(variant.uri, "variant URI")
        lines.append(_stream_inf(variant))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


# --- Low-Latency HLS (draft-pantos-hls-rfc8216bis) ----------------------------------------------
#
# `LowLatencyPlaylist` is a `LivePlaylist` of fMP4 segments (EXT-X-MAP) that also lists partial
# segments: those of the segment being written, and those of completed segments that end less
# than three target durations before the end of the playlist (the draft says parts SHOULD be
# removed once older than that). It renders EXT-X-SERVER-CONTROL, EXT-X-PART-INF, EXT-X-PART and
# EXT-X-PRELOAD-HINT, and Playlist Delta Updates (`render(skip=True)`).
#
# Choices made once here:
#
# * EXT-X-VERSION is the lowest the playlist needs: 6 for EXT-X-MAP without EXT-X-I-FRAMES-ONLY,
#   9 for a delta update (EXT-X-SKIP). The LL-HLS tags themselves need no version: older clients
#   ignore them, so the full playlist stays playable by any version-6 client.
# * A delta update is the full playlist with the oldest segments (URI lines and every tag applying
#   to them only) replaced by one EXT-X-SKIP tag. A segment is skipped only if it ends at least
#   CAN-SKIP-UNTIL before the end of the last complete segment. Header tags, the
#   EXT-X-DISCONTINUITY-SEQUENCE included, stay exactly as in the full playlist: the client merges
#   the skipped segments (with their EXT-X-DISCONTINUITY tags) from its previous copy, so every
#   segment keeps its discontinuity sequence number.
# * A part's duration may not exceed PART-TARGET (the draft's rule), and a completed segment's
#   part durations must add up to its EXTINF exactly: compute both as differences of the same
#   rounded millisecond positions on the stream's timeline.
# * The tags of the segment being written (EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME, if
#   `start_segment` gave them) are rendered before its parts, in the same place they will have
#   once the segment is complete, so a completed segment's lines start with its in-progress lines.

# RFC 8216bis section 8: EXT-X-MAP without EXT-X-I-FRAMES-ONLY needs 6, EXT-X-SKIP needs 9.
MAP_PROTOCOL_VERSION = 6
DELTA_PROTOCOL_VERSION = 9

# Draft minimums: HOLD-BACK >= 3 target durations, PART-HOLD-BACK >= 2 part targets (3 advised,
# and required here), CAN-SKIP-UNTIL >= 6 target durations; parts older than 3 target durations
# from the end should be removed.
_MIN_HOLD_BACK_TARGETS = 3
_MIN_PART_HOLD_BACK_PARTS = 3
_MIN_SKIP_TARGETS = 6
_PART_LISTED_TARGETS = 3


class PartTooLongError(PlaylistError):
    """A partial segment lasts longer than PART-TARGET."""


class PartDurationMismatchError(PlaylistError):
    """A completed segment's parts do not add up to its duration."""


@dataclass(frozen=True, slots=True)
class Part:
    """One partial segment as it is listed in a low-latency media playlist."""

    uri: str  # e.g. "k3x9/000042.3.m4s"
    duration_ms: int
    independent: bool = False  # starts with a keyframe: INDEPENDENT=YES


@dataclass(frozen=True, slots=True)
class LowLatencySettings:
    """The LL-HLS numbers of one media playlist; None means the draft's minimum."""

    part_target_ms: int
    part_hold_back_ms: int | None = None  # default 3 x part target
    hold_back_ms: int | None = None  # default 3 x target duration
    can_skip_until_ms: int | None = None  # default 6 x target duration; 0 = no delta updates


@dataclass(frozen=True, slots=True)
class _OpenSegment:
    program_date_time: datetime | None
    discontinuity: bool


def _check_quoted(value: str, what: str) -> None:
    _check_line(value, what)
    if '"' in value:
        raise PlaylistError(f"{what} may not contain a double quote, got {value!r}")


class LowLatencyPlaylist(LivePlaylist):
    """A live fMP4 media playlist with LL-HLS partial segments and delta updates."""

    __slots__ = (
        "_can_skip_until_ms",
        "_hold_back_ms",
        "_map_uri",
        "_open",
        "_part_hold_back_ms",
        "_part_target_ms",
        "_parts",
        "_pending_parts",
        "_preload_hint",
    )

    def __init__(
        self,
        target_duration_s: int,
        window: int | None = 6,
        playlist_type: str | None = None,
        *,
        low_latency: LowLatencySettings,
        map_uri: str = "init.mp4",
    ) -> None:
        super().__init__(target_duration_s, window, playlist_type)
        _check_quoted(map_uri, "EXT-X-MAP URI")
        target_ms = target_duration_s * 1000
        part_target = low_latency.part_target_ms
        if part_target < 1 or part_target > target_ms:
            raise PlaylistError(
                f"part target must be 1 ms .. the target duration, got {part_target} ms"
            )
        part_hold_back = low_latency.part_hold_back_ms
        if part_hold_back is None:
            part_hold_back = _MIN_PART_HOLD_BACK_PARTS * part_target
        if part_hold_back < _MIN_PART_HOLD_BACK_PARTS * part_target:
            raise PlaylistError(f"PART-HOLD-BACK must be >= 3 part targets, got {part_hold_back}")
        hold_back = low_latency.hold_back_ms
        if hold_back is None:
            hold_back = _MIN_HOLD_BACK_TARGETS * target_ms
        if hold_back < _MIN_HOLD_BACK_TARGETS * target_ms:
            raise PlaylistError(f"HOLD-BACK must be >= 3 target durations, got {hold_back} ms")
        can_skip = low_latency.can_skip_until_ms
        if can_skip is None:
            can_skip = _MIN_SKIP_TARGETS * target_ms
        if can_skip and can_skip < _MIN_SKIP_TARGETS * target_ms:
            raise PlaylistError(
                f"CAN-SKIP-UNTIL must be >= 6 target durations (or 0), got {can_skip} ms"
            )
        self._part_target_ms = part_target
        self._part_hold_back_ms = part_hold_back
        self._hold_back_ms = hold_back
        self._can_skip_until_ms = can_skip
        self._map_uri = map_uri
        self._parts: dict[int, tuple[Part, ...]] = {}  # completed segments' listed parts
        self._pending_parts: list[Part] = []  # parts of the segment being written
        self._open: _OpenSegment | None = None
        self._preload_hint: str | None = None

    # -- state ------------------------------------------------------------------------------

    @property
    def part_target_ms(self) -> int:
        return self._part_target_ms

    @property
    def can_skip_until_ms(self) -> int:
        return self._can_skip_until_ms

    @property
    def pending_parts(self) -> tuple[Part, ...]:
        """Parts of the segment being written (sequence `next_sequence`), oldest first."""
        return tuple(self._pending_parts)

    def parts_of(self, sequence: int) -> tuple[Part, ...]:
        """The parts listed for segment `sequence` (completed or in progress); () if none."""
        if sequence == self.next_sequence:
            return self.pending_parts
        return self._parts.get(sequence, ())

    def has_part(self, sequence: int, part_index: int) -> bool:
        """Whether a blocking request for _HLS_msn=sequence&_HLS_part=part_index can be answered.

        True once that part, or a later part or segment, is in the playlist (draft 6.2.5.2).
        """
        if sequence < self.next_sequence:
            return True
        return sequence == self.next_sequence and part_index < len(self._pending_parts)

    # -- changes ----------------------------------------------------------------------------

    def start_segment(self, program_date_time: datetime, discontinuity: bool = False) -> None:
        """Announce the segment being written, so its tags precede its parts. Optional."""
        if program_date_time.utcoffset() is None:
            raise PlaylistError("the segment being written has a naive program_date_time")
        if self._pending_parts:
            raise PlaylistStateError("start_segment must come before the segment's first part")
        self._open = _OpenSegment(program_date_time, discontinuity)

    def add_part(self, part: Part) -> None:
        """List a completed part of the segment being written."""
        if self._ended:
            raise PlaylistStateError("the playlist has ended; no part can be added")
        _check_quoted(part.uri, "part URI")
        if part.duration_ms <= 0:
            raise PlaylistError(f"part {part.uri!r} has no duration")
        if part.duration_ms > self._part_target_ms:
            raise PartTooLongError(
                f"part {part.uri!r} lasts {part.duration_ms} ms, more than the part target of "
                f"{self._part_target_ms} ms; the part cutter must cut earlier"
            )
        self._pending_parts.append(part)
        self._drop_old_parts()

    def set_map_uri(self, uri: str) -> None:
        """The init segment of the segment being written (and later ones), e.g. after a codec
        change; completed segments keep the map given in their `Segment.map_uri`."""
        _check_quoted(uri, "EXT-X-MAP URI")
        self._map_uri = uri

    @property
    def map_uri(self) -> str:
        return self._map_uri

    def set_preload_hint(self, uri: str | None) -> None:
        """EXT-X-PRELOAD-HINT:TYPE=PART for the part being written; None removes it."""
        if uri is not None:
            _check_quoted(uri, "preload hint URI")
        self._preload_hint = uri

    def append(self, segment: Segment) -> list[Segment]:
        """Complete the segment being written; its pending parts become its parts."""
        parts = tuple(self._pending_parts)
        if parts and sum(p.duration_ms for p in parts) != segment.duration_ms:
            raise PartDurationMismatchError(
                f"segment {segment.sequence} lasts {segment.duration_ms} ms but its parts add "
                f"up to {sum(p.duration_ms for p in parts)} ms"
            )
        if self._open is not None and (
            self._open.discontinuity != segment.discontinuity
            or self._open.program_date_time != segment.program_date_time
        ):
            raise PlaylistError(
                f"segment {segment.sequence} does not match the tags given to start_segment"
            )
        removed = super().append(segment)
        self._pending_parts = []
        self._open = None
        if parts:
            self._parts[segment.sequence] = parts
        for old in removed:
            self._parts.pop(old.sequence, None)
        self._drop_old_parts()
        return removed

    def end(self) -> None:
        """EXT-X-ENDLIST from now on; the preload hint goes (no part will follow)."""
        super().end()
        self._preload_hint = None

    def _drop_old_parts(self) -> None:
        # Completed segments keep their parts while they end less than 3 target durations
        # before the end of the playlist.
        limit_ms = _PART_LISTED_TARGETS * self._target_duration_s * 1000
        after_ms = sum(p.duration_ms for p in self._pending_parts)
        for segment in reversed(self._segments):
            if after_ms >= limit_ms:
                self._parts.pop(segment.sequence, None)
            after_ms += segment.duration_ms

    # -- rendering --------------------------------------------------------------------------

    def skippable_segments(self) -> int:
        """How many segments a delta update replaces with EXT-X-SKIP now."""
        if not self._can_skip_until_ms:
            return 0
        count = 0
        after_ms = self._duration_ms  # from the start of segment `count` to the end
        for segment in self._segments:
            after_ms -= segment.duration_ms
            if after_ms < self._can_skip_until_ms:
                break
            count += 1
        return count

    def render(self, skip: bool = False) -> str:
        """The m3u8 text; `skip=True` renders a Playlist Delta Update when one is possible."""
        if self._playlist_type == "VOD" and not self._ended:
            raise PlaylistStateError("a VOD playlist is rendered only once it has ended")
        skipped = self.skippable_segments() if skip else 0
        version = DELTA_PROTOCOL_VERSION if skipped else MAP_PROTOCOL_VERSION
        control = ["CAN-BLOCK-RELOAD=YES"]
        if self._can_skip_until_ms:
            control.append(f"CAN-SKIP-UNTIL={_format_seconds(self._can_skip_until_ms)}")
        control.append(f"PART-HOLD-BACK={_format_seconds(self._part_hold_back_ms)}")
        control.append(f"HOLD-BACK={_format_seconds(self._hold_back_ms)}")
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{self._target_duration_s}",
            "#EXT-X-SERVER-CONTROL:" + ",".join(control),
            f"#EXT-X-PART-INF:PART-TARGET={_format_seconds(self._part_target_ms)}",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
        ]
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        if self._playlist_type is not None:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self._playlist_type}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        # The map of the first segment shown (or of the one being written) goes in the header;
        # a later segment with another init segment gets its own EXT-X-MAP.
        shown = list(self._segments)[skipped:]
        current_map = next((s.map_uri for s in shown[:1] if s.map_uri), self._map_uri)
        lines.append(_map_line(current_map))
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        for segment in shown:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.map_uri is not None and segment.map_uri != current_map:
                current_map = segment.map_uri
                lines.append(_map_line(current_map))
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_format_date_time(segment.program_date_time)}")
            lines.extend(_part_line(part) for part in self._parts.get(segment.sequence, ()))
            lines.append(f"#EXTINF:{_format_seconds(segment.duration_ms)},")
            lines.append(segment.uri)
        if self._open is not None:
            if self._open.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if self._map_uri != current_map:
                current_map = self._map_uri
                lines.append(_map_line(current_map))
            if self._open.program_date_time is not None:
                moment = _format_date_time(self._open.program_date_time)
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{moment}")
        lines.extend(_part_line(part) for part in self._pending_parts)
        if self._preload_hint is not None and not self._ended:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._preload_hint}"')
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


def _map_line(uri: str) -> str:
    return f'#EXT-X-MAP:URI="{uri}"'


def _part_line(part: Part) -> str:
    line = f'#EXT-X-PART:DURATION={_format_seconds(part.duration_ms)},URI="{part.uri}"'
    return line + ",INDEPENDENT=YES" if part.independent else line
