"""Finished broadcasts' files fetched from the object store into the data directory on demand.

A node serves a replay, poster or MP4 from its data directory as it always has; when a finished
broadcast's file is not there (another node recorded it, or the local disk was wiped) it is first
fetched from the store (storage/objects.py) to its usual path, whole or not at all (a hidden
temporary file renamed), and then served exactly like a local file. Blocking: called from worker
threads.

A broadcast still live on another node has a recording playlist that grows: a hidden copy of
it is fetched again when older than a second (``refresh``); its segments are fetched once.

Exports read the big files differently: an MP4, clip or archive of a broadcast whose segments
(or recording.mp4) are only in the store reads them from the store in ranges (`export_sources`,
`stored_mp4`; storage/store_source.py), so that its first byte does not wait for every segment
to be copied and the disk does not fill with them; only the playlist and init segments (small)
come through this cache.

What was fetched is listed in a hidden ``.fetched`` file per broadcast directory (one name a
line), so that only fetched files are ever evicted, never a recording made here. Past
``storage.cache_max_gb`` the least recently used broadcasts' fetched files are removed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist_reader import PlaylistReadError, read_media_playlist
from periscope_ingest.media.segment_source import SegmentSource
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.layout import (
    INIT_NAME_PATTERN,
    DataLayout,
    InvalidName,
    init_segments,
)
from periscope_ingest.storage.objects import ObjectMissing, ObjectStore
from periscope_ingest.storage.recording_tail import read_recording_playlist
from periscope_ingest.storage.store_source import ReadAhead, StoreObject

log = logging.getLogger(__name__)

FETCHED_LIST = ".fetched"
REFRESH_STRIPES = 16  # locks for the refreshes of live playlists (see ReplayCache.refresh)
LIVE_COPY_PREFIX = ".live-"  # the growing recording playlist of a broadcast live elsewhere


class _Fetched:
    """The fetched files of one broadcast directory."""

    __slots__ = ("bytes", "names", "used")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.bytes = 0
        self.used = time.monotonic()


class ReplayCache:
    def __init__(
        self,
        store: ObjectStore,
        layout: DataLayout,
        max_bytes: int,
        on_fetched: Callable[[], None] | None = None,
        read_chunk_bytes: int = 1024 * 1024,
        read_ahead_segments: int = 2,
    ) -> None:
        self._store = store
        self._read_chunk = read_chunk_bytes  # storage.read_chunk_kb
        self._read_ahead = read_ahead_segments  # storage.read_ahead_segments
        # Shared by every export's read-ahead (each holds at most read_ahead_segments of it).
        self._read_pool = ThreadPoolExecutor(
            max(2, 2 * read_ahead_segments), thread_name_prefix="store-read"
        )
        self._layout = layout
        self._max_bytes = max_bytes
        self._on_fetched = on_fetched  # a metric
        self._lock = threading.Lock()
        # One refresh of a growing playlist at a time: viewers asking together wait for it,
        # then find it fresh, instead of each fetching it. Striped by playlist, so that one
        # slow fetch holds up only the few broadcasts that share its stripe (a fixed number of
        # locks: nothing grows with the broadcasts asked for).
        self._refresh_locks = tuple(threading.Lock() for _ in range(REFRESH_STRIPES))
        self._fetched: dict[Path, _Fetched] = {}
        self._total = 0
        self._load()

    def _load(self) -> None:
        """What earlier runs fetched (their lists), oldest use first by the lists' times."""
        lists = sorted(
            self._layout.channels_dir.glob(f"*/*/{FETCHED_LIST}"), key=lambda p: p.stat().st_mtime
        )
        for listing in lists:
            entry = _Fetched()
            for name in listing.read_text().split():
                path = listing.parent / name
                if path.is_file():
                    entry.names.add(name)
                    entry.bytes += path.stat().st_size
            self._fetched[listing.parent] = entry
            self._total += entry.bytes

    # -- fetching -------------------------------------------------------------------------------

    def fetch(self, path: Path) -> bool:
        """Make a finished broadcast's file present at ``path``; False if neither the disk nor
        the store has it."""
        directory = path.parent
        if path.is_file():
            with self._lock:
                if (entry := self._fetched.get(directory)) is not None:
                    entry.used = time.monotonic()
            return True
        try:
            key = self._layout.key_for(path)
        except InvalidName:
            return False
        directory.mkdir(parents=True, exist_ok=True)
        try:
            size = self._store.download(key, path)
        except ObjectMissing:
            return False
        if self._on_fetched is not None:
            self._on_fetched()
        log_event(log, logging.DEBUG, "fetched_from_store", key=key, size=size)
        with self._lock:
            entry = self._fetched.get(directory)
            if entry is None:
                entry = self._fetched[directory] = _Fetched()
            entry.used = time.monotonic()
            if path.name not in entry.names:
                entry.names.add(path.name)
                entry.bytes += size
                self._total += size
                with open(directory / FETCHED_LIST, "a") as listing:
                    listing.write(path.name + "\n")
            self._evict(keep=directory)
        return True

    def refresh(self, path: Path, max_age_s: float) -> Path | None:
        """The recording playlist of a broadcast still live on another node (it grows): a copy
        beside ``path`` under a hidden name, fetched again once older than ``max_age_s``; None
        if the store lacks it. Hidden, so that once the broadcast ends its VOD playlist is
        fetched to ``path`` as for any finished broadcast, never mistaken for this copy."""
        copy = path.with_name(LIVE_COPY_PREFIX + path.name)
        with self._refresh_locks[hash(path) % REFRESH_STRIPES]:
            try:
                age = time.time() - copy.stat().st_mtime
            except FileNotFoundError:
                age = None
            if age is not None and age < max_age_s:
                return copy
            copy.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Its last whole upload and what was appended since (storage/recording_tail.py).
                playlist = read_recording_playlist(self._store, self._layout.key_for(path))
            except (ObjectMissing, InvalidName):
                return copy if age is not None else None
            write_atomic(copy, playlist, durable=False)
        return copy

    def fetch_recording(self, channel: str, broadcast_id: str) -> None:
        """Everything an MP4 export or clip of a finished broadcast reads: its recording
        playlist, every segment it lists and their init segments."""
        layout = self._layout
        playlist = layout.recording_playlist(channel, broadcast_id)
        if not self.fetch(playlist):
            return
        try:
            names = [s.uri for s in read_media_playlist(playlist.read_text()).segments]
            missing = [
                path
                for path in layout.segment_paths(channel, broadcast_id, names)
                if not path.is_file()
            ]
        except (OSError, PlaylistReadError, InvalidName):
            return
        if missing:  # a recording made here has them all: no request to the store
            self.fetch_inits(channel, broadcast_id)
        for path in missing:
            self.fetch(path)

    def fetch_inits(self, channel: str, broadcast_id: str) -> None:
        """The fMP4 init segments of a broadcast (small; which segment needs which is decided
        by listing the directory, see DataLayout.init_segments)."""
        layout = self._layout
        for key in self._store.list(layout.broadcast_prefix(channel, broadcast_id)):
            name = key.rsplit("/", 1)[1]
            if INIT_NAME_PATTERN.fullmatch(name):
                self.fetch(layout.find_segment(channel, broadcast_id, name))

    def export_sources(
        self, channel: str, broadcast_id: str, live: bool = False
    ) -> tuple[list[Path | SegmentSource], dict[Path | SegmentSource, Path | SegmentSource]]:
        """What an export of a broadcast reads, in order, and each fMP4 segment's init
        segment: the segments on disk as files, the others as objects of the store read in
        ranges (never copied here); the playlist and init segments through this cache.
        ``live``: the broadcast is still live, and if its playlist is not on this disk it is
        another node's, growing in the store: its copy is fetched now (``refresh``), never left
        where the VOD playlist goes once it ends."""
        layout = self._layout
        path = layout.recording_playlist(channel, broadcast_id)
        if live and not path.is_file():
            playlist = self.refresh(path, 0.0)
        else:
            playlist = path if self.fetch(path) else None
        if playlist is None:
            return [], {}
        try:
            names = [s.uri for s in read_media_playlist(playlist.read_text()).segments]
            paths = layout.segment_paths(channel, broadcast_id, names)
        except (OSError, PlaylistReadError, InvalidName):
            return [], {}
        missing = [path for path in paths if not path.is_file()]
        stored: dict[str, int] = {}
        if missing:  # a recording made here has them all: no request to the store
            self.fetch_inits(channel, broadcast_id)
            stored = self._store.list(layout.broadcast_prefix(channel, broadcast_id))
        inits = init_segments(paths)
        segments: list[Path | SegmentSource] = []
        segment_inits: dict[Path | SegmentSource, Path | SegmentSource] = {}
        from_store: list[StoreObject] = []
        for path in paths:
            segment: Path | SegmentSource = path
            if not path.is_file():
                key = layout.key_for(path)
                if key not in stored:
                    continue  # in neither place: the export makes do without it
                segment = StoreObject(self._store, key, stored[key], self._read_chunk)
                from_store.append(segment)
            segments.append(segment)
            if path in inits:
                segment_inits[segment] = inits[path]
        if from_store:
            ReadAhead(from_store, self._read_ahead, self._read_pool)
        return segments, segment_inits

    def stored_mp4(self, channel: str, broadcast_id: str) -> StoreObject | None:
        """The finished recording.mp4 in the store when it is not on disk here (None if it is
        here, or nowhere), to be read in ranges rather than copied whole before its first
        byte is sent."""
        mp4 = self._layout.recording_mp4(channel, broadcast_id)
        if mp4.is_file():
            return None
        key = self._layout.key_for(mp4)
        size = self._store.size(key)
        if size is None:
            return None
        return StoreObject(self._store, key, size, self._read_chunk)

    def forget(self, channel: str, broadcast_id: str) -> None:
        """The broadcast is being deleted: its objects leave the store (and the cache's books;
        the caller removes the directory)."""
        for key in self._store.list(self._layout.broadcast_prefix(channel, broadcast_id)):
            self._store.delete(key)
        with self._lock:
            entry = self._fetched.pop(self._layout.broadcast_dir(channel, broadcast_id), None)
            if entry is not None:
                self._total -= entry.bytes

    # -- the bound ------------------------------------------------------------------------------

    def _evict(self, keep: Path) -> None:
        """Remove least recently used broadcasts' fetched files until under the bound (lock
        held); never those of ``keep``, the broadcast being served."""
        if self._total <= self._max_bytes:
            return
        for directory, entry in sorted(self._fetched.items(), key=lambda item: item[1].used):
            if self._total <= self._max_bytes:
                break
            if directory == keep:
                continue
            for name in entry.names:
                (directory / name).unlink(missing_ok=True)
            (directory / FETCHED_LIST).unlink(missing_ok=True)
            self._total -= entry.bytes
            del self._fetched[directory]
            log_event(log, logging.INFO, "fetched_evicted", directory=directory, size=entry.bytes)
