"""Reads back the media playlists we wrote (recovery after a crash, exports, catalog rebuilds).

Not a general m3u8 parser: it understands the tags ``playlist.py`` renders and ignores the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from periscope_ingest.media.playlist import LivePlaylist, Segment


class PlaylistReadError(ValueError):
    """The text is not a media playlist we can read."""


@dataclass(slots=True)
class ReadPlaylist:
    target_duration_s: int = 0
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    playlist_type: str | None = None
    ended: bool = False
    segments: list[Segment] = field(default_factory=list)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def complete_playlist(text: str) -> str:
    """The text up to the end of its last complete segment entry (or EXT-X-ENDLIST).

    A live recording playlist grows by appends (storage/growing_file.py), so a read can catch
    the newest entry half written, or a power cut can leave it so: its tags without the URI line,
    or a URI without its line end. What comes after the last URI line is dropped, so readers
    see the playlist as it was before that append. Text without any URI line is returned up to
    its last line end (a header alone is still a playlist).
    """
    end = len(text)
    while end > 0:
        newline = text.rfind("\n", 0, end)
        if newline < 0:
            break
        start = text.rfind("\n", 0, newline) + 1
        line = text[start:newline].strip()
        if line and (not line.startswith("#") or line == "#EXT-X-ENDLIST"):
            return text[: newline + 1]
        end = newline
    return text[: text.rfind("\n") + 1]


def read_media_playlist(text: str) -> ReadPlaylist:
    """Reads ``complete_playlist(text)``: an append caught half done is left out."""
    text = complete_playlist(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistReadError("not an m3u8 playlist")
    result = ReadPlaylist()
    duration_ms: int | None = None
    discontinuity = False
    pdt: datetime | None = None
    last_pdt: datetime | None = None
    map_uri: str | None = None  # EXT-X-MAP applies to every segment after it
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        try:
            if tag == "#EXT-X-TARGETDURATION":
                result.target_duration_s = int(value)
            elif tag == "#EXT-X-MEDIA-SEQUENCE":
                result.media_sequence = int(value)
            elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
                result.discontinuity_sequence = int(value)
            elif tag == "#EXT-X-PLAYLIST-TYPE":
                result.playlist_type = value
            elif tag == "#EXT-X-ENDLIST":
                result.ended = True
            elif tag == "#EXT-X-MAP":
                match = re.search(r'URI="([^"]*)"', value)
                if match is None:
                    raise PlaylistReadError(f"EXT-X-MAP without a URI: {line!r}")
                map_uri = match.group(1)
            elif tag == "#EXT-X-DISCONTINUITY":
                discontinuity = True
            elif tag == "#EXT-X-PROGRAM-DATE-TIME":
                pdt = _parse_time(value)
            elif tag == "#EXTINF":
                duration_ms = round(float(value.split(",", 1)[0]) * 1000)
            elif not line.startswith("#"):
                if duration_ms is None:
                    raise PlaylistReadError(f"segment {line} has no EXTINF")
                if pdt is None and last_pdt is not None and result.segments:
                    # PROGRAM-DATE-TIME may be given only after discontinuities: carry it on.
                    previous = result.segments[-1]
                    pdt = previous.program_date_time + timedelta(milliseconds=previous.duration_ms)
                sequence = result.media_sequence + len(result.segments)
                result.segments.append(
                    Segment(
                        sequence=sequence,
                        uri=line,
                        duration_ms=duration_ms,
                        program_date_time=pdt or datetime.fromtimestamp(0, UTC),
                        discontinuity=discontinuity,
                        map_uri=map_uri,
                    )
                )
                last_pdt = pdt
                duration_ms, discontinuity, pdt = None, False, None
        except ValueError as exc:
            if isinstance(exc, PlaylistReadError):
                raise
            raise PlaylistReadError(f"bad line {line!r}: {exc}") from None
    return result


def render_vod(target_duration_s: int, segments: list[Segment] | tuple[Segment, ...]) -> str:
    """A finished recording: the segments as a VOD playlist with ENDLIST."""
    vod = LivePlaylist(target_duration_s, 0, "VOD")
    for segment in segments:
        vod.append(segment)
    vod.end()
    return vod.render()
