"""The single owner of names and paths on disk.

Nobody else builds a path under the data directory. Every name that comes from outside (a stream
key, a URL) is checked against a strict pattern here before it becomes a path, so no request or
publisher can reach outside the data directory.

    <data_dir>/channels/<channel>/index.m3u8    live playlist of the current or last broadcast
    <data_dir>/channels/<channel>/master.m3u8   its master playlist
    <data_dir>/channels/<channel>/<broadcast>/000042.ts   segments, never reused
    <data_dir>/channels/<channel>/<broadcast>/recording.m3u8   EVENT while live, then VOD
    <data_dir>/channels/<channel>/<broadcast>/broadcast.json   the broadcast's record (the truth)
    <data_dir>/channels/<channel>/<broadcast>/recording.mp4    the MP4 export, once made
    <data_dir>/catalog.sqlite3                        index over the records, rebuildable
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

# Channel names come from stream keys: keep them to what is safe in a path and a URL.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BROADCAST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{12}")
SEGMENT_NAME_PATTERN = re.compile(r"(\d{6,9})\.ts")

LIVE_PLAYLIST = "index.m3u8"
MASTER_PLAYLIST = "master.m3u8"
RECORDING_PLAYLIST = "recording.m3u8"
RECORD_FILE = "broadcast.json"
RECORDING_MP4 = "recording.mp4"


class InvalidName(ValueError):
    """A name from outside that may not become a path."""


def is_channel_name(name: str) -> bool:
    return CHANNEL_PATTERN.fullmatch(name) is not None


def new_broadcast_id() -> str:
    """Short, URL-safe and unguessable (72 random bits)."""
    return secrets.token_urlsafe(9)


def segment_name(sequence: int) -> str:
    return f"{sequence:06d}.ts"


class DataLayout:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.channels_dir = self.root / "channels"

    def ensure(self) -> None:
        self.channels_dir.mkdir(parents=True, exist_ok=True)

    def temporary_file(self, suffix: str) -> Path:
        """A fresh hidden file name for short-lived output (clips), on the same file system."""
        directory = self.root / "tmp"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".{secrets.token_hex(8)}{suffix}"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite3"

    def broadcast_dirs(self) -> list[Path]:
        """Every broadcast directory on disk (those holding a record), for rebuilds."""
        return sorted(p.parent for p in self.channels_dir.glob(f"*/*/{RECORD_FILE}"))

    def recording_playlist(self, channel: str, broadcast_id: str) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / RECORDING_PLAYLIST

    def record_file(self, channel: str, broadcast_id: str) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / RECORD_FILE

    def recording_mp4(self, channel: str, broadcast_id: str) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / RECORDING_MP4

    def segment_paths(self, channel: str, broadcast_id: str, names: list[str]) -> list[Path]:
        """Paths of segments named in a recording playlist (names checked like requests)."""
        return [self.find_segment(channel, broadcast_id, n) for n in names]

    def channel_dir(self, channel: str) -> Path:
        if not is_channel_name(channel):
            raise InvalidName(f"invalid channel name {channel!r}")
        return self.channels_dir / channel

    def live_playlist(self, channel: str) -> Path:
        return self.channel_dir(channel) / LIVE_PLAYLIST

    def master_playlist(self, channel: str) -> Path:
        return self.channel_dir(channel) / MASTER_PLAYLIST

    def broadcast_dir(self, channel: str, broadcast_id: str) -> Path:
        if BROADCAST_ID_PATTERN.fullmatch(broadcast_id) is None:
            raise InvalidName(f"invalid broadcast id {broadcast_id!r}")
        return self.channel_dir(channel) / broadcast_id

    def segment_path(self, channel: str, broadcast_id: str, sequence: int) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / segment_name(sequence)

    @staticmethod
    def segment_uri(broadcast_id: str, sequence: int) -> str:
        """The segment's URI relative to the channel's playlists."""
        return f"{broadcast_id}/{segment_name(sequence)}"

    def find_segment(self, channel: str, broadcast_id: str, name: str) -> Path:
        """Map a requested segment name to its path; InvalidName for anything malformed."""
        if SEGMENT_NAME_PATTERN.fullmatch(name) is None:
            raise InvalidName(f"invalid segment name {name!r}")
        return self.broadcast_dir(channel, broadcast_id) / name
