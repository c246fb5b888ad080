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

__all__ = [
    "PLAYLIST_TYPES",
    "PROTOCOL_VERSION",
    "LivePlaylist",
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
    ) -> LivePlaylist:
        """A playlist continuing earlier numbering: the next segment must carry `media_sequence`.

        Used when a publisher reconnects to the same broadcast, so clients reloading the
        playlist see sequence numbers keep increasing instead of starting over (6.2.2).
        """
        if media_sequence < 0 or discontinuity_sequence < 0:
            raise PlaylistError(
                f"sequence numbers must be >= 0, got media {media_sequence}, "
                f"discontinuity {discontinuity_sequence}"
            )
        playlist = cls(target_duration_s, window, playlist_type)
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
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{PROTOCOL_VERSION}",
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
        for segment in self._segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_format_date_time(segment.program_date_time)}")
            lines.append(f"#EXTINF:{_format_seconds(segment.duration_ms)},")
            lines.append(segment.uri)
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"


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
