"""HTTP: the app; live playlists and segments (live.py), the API and replays have their own modules.

Files are served with aiohttp's FileResponse (sendfile, Range, HEAD, conditional requests), never
read whole into memory. Every path is built by DataLayout from names checked against strict
patterns, so no request reaches outside the data directory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from pydantic import SecretStr

from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.webhooks import Webhooks
from periscope_ingest.metrics import Metrics, ViewerCounter
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.sunset import Lifecycle
from periscope_ingest.web.api import add_api_routes
from periscope_ingest.web.context import (
    ACCOUNTS,
    ADMIN_TOKEN,
    CATALOG,
    EXPORTS,
    LAYOUT,
    LIFECYCLE,
    METRICS,
    PHASE_CHANGED,
    REGISTRY,
    VIEWERS,
    WEBHOOKS,
)
from periscope_ingest.web.live import add_live_routes
from periscope_ingest.web.pages import add_page_routes
from periscope_ingest.web.posters import add_poster_routes
from periscope_ingest.web.replays import add_replay_routes
from periscope_ingest.web.service_routes import add_service_routes, sunset_gate


@web.middleware
async def count_requests(request: web.Request, handler):
    """Requests by route pattern (never the raw path: labels stay bounded) and status."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        request.app[METRICS].http_requests.labels(name, str(status)).inc()


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


@dataclass(frozen=True, slots=True)
class AppParts:
    """Everything the HTTP side reaches; built by service.py."""

    layout: DataLayout
    registry: PublisherRegistry
    catalog: Catalog
    exports: Mp4Exports
    lifecycle: Lifecycle
    webhooks: Webhooks
    phase_changed: asyncio.Event
    metrics: Metrics
    viewers: ViewerCounter
    accounts: AccountStore | None = None  # None: open publishing, no accounts
    admin_token: SecretStr | None = None


def build_app(parts: AppParts) -> web.Application:
    # cors outermost, so that even a 410 after shutdown reaches players on other origins.
    app = web.Application(middlewares=[count_requests, cors, sunset_gate])
    app[LAYOUT] = parts.layout
    app[REGISTRY] = parts.registry
    app[CATALOG] = parts.catalog
    app[EXPORTS] = parts.exports
    app[LIFECYCLE] = parts.lifecycle
    app[WEBHOOKS] = parts.webhooks
    app[PHASE_CHANGED] = parts.phase_changed
    app[ACCOUNTS] = parts.accounts
    app[ADMIN_TOKEN] = parts.admin_token
    app[METRICS] = parts.metrics
    app[VIEWERS] = parts.viewers
    add_api_routes(app)
    add_service_routes(app)
    add_live_routes(app)
    add_poster_routes(app)  # before replays: /replays/{id}/{segment} would take poster.jpg
    add_replay_routes(app)
    add_page_routes(app)  # last: its patterns must not shadow the routes above
    return app
