"""Test-only ways into media playlists: numbering that continues, parts read back from text."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from periscope_ingest.media.playlist import LivePlaylist

P = TypeVar("P", bound=LivePlaylist)

_PART = re.compile(r'#EXT-X-PART:DURATION=(\d+)\.(\d{3}),URI="([^"]+)"')


def starting_at(
    cls: type[P],
    target_duration_s: int,
    window: int | None,
    media_sequence: int,
    discontinuity_sequence: int,
    playlist_type: str | None = None,
    **options: Any,
) -> P:
    """A playlist whose next segment must carry `media_sequence`, as if earlier segments (with
    `discontinuity_sequence` discontinuity tags) had slid out. ``options`` go to `cls`."""
    playlist = cls(target_duration_s, window, playlist_type, **options)
    playlist._media_sequence = media_sequence
    playlist._discontinuity_sequence = discontinuity_sequence
    return playlist


def listed_parts(text: str) -> dict[str, list[tuple[str, int]]]:
    """Each complete segment's URI -> its listed parts (URI, duration in ms), from m3u8 text."""
    found: dict[str, list[tuple[str, int]]] = {}
    pending: list[tuple[str, int]] = []
    for line in text.splitlines():
        part = _PART.match(line)
        if part:
            pending.append((part[3], int(part[1]) * 1000 + int(part[2])))
        elif line and not line.startswith("#"):
            found[line] = pending
            pending = []
    return found
