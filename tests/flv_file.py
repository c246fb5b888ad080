"""Read FLV files tag by tag: an FLV tag body is exactly an RTMP audio/video message payload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def read_tags(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """Yield (tag type, timestamp ms, body) for every tag (8 audio, 9 video, 18 script data)."""
    data = path.read_bytes()
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4
    while pos + 11 <= len(data):
        tag_type = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        yield tag_type, timestamp, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4
