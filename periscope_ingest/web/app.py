"""HTTP: the app, live playlists and segments; the API and replays have their own modules.

Files are served with aiohttp's FileResponse (sendfile, Range, HEAD, conditional requests), never
read whole into memory. Every path is built by DataLayout from names checked against strict
patterns, so no request reaches outside the data directory.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from pydantic import SecretStr

from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout, InvalidName
from periscope_ingest.web.api import add_api_routes
from periscope_ingest.web.context import (
    ADMIN_TOKEN,
    CATALOG,
    EXPORTS,
    LAYOUT,
    LIVE_PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    REGISTRY,
    SEGMENT_CACHE,
    SEGMENT_TYPE,
)
from periscope_ingest.web.replays import add_replay_routes


@web.middleware
async def cors(request: web.Request, handler):
    """Players on other origins (hls.js pages) may fetch playlists and segments, with Range."""
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS, PATCH, DELETE"
        response.headers["Access-Control-Allow-Headers"] = (
            "Range, If-None-Match, If-Modified-Since, Authorization, Content-Type"
        )
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
    layout = request.app[LAYOUT]
    try:
        path = layout.live_playlist(request.match_info["channel"])
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)


async def master_playlist(request: web.Request) -> web.StreamResponse:
    layout = request.app[LAYOUT]
    try:
        path = layout.master_playlist(request.match_info["channel"])
    except InvalidName:
        raise web.HTTPNotFound(text="unknown stream\n") from None
    return _file(path, PLAYLIST_TYPE, LIVE_PLAYLIST_CACHE)


async def segment(request: web.Request) -> web.StreamResponse:
    layout = request.app[LAYOUT]
    m = request.match_info
    try:
        path = layout.find_segment(m["channel"], m["broadcast"], m["segment"])
    except InvalidName:
        raise web.HTTPNotFound(text="not found\n") from None
    return _file(path, SEGMENT_TYPE, SEGMENT_CACHE)


def build_app(
    layout: DataLayout,
    registry: PublisherRegistry,
    catalog: Catalog,
    exports: Mp4Exports,
    admin_token: SecretStr | None = None,
) -> web.Application:
    app = web.Application(middlewares=[cors])
    app[ADMIN_TOKEN] = admin_token
    app[LAYOUT] = layout
    app[REGISTRY] = registry
    app[CATALOG] = catalog
    app[EXPORTS] = exports
    add_api_routes(app)
    app.router.add_get("/live/{channel}/index.m3u8", live_playlist)
    app.router.add_get("/live/{channel}/master.m3u8", master_playlist)
    app.router.add_get("/live/{channel}/{broadcast}/{segment}", segment)
    add_replay_routes(app)
    return app
