"""HLS media playlists (RFC 8216) rendered from plain data: the one renderer of this package.

`LivePlaylist` holds the state of one media playlist: the segments currently listed, the media
sequence number and the discontinuity sequence number, kept by the rules of RFC 8216 section
6.2.2 as segments slide out of the window, and renders it. Low-Latency HLS (llhls.py) extends it
through the few hooks of `_render`; the multivariant playlist is in master_playlist.py. Nothing
here touches files, sockets or clocks: the caller appends segments and writes the rendered text
wherever it wants (atomically, see storage/).

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

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

__all__ = [
    "MAP_PROTOCOL_VERSION",
    "PLAYLIST_TYPES",
    "PROTOCOL_VERSION",
    "LivePlaylist",
    "PlaylistError",
    "PlaylistStateError",
    "Segment",
    "SegmentOrderError",
    "SegmentTooLongError",
]

# Floating-point EXTINF values need protocol version 3 (RFC 8216 section 7); EXT-X-MAP without
# EXT-X-I-FRAMES-ONLY (fMP4 segments) needs 6 (RFC 8216bis section 8).
PROTOCOL_VERSION = 3
MAP_PROTOCOL_VERSION = 6

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


# -- line formatting, shared with master_playlist.py and llhls.py --------------------------------


def _rounded_seconds(duration_ms: int) -> int:
    # Half up, not Python's half-to-even round(): 6.5 s must count as 7 against a target of 6,
    # because that is how strict validators (Apple's mediastreamvalidator) round.
    return (duration_ms + 500) // 1000


def format_seconds(duration_ms: int) -> str:
    # Exact from integers: no float ever sits between the measured ms and the text.
    return f"{duration_ms // 1000}.{duration_ms % 1000:03d}"


def format_date_time(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    # Truncated to the millisecond rather than rounded: rounding could carry into the seconds
    # and beyond, and half a millisecond means nothing to a player.
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def check_line(value: str, what: str) -> None:
    # A line break would let a value start a tag of its own; an empty URI line is no URI.
    if not value or "\n" in value or "\r" in value:
        raise PlaylistError(f"{what} must be a non-empty single line, got {value!r}")


def check_quoted(value: str, what: str) -> None:
    check_line(value, what)
    if '"' in value:
        raise PlaylistError(f"{what} may not contain a double quote, got {value!r}")


def map_line(uri: str) -> str:
    return f'#EXT-X-MAP:URI="{uri}"'


def program_date_time_line(moment: datetime) -> str:
    return f"#EXT-X-PROGRAM-DATE-TIME:{format_date_time(moment)}"


def _entry_text(segment: Segment) -> str:
    return (
        f"{program_date_time_line(segment.program_date_time)}\n"
        f"#EXTINF:{format_seconds(segment.duration_ms)},\n"
        f"{segment.uri}"
    )


class LivePlaylist:
    """The state of one live media playlist: a sliding window of segments, per RFC 8216 6.2.2."""

    __slots__ = (
        "_discontinuity_sequence",
        "_duration_ms",
        "_ended",
        "_map_before_last",
        "_map_in_force",
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
        self._ended = False
        # The EXT-X-MAP in force after the last segment appended, and before it (see
        # render_appended; a growing playlist never loses a segment, so they stay right).
        self._map_in_force: str | None = None
        self._map_before_last: str | None = None

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

    def continue_from(self, media_sequence: int, discontinuity_sequence: int) -> None:
        """Number an empty playlist on from where an earlier one left off: a broadcast that
        another node recorded until now (6.2.2: neither number may go backwards)."""
        if self._segments:
            raise PlaylistStateError("only an empty playlist can continue another one")
        self._media_sequence = media_sequence
        self._discontinuity_sequence = discontinuity_sequence

    def append(self, segment: Segment) -> list[Segment]:
        """List `segment` at the end; return the segments that left the window, oldest first.

        The returned segments are no longer listed but clients that loaded an earlier playlist
        may still ask for them: RFC 8216 6.2.2 wants each kept downloadable for its own
        duration plus that of the longest playlist it appeared in.
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
        check_line(segment.uri, "segment URI")
        if segment.map_uri is not None:
            check_quoted(segment.map_uri, "EXT-X-MAP URI")
        if segment.program_date_time.utcoffset() is None:
            # A naive time would be rendered as whatever zone this host happens to be in.
            raise PlaylistError(f"segment {segment.sequence} has a naive program_date_time")

        self._segments.append(segment)
        self._duration_ms += segment.duration_ms
        self._map_before_last = self._map_in_force
        if segment.map_uri is not None:
            self._map_in_force = segment.map_uri
        return self._slide()

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

    # -- rendering: one renderer; llhls.py adds its tags through the hooks below ----------------

    def render(self) -> str:
        """The whole m3u8 text, every line ending in "\\n"."""
        # fMP4 segments carry EXT-X-MAP, which needs version 6 (RFC 8216 section 7).
        mapped = any(segment.map_uri for segment in self._segments)
        return self._render(MAP_PROTOCOL_VERSION if mapped else PROTOCOL_VERSION)

    def _render(self, version: int, skipped: int = 0) -> str:
        """The playlist with its first `skipped` segments replaced by EXT-X-SKIP (LL-HLS)."""
        if self._playlist_type == "VOD" and not self._ended:
            raise PlaylistStateError("a VOD playlist is rendered only once it has ended")
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{self._target_duration_s}",
        ]
        self._add_control_tags(lines)
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}")
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")
        if self._playlist_type is not None:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self._playlist_type}")
        # Every segment starts with a keyframe (the segmenter cuts only there), so each one can
        # be decoded without its predecessor; the tag is allowed in media playlists (4.3.5.1).
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        shown = islice(self._segments, skipped, None) if skipped else self._segments
        current_map = self._header_map(skipped)
        if current_map is not None:
            lines.append(map_line(current_map))
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        for segment in shown:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.map_uri is not None and segment.map_uri != current_map:
                # Applies to every segment after it, until the next EXT-X-MAP (4.3.2.5).
                current_map = segment.map_uri
                lines.append(map_line(current_map))
            lines.append(self._segment_text(segment))
        self._add_segment_in_progress(lines, current_map)
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def _add_control_tags(self, lines: list[str]) -> None:
        """Tags between EXT-X-TARGETDURATION and EXT-X-MEDIA-SEQUENCE: none without LL-HLS."""

    def _header_map(self, skipped: int) -> str | None:
        """An EXT-X-MAP for the header; None: each segment's map goes before it when it changes."""
        return None

    def _segment_text(self, segment: Segment) -> str:
        """A listed segment's lines after its EXT-X-DISCONTINUITY/EXT-X-MAP, joined."""
        cached = self._segment_lines.get(segment.sequence)
        if cached is not None and cached[0] is segment:
            return cached[1]
        text = _entry_text(segment)
        self._segment_lines[segment.sequence] = (segment, text)
        return text

    def render_appended(self) -> str | None:
        """The lines the latest ``append`` added to ``render()``'s text, for a playlist that
        only grows (no window, not ended, no LL-HLS): the text rendered before followed by
        these is what ``render()`` gives now, so a recording can be appended to rather than
        rewritten whole. None when the header changed with it (the first EXT-X-MAP raises
        EXT-X-VERSION to 6): render the whole playlist then. O(1), and nothing is cached."""
        if self._window or self._ended or not self._segments:
            raise PlaylistStateError("only a growing playlist with a segment can be appended to")
        if type(self)._add_segment_in_progress is not LivePlaylist._add_segment_in_progress:
            raise PlaylistStateError("an LL-HLS playlist changes more than its last lines")
        segment = self._segments[-1]
        previous_map = self._map_before_last
        if segment.map_uri is not None and previous_map is None:
            return None  # EXT-X-VERSION 3 -> 6
        lines = []
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if segment.map_uri is not None and segment.map_uri != previous_map:
            lines.append(map_line(segment.map_uri))
        lines.append(_entry_text(segment))
        return "\n".join(lines) + "\n"

    def _add_segment_in_progress(self, lines: list[str], current_map: str | None) -> None:
        """Lines after the last complete segment, before EXT-X-ENDLIST: none without LL-HLS."""
