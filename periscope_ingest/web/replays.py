"""Recordings over HTTP: replay playlists and segments, MP4 downloads and clips, archives."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from aiohttp import web

from periscope_ingest.logs import log_event
from periscope_ingest.media.export import ExportError, stream_mp4
from periscope_ingest.media.playlist_reader import complete_playlist
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import DataLayout, InvalidName, is_channel_name
from periscope_ingest.storage.objects import StoreUnavailable
from periscope_ingest.storage.recordings import download_name
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.storage.store_source import StoreObject
from periscope_ingest.web.api import bad_request, broadcast_json, find_broadcast
from periscope_ingest.web.auth import require_owner_or_admin
from periscope_ingest.web.context import (
    ACCOUNTS,
    CATALOG,
    DOWNLOADS,
    LAYOUT,
    LIVE_PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    REGISTRY,
    REPLAY_CACHE,
    SEGMENT_CACHE,
    SEGMENT_TYPE,
)
from periscope_ingest.web.downloads import ExportInputs, Sending, local_inputs
from periscope_ingest.web.file_parts import copy_file_part, loop_has_sendfile
from periscope_ingest.web.stored_file import send_stored
from periscope_ingest.web.streaming import stream_from_thread
from periscope_ingest.web.write_timeout import within_write_timeout

log = logging.getLogger(__name__)

T = TypeVar("T")

MP4_TYPE = "video/mp4"
# How stale the recording playlist of a broadcast live on another node may be here (seconds).
LIVE_REFRESH_S = 1.0
# A finished recording's playlist never changes, but the broadcast may be deleted.
VOD_PLAYLIST_CACHE = "public, max-age=300"
# A file download goes out with sendfile in parts of this size, each within the write timeout.
SENDFILE_PART = 256 * 1024


def _file(path: Path, content_type: str, cache_control: str) -> web.FileResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text="not found\n")
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": cache_control}
    )


async def from_store(
    request: web.Request, record: BroadcastRecord, fetch: Callable[[ReplayCache], T]
) -> T | None:
    """storage.url s3://: what ``fetch`` makes of the replay cache for a broadcast, on a
    download thread (None with file://, or while live on this node: its files are all here):
    small files brought into the data directory when they are not there (recorded by another
    node, or the disk was wiped), and the answer made from them as always; or what an export
    reads from the store in ranges."""
    cache = request.app[REPLAY_CACHE]
    if cache is None or (record.status == "live" and live_here(request, record)):
        return None
    try:
        return await asyncio.get_running_loop().run_in_executor(
            request.app[DOWNLOADS].streams, fetch, cache
        )
    except StoreUnavailable as exc:
        raise _store_unavailable(record, exc) from None


def live_here(request: web.Request, record: BroadcastRecord) -> bool:
    return record.id in request.app[REGISTRY].broadcast_ids()


def _store_unavailable(record: BroadcastRecord, exc: StoreUnavailable) -> web.HTTPException:
    log_event(log, logging.WARNING, "store_unavailable", broadcast=record.id, reason=str(exc))
    return web.HTTPServiceUnavailable(
        text="the recording is in the object store, which does not answer; try again\n",
        headers={"Retry-After": "10"},
    )


def _attachment(name: str) -> str:
    return f'attachment; filename="{name}"'


async def replay_playlist(request: web.Request) -> web.StreamResponse:
    record = await find_broadcast(request)
    path = request.app[LAYOUT].recording_playlist(record.channel, record.id)
    if record.status != "live":
        await from_store(request, record, lambda cache: cache.fetch(path))
        return _file(path, PLAYLIST_TYPE, VOD_PLAYLIST_CACHE)
    # Live on another node (a shared catalog): it grows in the store.
    copy = await from_store(request, record, lambda cache: cache.refresh(path, LIVE_REFRESH_S))
    path = copy or path
    # Growing by appends (storage/growing_file.py): the player gets whole entries only.
    body = await asyncio.get_running_loop().run_in_executor(None, LIVE_RECORDINGS.read, path)
    if body is None:
        raise web.HTTPNotFound(text="not found\n")
    headers = {"Content-Type": PLAYLIST_TYPE, "Cache-Control": LIVE_PLAYLIST_CACHE}
    return web.Response(body=body, headers=headers)


class LiveRecordingPlaylists:
    """The complete part of live recordings' playlists, read once per change of the file.

    Every viewer of a live recording reloads its playlist each target duration, and twelve hours
    in it is 1.6 MB: read and cut once per appended segment, not once per request (the file's
    size and mtime say when it changed). Bounded in bytes: the least recently read go first."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._read: OrderedDict[Path, tuple[tuple[int, int], bytes]] = OrderedDict()

    def read(self, path: Path) -> bytes | None:
        """Blocking: the playlist's complete entries (None: no such file)."""
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        version = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._read.get(path)
            if known is not None and known[0] == version:
                self._read.move_to_end(path)
                return known[1]
        try:
            # Read after the stat: it holds at least that version, maybe a later append too.
            body = complete_playlist(path.read_text()).encode()
        except (FileNotFoundError, NotADirectoryError):
            return None
        with self._lock:
            earlier = self._read.pop(path, None)
            if earlier is not None:
                self._bytes -= len(earlier[1])
            if len(body) <= self._max_bytes:
                self._read[path] = (version, body)
                self._bytes += len(body)
            while self._bytes > self._max_bytes:
                self._bytes -= len(self._read.popitem(last=False)[1][1])
        return body


LIVE_RECORDINGS = LiveRecordingPlaylists()


async def replay_segment(request: web.Request) -> web.StreamResponse:
    record = await find_broadcast(request)
    try:
        path = request.app[LAYOUT].find_segment(
            record.channel, record.id, request.match_info["segment"]
        )
    except InvalidName:
        raise web.HTTPNotFound(text="not found\n") from None
    await from_store(request, record, lambda cache: cache.fetch(path))
    # fMP4 broadcasts have .m4s segments and an init-*.mp4; TS ones .ts.
    return _file(path, SEGMENT_TYPE if path.suffix == ".ts" else MP4_TYPE, SEGMENT_CACHE)


def _clip_range(request: web.Request) -> tuple[float | None, float | None]:
    values = []
    for name in ("start", "end"):
        raw = request.query.get(name)
        if raw is None:
            values.append(None)
            continue
        try:
            # ASCII only, like every number in a query: float() also takes '١٢' and '1_0'.
            if not raw.isascii() or "_" in raw:
                raise ValueError(raw)
            value = float(raw)
        except ValueError:
            raise bad_request(f"{name}: seconds, e.g. {name}=12.5") from None
        if not 0 <= value < 1e7:
            raise bad_request(f"{name}: seconds from the start of the broadcast")
        values.append(value)
    start, end = values
    if start is not None and end is not None and end <= start:
        raise bad_request("end must be after start")
    return start, end


async def replay_mp4(request: web.Request) -> web.StreamResponse:
    record = await find_broadcast(request)
    start, end = _clip_range(request)
    if start is not None and record.status != "live" and start >= record.duration:
        raise bad_request(f"start: the broadcast lasts {record.duration:g} s")
    downloads = request.app[DOWNLOADS]
    if start is not None or end is not None:
        with downloads.slot(request, clip=True) as sending:
            return await _clip(request, record, start, end, sending)
    else:
        with downloads.slot(request) as sending:
            return await _whole_mp4(request, record, sending)
    assert sending.response is not None
    return sending.response  # cut short: the client left or stopped reading (logged)


async def _whole_mp4(
    request: web.Request, record: BroadcastRecord, sending: Sending
) -> web.StreamResponse:
    layout = request.app[LAYOUT]
    downloads = request.app[DOWNLOADS]
    ready = layout.recording_mp4(record.channel, record.id)
    finished_headers = {
        "Content-Type": MP4_TYPE,
        "Cache-Control": "public, max-age=3600",
        "Content-Disposition": _attachment(download_name(record)),
    }
    stored = await from_store(
        request, record, lambda cache: cache.stored_mp4(record.channel, record.id)
    )
    if stored is not None:
        # The finished file, only in the store: sent as it is read from there, with Range.
        return await send_stored(
            request, sending, stored, finished_headers, downloads.streams, downloads.write_timeout
        )
    if record.status != "live" and ready.is_file():
        # The finished file: sendfile, Range (206), HEAD and Content-Length by aiohttp.
        return await _SentFile.send(request, sending, ready, finished_headers)
    # Not made yet (or still live): a fragmented MP4 made while it is sent, so the first byte
    # goes out at once and memory stays bounded. Its length is not known: no ranges.
    segments, inits = await _export_inputs(request, record)
    if not segments:
        raise web.HTTPNotFound(text="this broadcast has no recorded media yet\n")
    response = web.StreamResponse(
        headers={
            "Content-Type": MP4_TYPE,
            "Content-Disposition": _attachment(download_name(record)),
            "Cache-Control": "no-cache",
            "Accept-Ranges": "none",
        }
    )
    response.enable_chunked_encoding()
    sending.response = response
    await response.prepare(request)
    if request.method != "HEAD":
        # Once the headers are out, an error can only cut the body short.
        await stream_from_thread(
            response,
            lambda write: stream_mp4(segments, write, inits=inits),
            downloads.streams,
            request,
            downloads.write_timeout,
        )
    await within_write_timeout(request, response.write_eof(), downloads.write_timeout)
    return response


async def _clip(
    request: web.Request,
    record: BroadcastRecord,
    start: float | None,
    end: float | None,
    sending: Sending,
) -> web.StreamResponse:
    """A clip exact to a frame needs an edit list, which only a complete (non-fragmented) MP4
    carries reliably: it is made into a file (kept for the next request of the same clip of a
    finished broadcast, see web/downloads.py), then sent with Range."""
    inputs = await from_store(
        request,
        record,
        lambda cache: cache.export_sources(record.channel, record.id, record.status == "live"),
    )
    try:
        path, temporary = await request.app[DOWNLOADS].clip_file(record, start, end, inputs)
    except ExportError as exc:
        if isinstance(exc.__cause__, StoreUnavailable):  # a segment read from the store
            raise _store_unavailable(record, exc.__cause__) from None
        raise bad_request(str(exc)) from None
    suffix = f"-clip-{start or 0:g}-{end:g}s" if end is not None else f"-from-{start:g}s"
    headers = {
        "Content-Type": MP4_TYPE,
        "Cache-Control": "no-cache",
        "Content-Disposition": _attachment(download_name(record, suffix)),
    }
    try:
        return await _SentFile.send(request, sending, path, headers)
    finally:
        if temporary:
            path.unlink(missing_ok=True)


class _SentFile(web.FileResponse):
    """A file response sent inside its handler (so the download slot is held until the body is
    out), and not sent again when aiohttp prepares the returned response.

    aiohttp sends the file with one ``loop.sendfile``, which waits for ever for a client that
    does not read; here it goes in parts of SENDFILE_PART bytes, each within the write timeout
    (web/write_timeout.py). A client must so take SENDFILE_PART bytes per http_write_timeout
    (4.4 KB/s at the default 60 s); the kernel's TCP_USER_TIMEOUT, where there is one, waits
    as long as it sees any progress."""

    write_timeout = 60.0

    @classmethod
    async def send(
        cls, request: web.Request, sending: Sending, path: Path, headers: dict[str, str]
    ) -> _SentFile:
        response = cls(path, headers=headers)
        response.write_timeout = request.app[DOWNLOADS].write_timeout
        sending.response = response
        await response.prepare(request)
        return response

    async def prepare(self, request: web.BaseRequest):
        if self.prepared:
            return None
        return await super().prepare(request)

    async def _sendfile(self, request: web.BaseRequest, fobj, offset: int, count: int):
        writer = await web.StreamResponse.prepare(self, request)  # the head
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        loop = asyncio.get_running_loop()
        sendfile = loop_has_sendfile(loop)  # uvloop: each part copied (web/file_parts.py)
        threads = request.app[DOWNLOADS].streams
        end = offset + count
        while offset < end:
            if transport.is_closing():  # the client left (loop.sendfile would say RuntimeError)
                raise ConnectionResetError("Connection lost")
            part = min(SENDFILE_PART, end - offset)
            sending = (
                loop.sendfile(transport, fobj, offset, part)
                if sendfile
                else copy_file_part(writer, fobj, offset, part, threads)
            )
            await within_write_timeout(request, sending, self.write_timeout)
            offset += part
        await web.StreamResponse.write_eof(self)
        return writer


def _archive_name(record: BroadcastRecord) -> str:
    return f"{record.id}-{download_name(record)}"


def _write_archive(
    layout: DataLayout,
    channel: str,
    records: list[BroadcastRecord],
    write,
    cache: ReplayCache | None = None,
) -> None:
    """Blocking: the zip, entry by entry, straight into ``write`` (no temporary file); with
    ``cache`` (storage.url s3://) what is not on disk is read from the store in ranges."""

    class Sink:
        def write(self, data: bytes) -> int:
            write(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

    with zipfile.ZipFile(Sink(), mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[arg-type]
        metadata = [broadcast_json(r) for r in records]
        archive.writestr(f"{channel}/broadcasts.json", json.dumps(metadata, indent=1) + "\n")
        for record in records:
            name = f"{channel}/{_archive_name(record)}"
            stored = cache.stored_mp4(record.channel, record.id) if cache is not None else None
            if stored is not None:
                with archive.open(name, mode="w", force_zip64=True) as entry:
                    _copy_stored(stored, entry.write)
                continue
            ready = layout.recording_mp4(record.channel, record.id)
            if ready.is_file():
                archive.write(ready, name)
                continue
            if cache is not None:
                segments, inits = cache.export_sources(
                    record.channel, record.id, record.status == "live"
                )
            else:
                segments, inits = local_inputs(layout, record)
            if not segments:
                continue
            # Size unknown until written: zip64 headers so it may pass 4 GiB.
            with archive.open(name, mode="w", force_zip64=True) as entry:
                stream_mp4(segments, entry.write, inits=inits)


def _copy_stored(stored: StoreObject, write: Callable[[bytes], object]) -> None:
    """Blocking: an object of the store into ``write``, one ranged read at a time."""
    size, chunk = stored.size(), stored.chunk_bytes
    for at in range(0, size, chunk):
        data = stored.read(at, at + chunk)
        if not data:
            raise StoreUnavailable(f"object store GET {stored.key!r}: shorter than {size} bytes")
        write(data)


async def _export_inputs(request: web.Request, record: BroadcastRecord) -> ExportInputs:
    """The segments of an MP4 made on the fly and their init segments: from the store in
    ranges where they are not on disk (storage.url s3://: recorded, or still live, on another
    node), else the files."""
    inputs = await from_store(
        request,
        record,
        lambda cache: cache.export_sources(record.channel, record.id, record.status == "live"),
    )
    if inputs is not None:
        return inputs
    return await asyncio.get_running_loop().run_in_executor(
        request.app[DOWNLOADS].streams, local_inputs, request.app[LAYOUT], record
    )


async def channel_archive(request: web.Request) -> web.StreamResponse:
    channel = request.match_info["channel"]
    if not is_channel_name(channel):
        raise web.HTTPNotFound(text="unknown channel\n")
    if request.app[ACCOUNTS] is not None:  # with accounts, an archive is its owner's
        await require_owner_or_admin(request, channel)
    catalog = request.app[CATALOG]

    def finished_broadcasts() -> list[BroadcastRecord]:
        return [
            r
            for r in catalog.all()
            if r.channel == channel and r.status in ("ended", "interrupted") and r.segments
        ]

    records = await asyncio.to_thread(finished_broadcasts)
    if not records:
        raise web.HTTPNotFound(text="this channel has no finished broadcasts\n")
    with request.app[DOWNLOADS].slot(request) as sending:
        return await _send_archive(request, channel, records, sending)
    assert sending.response is not None
    return sending.response  # cut short: the client left or stopped reading (logged)


async def _send_archive(
    request: web.Request, channel: str, records: list[BroadcastRecord], sending: Sending
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": _attachment(f"{channel}-archive.zip"),
            "Cache-Control": "no-store",
            "Accept-Ranges": "none",
        }
    )
    response.enable_chunked_encoding()
    sending.response = response
    await response.prepare(request)
    downloads = request.app[DOWNLOADS]
    if request.method != "HEAD":
        layout, cache = request.app[LAYOUT], request.app[REPLAY_CACHE]
        await stream_from_thread(
            response,
            lambda write: _write_archive(layout, channel, records, write, cache),
            downloads.streams,
            request,
            downloads.write_timeout,
        )
    await within_write_timeout(request, response.write_eof(), downloads.write_timeout)
    return response


def add_replay_routes(app: web.Application) -> None:
    app.router.add_get("/replays/{id}/index.m3u8", replay_playlist)
    app.router.add_get("/replays/{id}/{segment}", replay_segment)
    app.router.add_get("/replays/{id}.mp4", replay_mp4)
    app.router.add_get("/api/channels/{channel}/archive.zip", channel_archive)
