"""The single owner of names and paths on disk.

Nobody else builds a path under the data directory. Every name that comes from outside (a stream
key, a URL) is checked against a strict pattern here before it becomes a path, so no request or
publisher can reach outside the data directory.

    <data_dir>/channels/<channel>/index.m3u8    live playlist of the current or last broadcast
    <data_dir>/channels/<channel>/master.m3u8   its master playlist
    <data_dir>/channels/<channel>/<broadcast>/000042.ts   segments, never reused (MPEG-TS)
    <data_dir>/channels/<channel>/<broadcast>/000042.m4s  segments as fMP4 fragments (moof+mdat)
    <data_dir>/channels/<channel>/<broadcast>/000042.3.m4s   LL-HLS part 3 of segment 42
    <data_dir>/channels/<channel>/<broadcast>/init-000040.mp4  fMP4 init segment (EXT-X-MAP) of
                                                      segments 40 onwards (until the next init)
    <data_dir>/channels/<channel>/<broadcast>/recording.m3u8   EVENT while live, then VOD
    <data_dir>/channels/<channel>/<broadcast>/broadcast.json   the broadcast's record (the truth)
    <data_dir>/channels/<channel>/<broadcast>/recording.mp4    the MP4 export, once made
    <data_dir>/channels/<channel>/<broadcast>/poster.jpg       the replay's poster, once asked for
    <data_dir>/catalog.sqlite3                        index over the records, rebuildable
    <data_dir>/accounts.sqlite3                       accounts (keyed hashes of their secrets)
    <data_dir>/server-secret                          the key of those hashes (mode 0600)
    <data_dir>/restream.sqlite3                       restream targets (their URLs hold stream
                                                      keys of other services: mode 0600)
    <data_dir>/service-phase.json                     the sunset phase set by hand, if any
"""

from __future__ import annotations

import re
import secrets
from bisect import bisect_right
from collections.abc import Iterable
from pathlib import Path

# Channel names come from stream keys: keep them to what is safe in a path and a URL.
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
BROADCAST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{12}")
# Whole segments (.ts or .m4s), LL-HLS parts (000042.3.m4s) and fMP4 init segments.
SEGMENT_NAME_PATTERN = re.compile(r"(\d{6,9})(?:\.ts|\.m4s|\.\d{1,4}\.m4s)|init-\d{6,9}\.mp4")
PART_NAME_PATTERN = re.compile(r"(\d{6,9})\.(\d{1,4})\.m4s")
INIT_NAME_PATTERN = re.compile(r"init-(\d{6,9})\.mp4")
MEDIA_SEGMENT_PATTERN = re.compile(r"(\d{6,9})\.(ts|m4s)")
SEGMENT_FORMATS = {"ts": "ts", "fmp4": "m4s"}  # segment format -> file extension

LIVE_PLAYLIST = "index.m3u8"
MASTER_PLAYLIST = "master.m3u8"
RECORDING_PLAYLIST = "recording.m3u8"
# In the object store only: what a live recording playlist gained since its last whole upload
# (storage/recording_tail.py).
RECORDING_TAIL = "recording.tail"
RECORD_FILE = "broadcast.json"
RECORDING_MP4 = "recording.mp4"
POSTER_FILE = "poster.jpg"
# The files of a broadcast directory other than segments that go to the object store.
STORED_FILES = frozenset(
    {RECORDING_PLAYLIST, RECORDING_TAIL, RECORD_FILE, RECORDING_MP4, POSTER_FILE}
)


class InvalidName(ValueError):
    """A name from outside that may not become a path."""


def is_channel_name(name: str) -> bool:
    return CHANNEL_PATTERN.fullmatch(name) is not None


def new_broadcast_id() -> str:
    """Short, URL-safe and unguessable (about 72 random bits). Never begins with '-': a
    command line (`periscope-ingest export ID`) would take such an id for an option."""
    while (broadcast_id := secrets.token_urlsafe(9)).startswith("-"):
        pass
    return broadcast_id


def segment_name(sequence: int, segment_format: str = "ts") -> str:
    return f"{sequence:06d}.{SEGMENT_FORMATS[segment_format]}"


def part_name(sequence: int, part: int) -> str:
    """An LL-HLS partial segment: part ``part`` (from 0) of segment ``sequence``."""
    return f"{sequence:06d}.{part}.m4s"


def parse_part_name(name: str) -> tuple[int, int] | None:
    """(segment sequence, part index) of a part file name; None for anything else."""
    m = PART_NAME_PATTERN.fullmatch(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_segment_name(name: str) -> int | None:
    """The sequence number of a whole-segment file name (.ts or .m4s); None for anything else."""
    m = MEDIA_SEGMENT_PATTERN.fullmatch(name)
    return int(m.group(1)) if m else None


def init_segment_name(first_sequence: int) -> str:
    """The fMP4 init segment used from segment ``first_sequence`` on (until the next one)."""
    return f"init-{first_sequence:06d}.mp4"


def init_segment_for(segment: Path) -> Path | None:
    """The init segment (EXT-X-MAP) an fMP4 segment file needs: the latest one written at or
    before its sequence number, in the same directory. None if there is none."""
    sequence = parse_segment_name(segment.name)
    if sequence is None:
        return None
    best: tuple[int, Path] | None = None
    for candidate in segment.parent.glob("init-*.mp4"):
        m = INIT_NAME_PATTERN.fullmatch(candidate.name)
        if m is None:
            continue
        first = int(m.group(1))
        if first <= sequence and (best is None or first > best[0]):
            best = (first, candidate)
    return best[1] if best else None


def init_segments(segments: Iterable[Path]) -> dict[Path, Path]:
    """The init segment of each fMP4 (.m4s) segment in ``segments`` that has one, as
    `init_segment_for` finds it, but listing each directory once: an export of a long broadcast
    names thousands of segments."""
    listed: dict[Path, list[tuple[int, Path]]] = {}  # directory -> (first sequence, init)
    found: dict[Path, Path] = {}
    for segment in segments:
        sequence = parse_segment_name(segment.name) if segment.suffix == ".m4s" else None
        if sequence is None:
            continue
        inits = listed.get(segment.parent)
        if inits is None:
            inits = listed[segment.parent] = sorted(
                (int(m.group(1)), candidate)
                for candidate in segment.parent.glob("init-*.mp4")
                if (m := INIT_NAME_PATTERN.fullmatch(candidate.name))
            )
        at = bisect_right(inits, sequence, key=lambda init: init[0])
        if at:
            found[segment] = inits[at - 1][1]
    return found


class DataDirError(Exception):
    """The data directory cannot be used; the message names it and says why."""


class DataLayout:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.channels_dir = self.root / "channels"

    def ensure(self) -> None:
        """Create the data directory (its parent must exist: a missing parent is far more often a
        typo than a wish) and check that it can be written, or say in one line why not."""
        root = self.root
        try:
            if root.exists() and not root.is_dir():
                raise DataDirError(f"data directory {root} is a file, not a directory")
            if not root.exists() and not root.parent.is_dir():
                raise DataDirError(
                    f"data directory {root} cannot be created: {root.parent} does not exist"
                )
            self.channels_dir.mkdir(parents=True, exist_ok=True)
            probe = root / f".write-test-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise DataDirError(
                f"data directory {root} is not usable: {exc.strerror or exc}"
            ) from None

    def temporary_file(self, suffix: str) -> Path:
        """A fresh hidden file name for short-lived output (clips), on the same file system."""
        directory = self.root / "tmp"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f".{secrets.token_hex(8)}{suffix}"

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite3"

    @property
    def accounts_path(self) -> Path:
        return self.root / "accounts.sqlite3"

    @property
    def restream_path(self) -> Path:
        return self.root / "restream.sqlite3"

    @property
    def server_secret_path(self) -> Path:
        return self.root / "server-secret"

    @property
    def clip_cache_dir(self) -> Path:
        return self.root / "clip-cache"

    def cached_clip(self, broadcast_id: str, start: float | None, end: float | None) -> Path:
        """Where the clip [start, end) of a finished broadcast is kept (ms in the name)."""
        first = "0" if start is None else str(round(start * 1000))
        last = "end" if end is None else str(round(end * 1000))
        return self.clip_cache_dir / f"{broadcast_id}-{first}-{last}.mp4"

    def cached_clips_of(self, broadcast_id: str) -> list[Path]:
        return list(self.clip_cache_dir.glob(f"{broadcast_id}-*.mp4"))

    @property
    def first_start_secrets_path(self) -> Path:
        """Where the first start leaves the first channel's key when no terminal shows it."""
        return self.root / "first-start-secrets.txt"

    @property
    def phase_file(self) -> Path:
        return self.root / "service-phase.json"

    def broadcast_dirs(self) -> list[Path]:
        """Every broadcast directory on disk (those holding a record), for rebuilds."""
        return sorted(p.parent for p in self.channels_dir.glob(f"*/*/{RECORD_FILE}"))

    def recording_playlist(self, channel: str, broadcast_id: str) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / RECORDING_PLAYLIST

    def recording_mp4(self, channel: str, broadcast_id: str) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / RECORDING_MP4

    def poster_path(self, channel: str, broadcast_id: str) -> Path:
        """The finished broadcast's poster image (JPEG), made on first request."""
        return self.broadcast_dir(channel, broadcast_id) / POSTER_FILE

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

    def segment_path(
        self, channel: str, broadcast_id: str, sequence: int, segment_format: str = "ts"
    ) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / segment_name(sequence, segment_format)

    @staticmethod
    def segment_uri(broadcast_id: str, sequence: int, segment_format: str = "ts") -> str:
        """The segment's URI relative to the channel's playlists."""
        return f"{broadcast_id}/{segment_name(sequence, segment_format)}"

    def part_path(self, channel: str, broadcast_id: str, sequence: int, part: int) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / part_name(sequence, part)

    @staticmethod
    def part_uri(broadcast_id: str, sequence: int, part: int) -> str:
        """An LL-HLS part's URI relative to the channel's playlists."""
        return f"{broadcast_id}/{part_name(sequence, part)}"

    def init_segment_path(self, channel: str, broadcast_id: str, first_sequence: int) -> Path:
        return self.broadcast_dir(channel, broadcast_id) / init_segment_name(first_sequence)

    @staticmethod
    def init_segment_uri(broadcast_id: str, first_sequence: int) -> str:
        """The init segment's URI relative to the channel's playlists."""
        return f"{broadcast_id}/{init_segment_name(first_sequence)}"

    # -- object store keys (storage/objects.py): the same names, relative to the data dir -----

    def key_for(self, path: Path) -> str:
        """The object key of a broadcast's file: its path under the data directory, with '/'
        (``channels/<channel>/<broadcast>/<file>``). InvalidName for anything else."""
        try:
            key = path.relative_to(self.root).as_posix()
        except ValueError:
            raise InvalidName(f"{path} is not in the data directory") from None
        self.path_for(key)  # the same checks both ways
        return key

    def path_for(self, key: str) -> Path:
        """The local path of an object key; InvalidName unless it names a broadcast's file."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != self.channels_dir.name:
            raise InvalidName(f"invalid object key {key!r}")
        _, channel, broadcast_id, name = parts
        if name not in STORED_FILES and SEGMENT_NAME_PATTERN.fullmatch(name) is None:
            raise InvalidName(f"invalid object key {key!r}")
        return self.broadcast_dir(channel, broadcast_id) / name

    def broadcast_prefix(self, channel: str, broadcast_id: str) -> str:
        """The key prefix of every stored file of a broadcast (ends with '/')."""
        return self.key_for(self.broadcast_dir(channel, broadcast_id) / RECORD_FILE)[
            : -len(RECORD_FILE)
        ]

    def find_segment(self, channel: str, broadcast_id: str, name: str) -> Path:
        """Map a requested segment name to its path; InvalidName for anything malformed."""
        if SEGMENT_NAME_PATTERN.fullmatch(name) is None:
            raise InvalidName(f"invalid segment name {name!r}")
        return self.broadcast_dir(channel, broadcast_id) / name
