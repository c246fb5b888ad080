"""HTTP: live playlists and segments, the stream list, health.

Files are served with aiohttp's FileResponse (sendfile, Range, HEAD, conditional requests), never
read whole into memory. Every path is built by DataLayout from names checked against strict
patterns, so no request reaches outside the data directory.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from periscope_ingest import __version__
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.storage.layout import DataLayout, InvalidName

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
# A live playlist changes every segment; players reload it about once per target duration.
LIVE_PLAYLIST_CACHE = "max-age=1, must-revalidate"
# Segment names are never reused (the broadcast id is part of the path), so they never change.
SEGMENT_CACHE = "public, max-age=31536000, immutable"

LAYOUT_KEY = web.AppKey("layout", DataLayout)
REGISTRY_KEY = web.AppKey("registry", PublisherRegistry)


@web.middleware
async def cors(request: web.Request, handler):
    """Players on other origins (hls.js pages) may fetch playlists and segments, with Range."""
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Range, If-None-Match, If-Modified-Since"
        response.headers["Access-Control-Max-Age"] = "86400"
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Expose-Headers"] = (
        "Content-Length, Content-Range, Accept-Ranges"
    )
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _file(path: Path, content_type: str, cache_control: str) -> web.FileResponse:
    if not path.is_file():
        raise web.HTTPNotFound(text="not found\n")
    return web.FileResponse(
        path, headers={"Content-Type": content_type, "Cache-Control": cache_control}
    )


async def live_playlist(request: web.Request) -> web.StreamResponse:
    layout = request.app[LAYOUT_KEY]
    try:
        path = layout.live_playlist(request.match_info["channel"])
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)


async def master_playlist(request: web.Request) -> web.StreamResponse:
    layout = request.app[LAYOUT_KEY]
    try:
        path = layout.master_playlist(request.match_info["channel"])
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)


async def segment(request: web.Request) -> web.StreamResponse:
    layout = request.app[LAYOUT_KEY]
    m = request.match_info
    try:
        path = layout.find_segment(m["channel"], m["broadcast"], m["segment"])
    except InvalidName:
        raise web.HTTPNotFound(text="not found\n") from None
    return _file(path, SEGMENT_TYPE, SEGMENT_CACHE)


async def streams(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    live = sorted(registry.live(), key=lambda p: p.info.started_at)
    return web.json_response(
        {"streams": [p.info.as_json() for p in live]}, headers={"Cache-Control": "no-cache"}
    )


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    return web.json_response(
        {"status": "ok", "version": __version__, "live_streams": len(registry.live())},
        headers={"Cache-Control": "no-cache"},
    )


def build_app(layout: DataLayout, registry: PublisherRegistry) -> web.Application:
    app = web.Application(middlewares=[cors])
    app[LAYOUT_KEY] = layout
    app[REGISTRY_KEY] = registry
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/streams", streams)
    app.router.add_get("/live/{channel}/index.m3u8", live_playlist)
    app.router.add_get("/live/{channel}/master.m3u8", master_playlist)
    app.router.add_get("/live/{channel}/{broadcast}/{segment}", segment)
    return app
