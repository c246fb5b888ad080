"""HTTP: the app; live playlists and segments (live.py), the API and replays have their own modules.

Files are served with aiohttp's FileResponse (sendfile, Range, HEAD, conditional requests). The
one exception is a live broadcast's newest segments and parts, at most a few MB per watched
stream, held in memory by its LiveEdge (or read whole by the fast path, up to
fast_answers.MAX_FILE_BYTES) because a thousand viewers fetch the same few files. Every path is
built by DataLayout from names checked against strict patterns, so no request reaches outside
the data directory.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from aiohttp import web
from pydantic import SecretStr

from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.restream import Restreamer
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.live.webhooks import Webhooks
from periscope_ingest.metrics import Metrics, ViewerCounter
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.sunset import Lifecycle
from periscope_ingest.web.api import add_api_routes
from periscope_ingest.web.context import (
    ACCOUNTS,
    ADMIN_TOKEN,
    CATALOG,
    CORS_HEADERS,
    DOWNLOADS,
    EXPORTS,
    LAYOUT,
    LIFECYCLE,
    LIVE_ANSWERS,
    METRICS,
    PHASE_CHANGED,
    PROXIES,
    REGISTRY,
    REPLAY_CACHE,
    RESTREAMER,
    UPLOADER,
    VIEWERS,
    WEBHOOKS,
)
from periscope_ingest.web.downloads import Downloads
from periscope_ingest.web.forwarded import TrustedProxies
from periscope_ingest.web.live import add_live_routes
from periscope_ingest.web.live_answers import LiveAnswers
from periscope_ingest.web.pages import add_page_routes
from periscope_ingest.web.posters import add_poster_routes
from periscope_ingest.web.replays import add_replay_routes
from periscope_ingest.web.restream_routes import add_restream_routes
from periscope_ingest.web.service_routes import add_service_routes, shutdown_notice

_EMPTY_SUFFIX = re.compile(r"\s*bytes\s*=\s*-\s*0+\s*", re.IGNORECASE)

_PREFLIGHT_HEADERS = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS, POST, PATCH, DELETE",
    "Access-Control-Allow-Headers": (
        "Range, If-None-Match, If-Modified-Since, Authorization, Content-Type"
    ),
    "Access-Control-Max-Age": "86400",
}


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Right before any response's headers go out: also streamed ones (MP4, zip), which a
    middleware would only see after they were sent."""
    response.headers.update(CORS_HEADERS)


@web.middleware
async def edge(request: web.Request, handler):
    """What every request goes through, in one layer (each layer costs on the viewers' path):

    - CORS preflights, answered here even after shutdown (the headers of every other response
      are added by ``add_cors_headers``): hls.js pages on other origins fetch with Range;
    - a Range of the last 0 bytes, refused (416);
    - the sunset gate: after shutdown everything but health and the service status is 410;
    - the request count by route pattern (never the raw path: labels stay bounded) and status.
    """
    status = 500
    proxies = request.app[PROXIES]
    if proxies and proxies.trusted(request.remote):
        # From our reverse proxy: the client is the one it names (limits, counts and logs).
        # A header sent several times is one list, in order: the proxy's hop is the last one.
        peer = request.remote or ""
        headers = request.headers
        request = request.clone(
            remote=proxies.client(peer, ",".join(headers.getall("X-Forwarded-For", ()))),
            scheme=proxies.scheme(
                peer, ",".join(headers.getall("X-Forwarded-Proto", ())), request.scheme
            ),
        )
    try:
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers=_PREFLIGHT_HEADERS)
        elif (rng := request.headers.get("Range")) is not None and _EMPTY_SUFFIX.fullmatch(rng):
            # "The last 0 bytes" selects nothing: unsatisfiable (RFC 9110, 14.1.1), where
            # aiohttp's range parsing would read it as "from byte 0" and send everything.
            raise web.HTTPRequestRangeNotSatisfiable()
        else:
            gone = shutdown_notice(request)
            if gone is not None:
                raise gone
            response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[METRICS].count_request(name, status)


@dataclass(frozen=True, slots=True)
class AppParts:
    """Everything the HTTP side reaches; built by service.py."""

    layout: DataLayout
    registry: PublisherRegistry
    catalog: Catalog
    exports: Mp4Exports
    downloads: Downloads
    proxies: TrustedProxies
    lifecycle: Lifecycle
    webhooks: Webhooks
    phase_changed: asyncio.Event
    metrics: Metrics
    viewers: ViewerCounter
    accounts: AccountStore | None = None  # None: open publishing, no accounts
    admin_token: SecretStr | None = None
    restreamer: Restreamer | None = None
    replay_cache: ReplayCache | None = None  # storage.url s3:// only
    uploader: Uploader | None = None  # storage.url s3:// only


def build_app(parts: AppParts) -> web.Application:
    app = web.Application(middlewares=[edge])
    app.on_response_prepare.append(add_cors_headers)
    app[LAYOUT] = parts.layout
    app[REGISTRY] = parts.registry
    app[CATALOG] = parts.catalog
    app[EXPORTS] = parts.exports
    app[DOWNLOADS] = parts.downloads
    app[PROXIES] = parts.proxies
    app[LIFECYCLE] = parts.lifecycle
    app[WEBHOOKS] = parts.webhooks
    app[PHASE_CHANGED] = parts.phase_changed
    app[ACCOUNTS] = parts.accounts
    app[ADMIN_TOKEN] = parts.admin_token
    app[METRICS] = parts.metrics
    app[VIEWERS] = parts.viewers
    app[RESTREAMER] = parts.restreamer
    app[REPLAY_CACHE] = parts.replay_cache
    app[UPLOADER] = parts.uploader
    # What live viewers are answered, decided once for these routes and the fast path.
    app[LIVE_ANSWERS] = LiveAnswers(parts.registry, parts.viewers, parts.lifecycle)
    add_api_routes(app)
    add_restream_routes(app)
    add_service_routes(app)
    add_live_routes(app)
    add_poster_routes(app)  # before replays: /replays/{id}/{segment} would take poster.jpg
    add_replay_routes(app)
    add_page_routes(app)  # last: its patterns must not shadow the routes above
    return app
