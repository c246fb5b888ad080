"""Posters over HTTP: ``/live/{channel}/poster.jpg`` and ``/replays/{id}/poster.jpg``.

A poster is one keyframe, decoded and scaled to a JPEG by media/poster.py: the only video decoding
the server does. It is kept cheap and bounded whatever the traffic:

* Decoding runs in a worker thread of the clip pool (web/downloads.py), never on the event loop
  and never on the threads catalog queries and key lookups use.
* At most one poster of a broadcast is made at a time (an ``asyncio.Lock`` per broadcast, held
  only while someone needs it), and at most ``DECODES_AT_ONCE`` in the whole server, so a flood
  of requests cannot make the server decode in parallel.
* Every result is cached, so N requests cost one decode: the requests that waited on the lock find
  the poster made for the first one.

Live (a broadcast that is live): the first keyframe of the newest complete segment, kept in
memory. After ``hls.poster_interval`` seconds the next request looks for a newer segment and, if
there is one, makes the poster again. Short Cache-Control.

Finished broadcasts: the first keyframe of the segment about a third into the recording (past the
countdowns and "starting soon" screens), made once and kept beside the segments as poster.jpg
(written atomically), then served as a file. Long Cache-Control. A channel that is not live shows
its last broadcast's poster.

In a cluster (live/shared_poster.py) a live poster is shared through Redis: the node that needs
one when none is current makes it (the origin from its files, another node from the newest
segment the origin mirrored) and every node serves those bytes until hls.poster_interval ends.

Audio-only broadcasts, unknown channels and ids, broadcasts without a complete segment yet: 404.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist_reader import PlaylistReadError, read_media_playlist
from periscope_ingest.media.poster import PosterError, make_poster
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import DataLayout, InvalidName, init_segment_for
from periscope_ingest.storage.objects import StoreUnavailable
from periscope_ingest.storage.recordings import recording_segments
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.web.api import find_broadcast
from periscope_ingest.web.context import (
    CATALOG,
    DOWNLOADS,
    LAYOUT,
    REGISTRY,
    REPLAY_CACHE,
    UPLOADER,
)

log = logging.getLogger(__name__)

JPEG_TYPE = "image/jpeg"
# A live poster changes every poster_interval; a finished broadcast's never does (but the
# broadcast may be deleted, so not "immutable").
LIVE_POSTER_CACHE = "public, max-age=10"
REPLAY_POSTER_CACHE = "public, max-age=86400"
POSTER_MAX_WIDTH = 640
DECODES_AT_ONCE = 2
# Live posters kept in memory (a few tens of kB each), least recently made dropped first; well
# above rtmp.max_publishers so that live channels never push each other out.
MAX_LIVE_POSTERS = 512
# Finished broadcasts known to have no poster (audio only, unreadable), so they are not retried.
MAX_KNOWN_WITHOUT = 1024
# For a broadcast still marked live whose stream pipeline is gone (it is being ended).
DEFAULT_POSTER_INTERVAL = 10.0


@dataclass(slots=True)
class _LivePoster:
    segment: Path  # what it was made from
    data: bytes | None  # None: that segment has no poster (audio only)
    checked_at: float  # monotonic time of the last look for a newer segment


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock
    users: int = 0  # requests holding or waiting for it


class Posters:
    """The posters of one app: caches, locks, the decode limit, and a count of decodes."""

    def __init__(
        self,
        pool: Executor,
        decodes_at_once: int = DECODES_AT_ONCE,
        cache: ReplayCache | None = None,
        uploader: Uploader | None = None,
    ) -> None:
        self._pool = pool
        # storage.url s3://: a finished broadcast's poster (or the segment it is made from) is
        # fetched from the object store when missing here, and a poster made here is uploaded.
        self._cache = cache
        self._uploader = uploader
        self._decoding = asyncio.Semaphore(decodes_at_once)
        # By broadcast id; an entry lives only while requests use it, so the dict stays small.
        self._locks: dict[str, _KeyLock] = {}
        self._live: OrderedDict[str, _LivePoster] = OrderedDict()
        # In a cluster: the shared poster of each broadcast and until when it is current.
        self._shared: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._without: OrderedDict[str, None] = OrderedDict()
        self.decodes = 0  # posters made since start (tests and debugging)

    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = _KeyLock(asyncio.Lock())
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]

    async def _make(self, segment: Path, channel: str, broadcast_id: str) -> bytes:
        """Decode in a worker thread, within the server-wide limit. Raises PosterError."""
        return await self._decode(lambda: _poster_of(segment), segment.name, channel, broadcast_id)

    async def _decode(
        self, work: Callable[[], bytes], segment: str, channel: str, broadcast_id: str
    ) -> bytes:
        async with self._decoding:
            started = time.perf_counter()
            data = await asyncio.get_running_loop().run_in_executor(self._pool, work)
        self.decodes += 1
        log_event(
            log,
            logging.DEBUG,
            "poster_made",
            channel=channel,
            broadcast=broadcast_id,
            segment=segment,
            bytes=len(data),
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return data

    async def live(
        self, layout: DataLayout, channel: str, broadcast_id: str, interval: float
    ) -> bytes | None:
        """The live broadcast's poster from its newest complete segment; None if there is none."""
        cached = self._live.get(broadcast_id)
        if cached is not None and time.monotonic() - cached.checked_at < interval:
            return cached.data
        async with self._exclusive(broadcast_id):
            cached = self._live.get(broadcast_id)  # made while this request waited?
            if cached is not None and time.monotonic() - cached.checked_at < interval:
                return cached.data
            segment = await asyncio.to_thread(_newest_segment, layout, channel, broadcast_id)
            if segment is None or (cached is not None and cached.segment == segment):
                if cached is None:
                    return None
                cached.checked_at = time.monotonic()  # nothing newer: look again next interval
                return cached.data
            try:
                data: bytes | None = await self._make(segment, channel, broadcast_id)
            except PosterError as exc:
                log_event(log, logging.DEBUG, "poster_unavailable", broadcast=broadcast_id,
                          segment=segment.name, reason=str(exc))  # fmt: skip
                data = None
            self._live[broadcast_id] = _LivePoster(segment, data, time.monotonic())
            self._live.move_to_end(broadcast_id)
            while len(self._live) > MAX_LIVE_POSTERS:
                self._live.popitem(last=False)
            return data

    async def shared_live(
        self, layout: DataLayout, edge: LiveEdge, interval: float
    ) -> bytes | None:
        """A cluster's live poster (edge.poster_share set): the one shared through Redis if it
        is current, else one made here (from this node's files or the origin's mirrored newest
        segment) and shared; None if there is none."""
        share, broadcast_id = edge.poster_share, edge.broadcast_id
        assert share is not None
        cached = self._shared.get(broadcast_id)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        # Not the key live() locks (it is called below, and asyncio locks do not nest).
        async with self._exclusive(f"shared:{broadcast_id}"):
            cached = self._shared.get(broadcast_id)
            if cached is not None and time.monotonic() < cached[1]:
                return cached[0]
            found = await share.get()
            if found is None:
                if edge.files_here:
                    data = await self.live(layout, edge.channel, broadcast_id, interval)
                else:
                    data = await self._from_mirrored(edge)
                if data is None:
                    return None
                found = (await share.put(data, interval), interval)
            # Kept here only as long as the shared one stays current: every node then serves
            # the same poster and renews it at the same time.
            self._shared[broadcast_id] = (found[0], time.monotonic() + found[1])
            self._shared.move_to_end(broadcast_id)
            while len(self._shared) > MAX_LIVE_POSTERS:
                self._shared.popitem(last=False)
            return found[0]

    async def _from_mirrored(self, edge: LiveEdge) -> bytes | None:
        """Another node's broadcast: a poster of the newest segment its live playlist lists,
        from the copy it mirrored into Redis."""
        edge.watched()  # its media is mirrored only while someone here wants it
        await edge.ready()
        update = edge.playlist
        if update is None:
            return None
        try:
            segments = read_media_playlist(update.text).segments
        except PlaylistReadError:
            return None
        if not segments:
            return None
        newest = segments[-1]
        name = newest.uri.rsplit("/", 1)[-1]
        data = edge.media(name) or await edge.fetch_media(name)
        init = None
        if newest.map_uri is not None:
            map_name = newest.map_uri.rsplit("/", 1)[-1]
            init = edge.media(map_name) or await edge.fetch_media(map_name)
            if init is None:
                return None
        if data is None:
            return None
        try:
            return await self._decode(
                lambda: _poster_of_bytes(name, data, init), name, edge.channel, edge.broadcast_id
            )
        except PosterError as exc:
            log_event(log, logging.DEBUG, "poster_unavailable", broadcast=edge.broadcast_id,
                      segment=name, reason=str(exc))  # fmt: skip
            return None

    async def finished(self, layout: DataLayout, record: BroadcastRecord) -> Path | None:
        """The finished broadcast's poster file, made on first use; None if it can have none."""
        path = layout.poster_path(record.channel, record.id)
        if path.is_file():
            return path
        if self._cache is not None and await self._fetch(record, path):
            return path
        if record.id in self._without or (record.video_codec is None and record.audio_codec):
            return None  # audio only
        async with self._exclusive(record.id):
            if path.is_file():  # made while this request waited
                return path
            if record.id in self._without:
                return None
            if self._cache is not None:
                await self._fetch(record, layout.recording_playlist(record.channel, record.id))
            segments = await asyncio.to_thread(recording_segments, layout, record)
            if not segments:
                return None
            segment = segments[len(segments) // 3]
            await self._fetch(record, segment)
            try:
                data = await self._make(segment, record.channel, record.id)
            except PosterError as exc:
                log_event(log, logging.INFO, "poster_unavailable", broadcast=record.id,
                          segment=segment.name, reason=str(exc))  # fmt: skip
                self._without[record.id] = None
                while len(self._without) > MAX_KNOWN_WITHOUT:
                    self._without.popitem(last=False)
                return None
            try:
                await asyncio.to_thread(write_atomic, path, data)
            except OSError as exc:  # deleted meanwhile, or the disk is full: nothing to serve
                log_event(log, logging.WARNING, "poster_not_saved", broadcast=record.id,
                          reason=repr(exc))  # fmt: skip
                return None
            if self._uploader is not None:
                self._uploader.file_complete(path)
            return path

    async def _fetch(self, record: BroadcastRecord, path: Path) -> bool:
        """storage.url s3://: ``path`` (the poster, or a segment and the init segments) from the
        object store if it is not here; False if neither has it."""
        cache = self._cache
        if cache is None:
            return path.is_file()

        def fetch() -> bool:
            if path.suffix == ".m4s":
                cache.fetch_inits(record.channel, record.id)
            return cache.fetch(path)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fetch)
        except StoreUnavailable as exc:  # no poster this time; the next request tries again
            log_event(log, logging.WARNING, "store_unavailable", broadcast=record.id,
                      reason=str(exc))  # fmt: skip
            return False


def _poster_of(segment: Path) -> bytes:
    """Blocking: find the init segment an fMP4 segment needs, then decode."""
    init = init_segment_for(segment) if segment.suffix == ".m4s" else None
    return make_poster(segment, init, POSTER_MAX_WIDTH)


def _poster_of_bytes(name: str, data: bytes, init: bytes | None) -> bytes:
    """Blocking: a poster of a segment held in memory (make_poster reads files), through a
    temporary directory removed right after."""
    with tempfile.TemporaryDirectory(prefix="periscope-poster-") as directory:
        # Named by kind only: make_poster tells fMP4 from MPEG-TS by the suffix.
        segment = Path(directory) / ("segment.m4s" if name.endswith(".m4s") else "segment.ts")
        segment.write_bytes(data)
        init_path = None
        if init is not None:
            init_path = Path(directory) / "init.mp4"
            init_path.write_bytes(init)
        return make_poster(segment, init_path, POSTER_MAX_WIDTH)


def _newest_segment(layout: DataLayout, channel: str, broadcast_id: str) -> Path | None:
    """Blocking: the newest complete segment the broadcast's recording playlist lists."""
    try:
        text = layout.recording_playlist(channel, broadcast_id).read_text()
        segments = read_media_playlist(text).segments
        if not segments:
            return None
        return layout.find_segment(channel, broadcast_id, segments[-1].uri)
    except (OSError, PlaylistReadError, InvalidName):
        return None


def _poster_interval(edge: LiveEdge | None) -> float:
    """hls.poster_interval of the running server, which the live edge carries."""
    return edge.poster_interval if edge is not None else DEFAULT_POSTER_INTERVAL


def _not_found(reason: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=f"{reason}\n")


def _jpeg(data: bytes, cache_control: str) -> web.Response:
    return web.Response(
        body=data, headers={"Content-Type": JPEG_TYPE, "Cache-Control": cache_control}
    )


def _jpeg_file(path: Path, cache_control: str) -> web.FileResponse:
    return web.FileResponse(
        path, headers={"Content-Type": JPEG_TYPE, "Cache-Control": cache_control}
    )


async def _live_record_poster(
    request: web.Request, channel: str, broadcast_id: str
) -> web.StreamResponse:
    edge = request.app[REGISTRY].edge(channel)
    if edge is not None and edge.broadcast_id != broadcast_id:
        edge = None
    if edge is not None and edge.info.video is None and edge.info.audio is not None:
        raise _not_found("this broadcast has no video")
    posters = request.app[POSTERS]
    interval = _poster_interval(edge)
    if edge is not None and edge.poster_share is not None:  # a cluster
        data = await posters.shared_live(request.app[LAYOUT], edge, interval)
    else:
        data = await posters.live(request.app[LAYOUT], channel, broadcast_id, interval)
    if data is None:
        raise _not_found("no poster yet")
    return _jpeg(data, LIVE_POSTER_CACHE)


async def live_poster(request: web.Request) -> web.StreamResponse:
    channel = request.match_info["channel"]
    layout = request.app[LAYOUT]
    try:
        layout.channel_dir(channel)
    except InvalidName:
        raise _not_found("unknown stream") from None
    edge = request.app[REGISTRY].edge(channel)
    if edge is not None:
        return await _live_record_poster(request, channel, edge.broadcast_id)
    # Not live: the channel's last broadcast.
    records, _ = await asyncio.to_thread(request.app[CATALOG].list, channel=channel, limit=1)
    if not records:
        raise _not_found("unknown stream")
    record = records[0]
    if record.status == "live":  # being ended right now
        return await _live_record_poster(request, channel, record.id)
    path = await request.app[POSTERS].finished(layout, record)
    if path is None:
        raise _not_found("no poster for this stream")
    # Short: the channel may go live again at any moment.
    return _jpeg_file(path, LIVE_POSTER_CACHE)


async def replay_poster(request: web.Request) -> web.StreamResponse:
    record = await find_broadcast(request)
    if record.status == "live":
        return await _live_record_poster(request, record.channel, record.id)
    path = await request.app[POSTERS].finished(request.app[LAYOUT], record)
    if path is None:
        raise _not_found("no poster for this broadcast")
    return _jpeg_file(path, REPLAY_POSTER_CACHE)


POSTERS = web.AppKey("posters", Posters)


def add_poster_routes(app: web.Application) -> None:
    """Register before the replay routes: /replays/{id}/{segment} would take poster.jpg."""
    app[POSTERS] = Posters(app[DOWNLOADS].clips, cache=app[REPLAY_CACHE], uploader=app[UPLOADER])
    app.router.add_get("/live/{channel}/poster.jpg", live_poster)
    app.router.add_get("/replays/{id}/poster.jpg", replay_poster)
