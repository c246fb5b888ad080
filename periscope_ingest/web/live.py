"""HTTP for live streams: media and master playlists, segments, LL-HLS parts, blocking reload.

Playlists and segments are files served with aiohttp's FileResponse (sendfile, Range, HEAD,
conditional requests); every path comes from DataLayout, which checks each name first. While a
live stream is watched, its media playlist and its newest segments and parts are also held in
memory by its LiveEdge and plain GETs for them are answered from there: a thousand viewers then
cost no stat, open or executor hop per request. Which broadcast a request is about, who counts as
watching and the headers are decided by web/live_answers.py, for these routes and the fast path.

Low-Latency HLS (RFC 8216bis section 6.2.5), for a channel whose live stream has
``hls.low_latency``:

* ``_HLS_msn=M[&_HLS_part=P]`` on the media playlist holds the request until the playlist lists
  segment M (complete) or part P of segment M, or anything later, then answers with that
  playlist. After three target durations without it: 503. ``_HLS_part`` without ``_HLS_msn``,
  non-numbers, or M more than two segments ahead (P more than three parts ahead): 400.
* ``_HLS_skip=YES`` (or ``v2``) answers with a Playlist Delta Update when one is possible.
* A request for a part or segment of the live broadcast that does not exist yet (the part named
  by EXT-X-PRELOAD-HINT, typically) is held until it exists, then served; once it is clear it
  never will (its segment was completed with fewer parts), 404.

The waiting costs nothing while it lasts: every held request awaits the LiveEdge's shared
"playlist changed" future, which the disk-writer thread resolves through call_soon_threadsafe
when a part or segment is published. Requests without these parameters, and channels that are
not live, get the playlist file as before.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.storage.layout import InvalidName, parse_part_name, parse_segment_name
from periscope_ingest.web.context import (
    LAYOUT,
    LIVE_ANSWERS,
    LIVE_PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    SEGMENT_CACHE,
    parse_count,
)
from periscope_ingest.web.live_answers import PLAYLIST_HEADERS, segment_headers, segment_type
from periscope_ingest.web.urls import LIVE_MASTER_ROUTE, LIVE_PLAYLIST_ROUTE, LIVE_SEGMENT_ROUTE

# RFC 8216bis 6.2.5.2: a request more than this far ahead of the playlist is a client error.
_MAX_SEGMENTS_AHEAD = 2
_MAX_PARTS_AHEAD = 3  # the Advance Part Limit
# Requests with any of these headers are answered from the file, by FileResponse.
_FILE_ONLY_HEADERS = ("Range", "If-Range", "If-None-Match", "If-Modified-Since")


def _file(path: Path, content_type: str, cache_control: str) -> web.FileResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text="not found\n")
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": cache_control}
    )


def _int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = parse_count(raw)
    if value is None:
        raise web.HTTPBadRequest(text=f"{name} must be a non-negative integer\n")
    return value


def _low_latency_edge(request: web.Request, channel: str) -> LiveEdge | None:
    edge = request.app[LIVE_ANSWERS].edge(channel)
    if edge is None or not edge.low_latency:
        return None
    return edge


async def live_playlist(request: web.Request) -> web.StreamResponse:
    channel = request.match_info["channel"]
    try:
        path = request.app[LAYOUT].live_playlist(channel)
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    live = request.app[LIVE_ANSWERS].playlist_reloaded(channel, request.remote or "?")
    if live is not None and live.playlist is None:
        await live.ready()  # another node's stream, not mirrored yet: it starts now
    msn = _int_param(request, "_HLS_msn")
    part = _int_param(request, "_HLS_part")
    skip = request.query.get("_HLS_skip")
    if part is not None and msn is None:
        raise web.HTTPBadRequest(text="_HLS_part needs _HLS_msn\n")
    if msn is None and skip is None and live is not None and live.playlist is not None:
        # The text the writer thread just wrote to the file: viewers reload it every couple of
        # seconds, and answering from memory saves a stat, an open and a read per request.
        return _playlist_response(live.playlist.text)
    edge = _low_latency_edge(request, channel)
    if edge is None or (msn is None and skip is None):
        return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)
    update = edge.playlist
    # Before the first segment completes nothing is listed yet: segment 0 is "the next one".
    next_sequence = update.next_sequence if update is not None else 0
    parts = update.parts if update is not None else 0
    if msn is not None and not (update is not None and update.ended):
        if msn > next_sequence + _MAX_SEGMENTS_AHEAD or (
            part is not None and msn == next_sequence and part > parts + _MAX_PARTS_AHEAD
        ):
            raise web.HTTPBadRequest(text="_HLS_msn/_HLS_part too far ahead of the playlist\n")
        if not await edge.wait_for(msn, part, edge.hold_timeout()):
            raise web.HTTPServiceUnavailable(text="the requested part did not arrive in time\n")
    update = edge.playlist
    if update is None:
        return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)
    text = update.delta if skip in ("YES", "v2") and update.delta is not None else update.text
    return _playlist_response(text)


def _playlist_response(text: str) -> web.Response:
    return web.Response(body=text.encode(), headers=PLAYLIST_HEADERS)


async def master_playlist(request: web.Request) -> web.StreamResponse:
    channel = request.match_info["channel"]
    try:
        path = request.app[LAYOUT].master_playlist(channel)
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    edge = request.app[LIVE_ANSWERS].edge(channel)
    if edge is not None and not edge.files_here:
        # Another node's broadcast (a cluster): its master playlist as the origin wrote it. A
        # file here would be of an older broadcast of this node's.
        if edge.master is None:
            await edge.ready()  # mirrored (with its master playlist) only while watched here
        if edge.master is None:
            raise web.HTTPNotFound(text="not found\n")
        return _playlist_response(edge.master)
    return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)


async def _wait_until_published(request: web.Request, channel: str, broadcast: str, name: str):
    """Hold a request for a part/segment of the live broadcast that is about to exist."""
    edge = _low_latency_edge(request, channel)
    if edge is None or edge.broadcast_id != broadcast:
        return
    update = edge.playlist
    next_sequence = update.next_sequence if update is not None else 0
    parts = update.parts if update is not None else 0
    parsed = parse_part_name(name)
    if parsed is not None:
        sequence, part = parsed
        if sequence > next_sequence or (
            sequence == next_sequence and part > parts + _MAX_PARTS_AHEAD
        ):
            return
        await edge.wait_for(sequence, part, edge.hold_timeout())
        return
    sequence_or_none = parse_segment_name(name)
    if sequence_or_none is not None and sequence_or_none <= next_sequence:
        await edge.wait_for(sequence_or_none, None, edge.hold_timeout())


async def segment(request: web.Request) -> web.StreamResponse:
    m = request.match_info
    channel, broadcast, name = m["channel"], m["broadcast"], m["segment"]
    live = request.app[LIVE_ANSWERS].media_requested(channel, broadcast)
    # Before any path is built: the names held in memory are our own, matched exactly.
    if live is not None and (response := _from_memory(request, live, name)) is not None:
        return response
    try:
        path = request.app[LAYOUT].find_segment(channel, broadcast, name)
    except InvalidName:
        raise web.HTTPNotFound(text="not found\n") from None
    if not path.is_file():
        await _wait_until_published(request, channel, broadcast, name)
        if live is not None and (response := _from_memory(request, live, name)) is not None:
            return response
        if live is not None and (data := await live.fetch_media(name)) is not None:
            # Another node's broadcast (a cluster): its newest files are in Redis, not here.
            return web.Response(body=data, headers=segment_headers(name))
    return _file(path, segment_type(name), SEGMENT_CACHE)


def _from_memory(request: web.Request, live: LiveEdge, name: str) -> web.Response | None:
    """The newest segments and parts of a watched stream, without a stat, open or executor hop.

    Range and conditional requests go to the file (FileResponse does them properly); players
    fetch whole live segments.
    """
    headers = request.headers  # case-insensitive lookups
    if any(header in headers for header in _FILE_ONLY_HEADERS):
        return None
    data = live.media(name)
    if data is None:
        return None
    return web.Response(body=data, headers=segment_headers(name))


def add_live_routes(app: web.Application) -> None:
    app.router.add_get(LIVE_PLAYLIST_ROUTE, live_playlist)
    app.router.add_get(LIVE_MASTER_ROUTE, master_playlist)
    app.router.add_get(LIVE_SEGMENT_ROUTE, segment)
