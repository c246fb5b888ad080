"""The JSON API: live streams, broadcasts, health."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from periscope_ingest import __version__
from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.storage.catalog import STATUSES, BroadcastRecord, InvalidCursor
from periscope_ingest.storage.layout import BROADCAST_ID_PATTERN, is_channel_name
from periscope_ingest.storage.recordings import write_record
from periscope_ingest.storage.retention import delete_broadcast
from periscope_ingest.web import urls
from periscope_ingest.web.auth import require_owner_or_admin
from periscope_ingest.web.context import (
    CATALOG,
    LAYOUT,
    METRICS,
    REGISTRY,
    REPLAY_CACHE,
    RESTREAMER,
    VIEWERS,
    parse_count,
)
from periscope_ingest.web.models import (
    BroadcastChanges,
    BroadcastOut,
    BroadcastPage,
    ClientOut,
    HealthOut,
    StreamsOut,
    respond,
)
from periscope_ingest.web.openapi import openapi_json


def broadcast_json(record: BroadcastRecord) -> dict:
    data = record.as_json()
    data["replay"] = urls.replay_playlist(record.id)
    data["mp4"] = urls.replay_mp4(record.id)
    data["mp4_ready"] = record.mp4_size is not None
    return data


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def find_broadcast(request: web.Request) -> BroadcastRecord:
    broadcast_id = request.match_info["id"]
    if BROADCAST_ID_PATTERN.fullmatch(broadcast_id) is None:
        raise web.HTTPNotFound(text="unknown broadcast\n")
    record = await asyncio.to_thread(request.app[CATALOG].get, broadcast_id)
    if record is None or record.status == "deleted":
        raise web.HTTPNotFound(text="unknown broadcast\n")
    return record


def stream_json(edge: LiveEdge, viewers: int) -> dict:
    return {
        **edge.describe(),
        "playlist": urls.live_playlist(edge.channel),
        "reconnecting": edge.reconnecting,
        "viewers": viewers,
        "restream": edge.restream_status(),
    }


async def streams(request: web.Request) -> web.Response:
    live = sorted(request.app[REGISTRY].edges(), key=lambda edge: edge.started_at)
    viewers = request.app[VIEWERS]
    now = time.monotonic()
    registry = request.app[REGISTRY]
    streams = [
        stream_json(
            edge, viewers.count(edge.channel, now) + registry.viewers_elsewhere(edge.channel)
        )
        for edge in live
    ]
    return respond(StreamsOut, {"streams": streams})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format. Gauges read at scrape time are filled in here."""
    registry = request.app[REGISTRY]
    collected = request.app[METRICS]
    viewers = request.app[VIEWERS]
    now = time.monotonic()
    for edge in registry.edges():
        collected.viewers.labels(edge.channel).set(viewers.count(edge.channel, now))
    if (restreamer := request.app[RESTREAMER]) is not None:
        restreamer.collect()
    total = await asyncio.to_thread(request.app[CATALOG].total_size)
    collected.recordings_bytes.set(total)
    return web.Response(
        body=collected.render(),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-cache"},
    )


async def healthz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    return respond(
        HealthOut, {"status": "ok", "version": __version__, "live_streams": len(registry.edges())}
    )


async def list_broadcasts(request: web.Request) -> web.Response:
    query = request.query
    channel = query.get("channel")
    status = query.get("status")
    if channel is not None and not is_channel_name(channel):
        raise bad_request("channel: not a channel name")
    if status is not None and status not in STATUSES:
        raise bad_request(f"status: one of {', '.join(STATUSES)}")
    limit = parse_count(query.get("limit", "50"))
    if limit is None or not 1 <= limit <= 500:
        raise bad_request("limit: a whole number from 1 to 500")
    try:
        records, cursor = await asyncio.to_thread(
            request.app[CATALOG].list, channel, status, limit, query.get("cursor")
        )
    except InvalidCursor:
        raise bad_request("cursor: not a cursor from this API") from None
    body = {"broadcasts": [broadcast_json(r) for r in records], "next": None}
    if cursor is not None:
        params = {k: v for k, v in {"channel": channel, "status": status}.items() if v}
        params.update(limit=str(limit), cursor=cursor)
        body["next"] = str(request.rel_url.with_query(params))
    return respond(BroadcastPage, body)


async def get_broadcast(request: web.Request) -> web.Response:
    return respond(BroadcastOut, broadcast_json(await find_broadcast(request)))


async def patch_broadcast(request: web.Request) -> web.Response:
    record = await find_broadcast(request)
    await require_owner_or_admin(request, record.channel)
    try:
        changes = BroadcastChanges.model_validate_json(await request.read())
    except ValidationError as exc:
        raise bad_request(exc.errors()[0]["msg"]) from None
    updated = replace(record, title=changes.title)
    layout = request.app[LAYOUT]

    def save() -> None:
        write_record(layout.broadcast_dir(record.channel, record.id), updated)
        request.app[CATALOG].put(updated)

    if record.status == "live":
        raise web.HTTPConflict(text="set the title once the broadcast has ended\n")
    await asyncio.to_thread(save)
    return respond(BroadcastOut, broadcast_json(updated))


async def delete_broadcast_route(request: web.Request) -> web.Response:
    record = await find_broadcast(request)
    await require_owner_or_admin(request, record.channel)
    if record.status == "live":
        raise web.HTTPConflict(text="the broadcast is live; it can be deleted once it ends\n")
    await asyncio.to_thread(
        delete_broadcast,
        request.app[LAYOUT],
        request.app[CATALOG],
        record,
        request.app[REPLAY_CACHE],
    )
    return web.Response(status=204)


async def client(request: web.Request) -> web.Response:
    """Who the server believes the caller is: for checking a reverse proxy's set-up."""
    return respond(ClientOut, {"address": request.remote or "?", "scheme": request.scheme})


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/client", client)
    app.router.add_get("/api/streams", streams)
    app.router.add_get("/api/broadcasts", list_broadcasts)
    app.router.add_get("/api/broadcasts/{id}", get_broadcast)
    app.router.add_patch("/api/broadcasts/{id}", patch_broadcast)
    app.router.add_delete("/api/broadcasts/{id}", delete_broadcast_route)
