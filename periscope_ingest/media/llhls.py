"""Low-Latency HLS (draft-pantos-hls-rfc8216bis) media playlists: parts, hints, delta updates.

`LowLatencyPlaylist` is a `LivePlaylist` of fMP4 segments (EXT-X-MAP) that also lists partial
segments: those of the segment being written, and those of completed segments that end less
than three target durations before the end of the playlist (the draft says parts SHOULD be
removed once older than that). It renders EXT-X-SERVER-CONTROL, EXT-X-PART-INF, EXT-X-PART and
EXT-X-PRELOAD-HINT, and Playlist Delta Updates (`render(skip=True)`).

Choices made once here:

* EXT-X-VERSION is the lowest the playlist needs: 6 for EXT-X-MAP without EXT-X-I-FRAMES-ONLY,
  9 for a delta update (EXT-X-SKIP). The LL-HLS tags themselves need no version: older clients
  ignore them, so the full playlist stays playable by any version-6 client.
* A delta update is the full playlist with the oldest segments (URI lines and every tag applying
  to them only) replaced by one EXT-X-SKIP tag. A segment is skipped only if it ends at least
  CAN-SKIP-UNTIL before the end of the last complete segment. Header tags, the
  EXT-X-DISCONTINUITY-SEQUENCE included, stay exactly as in the full playlist: the client merges
  the skipped segments (with their EXT-X-DISCONTINUITY tags) from its previous copy, so every
  segment keeps its discontinuity sequence number.
* A part's duration may not exceed PART-TARGET (the draft's rule), and a completed segment's
  part durations must add up to its EXTINF exactly: compute both as differences of the same
  rounded millisecond positions on the stream's timeline.
* The tags of the segment being written (EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME, if
  `start_segment` gave them) are rendered before its parts, in the same place they will have
  once the segment is complete, so a completed segment's lines start with its in-progress lines.

The lines themselves are rendered by `LivePlaylist._render` (playlist.py); this module only
adds the LL-HLS pieces through its hooks, so there is one renderer for both kinds of playlist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from periscope_ingest.media.playlist import (
    MAP_PROTOCOL_VERSION,
    LivePlaylist,
    PlaylistError,
    PlaylistStateError,
    Segment,
    check_quoted,
    format_seconds,
    map_line,
    program_date_time_line,
)

__all__ = [
    "DELTA_PROTOCOL_VERSION",
    "LowLatencyPlaylist",
    "LowLatencySettings",
    "Part",
    "PartDurationMismatchError",
    "PartTooLongError",
]

# RFC 8216bis section 8: EXT-X-SKIP needs 9 (EXT-X-MAP's 6 is in playlist.py).
DELTA_PROTOCOL_VERSION = 9

# Draft minimums: HOLD-BACK >= 3 target durations, PART-HOLD-BACK >= 2 part targets (a MUST;
# 3 is a SHOULD and the default here), CAN-SKIP-UNTIL >= 6 target durations; parts older than 3
# target durations from the end should be removed. hls.js (lowLatencyMode) plays PART-HOLD-BACK
# behind the edge plus its start-up time, and never catches up by default: an operator who wants
# it closer may go down to the MUST (hls.part_hold_back), at the risk of stalls.
_MIN_HOLD_BACK_TARGETS = 3
_MIN_PART_HOLD_BACK_PARTS = 2
_DEFAULT_PART_HOLD_BACK_PARTS = 3
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
    """The LL-HLS numbers of one media playlist; None means the draft's minimum (for
    PART-HOLD-BACK, its advised three part targets)."""

    part_target_ms: int
    part_hold_back_ms: int | None = None  # default 3 x part target; at least 2 x
    hold_back_ms: int | None = None  # default 3 x target duration
    can_skip_until_ms: int | None = None  # default 6 x target duration; 0 = no delta updates

    @classmethod
    def of(cls, part_duration_s: float, part_hold_back_s: float) -> LowLatencySettings:
        """From the settings in seconds (hls.part_duration; hls.part_hold_back, 0: default)."""
        hold_back_ms = round(part_hold_back_s * 1000) or None
        return cls(part_target_ms=round(part_duration_s * 1000), part_hold_back_ms=hold_back_ms)

    def with_part_target(self, part_target_ms: int) -> LowLatencySettings:
        """The same settings for the PART-TARGET a stream's frame rhythm made of the setting
        (media/part_cutter.py): PART-HOLD-BACK keeps its multiple of the part target, and
        never goes below the draft's two part targets."""
        if part_target_ms == self.part_target_ms:
            return self
        hold_back = self.part_hold_back_ms
        if hold_back is not None:
            scaled = math.ceil(hold_back * part_target_ms / self.part_target_ms)
            hold_back = max(_MIN_PART_HOLD_BACK_PARTS * part_target_ms, scaled)
        return replace(self, part_target_ms=part_target_ms, part_hold_back_ms=hold_back)


@dataclass(frozen=True, slots=True)
class _OpenSegment:
    program_date_time: datetime | None
    discontinuity: bool


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
        check_quoted(map_uri, "EXT-X-MAP URI")
        target_ms = target_duration_s * 1000
        part_target = low_latency.part_target_ms
        if part_target < 1 or part_target > target_ms:
            raise PlaylistError(
                f"part target must be 1 ms .. the target duration, got {part_target} ms"
            )
        part_hold_back = low_latency.part_hold_back_ms
        if part_hold_back is None:
            part_hold_back = _DEFAULT_PART_HOLD_BACK_PARTS * part_target
        if part_hold_back < _MIN_PART_HOLD_BACK_PARTS * part_target:
            raise PlaylistError(
                f"PART-HOLD-BACK must be >= 2 part targets, got {part_hold_back} ms"
            )
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
        check_quoted(part.uri, "part URI")
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
        check_quoted(uri, "EXT-X-MAP URI")
        self._map_uri = uri

    @property
    def map_uri(self) -> str:
        return self._map_uri

    def set_preload_hint(self, uri: str | None) -> None:
        """EXT-X-PRELOAD-HINT:TYPE=PART for the part being written; None removes it."""
        if uri is not None:
            check_quoted(uri, "preload hint URI")
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
        skipped = self.skippable_segments() if skip else 0
        return self._render(DELTA_PROTOCOL_VERSION if skipped else MAP_PROTOCOL_VERSION, skipped)

    def _add_control_tags(self, lines: list[str]) -> None:
        control = ["CAN-BLOCK-RELOAD=YES"]
        if self._can_skip_until_ms:
            control.append(f"CAN-SKIP-UNTIL={format_seconds(self._can_skip_until_ms)}")
        control.append(f"PART-HOLD-BACK={format_seconds(self._part_hold_back_ms)}")
        control.append(f"HOLD-BACK={format_seconds(self._hold_back_ms)}")
        lines.append("#EXT-X-SERVER-CONTROL:" + ",".join(control))
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={format_seconds(self._part_target_ms)}")

    def _header_map(self, skipped: int) -> str | None:
        # The map of the first segment shown (or of the one being written) goes in the header,
        # so even a playlist listing only parts has one; a later segment with another init
        # segment gets its own EXT-X-MAP.
        if skipped < len(self._segments):
            first_map = self._segments[skipped].map_uri
            if first_map:
                return first_map
        return self._map_uri

    def _segment_text(self, segment: Segment) -> str:
        parts = self._parts.get(segment.sequence)
        if not parts:
            return super()._segment_text(segment)
        # Parts go between the segment's tags and its EXTINF: the lines it had while in progress.
        return "\n".join(
            (
                program_date_time_line(segment.program_date_time),
                *map(_part_line, parts),
                f"#EXTINF:{format_seconds(segment.duration_ms)},",
                segment.uri,
            )
        )

    def _add_segment_in_progress(self, lines: list[str], current_map: str | None) -> None:
        if self._open is not None:
            if self._open.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if self._map_uri != current_map:
                lines.append(map_line(self._map_uri))
            if self._open.program_date_time is not None:
                lines.append(program_date_time_line(self._open.program_date_time))
        lines.extend(_part_line(part) for part in self._pending_parts)
        if self._preload_hint is not None and not self._ended:
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._preload_hint}"')


def _part_line(part: Part) -> str:
    line = f'#EXT-X-PART:DURATION={format_seconds(part.duration_ms)},URI="{part.uri}"'
    return line + ",INDEPENDENT=YES" if part.independent else line
