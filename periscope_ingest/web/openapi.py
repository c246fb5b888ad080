"""/api/openapi.json: the HTTP API described from the models the handlers use.

Schemas come from web/models.py, the models every JSON handler answers through; the route list
below is checked against the app's router by tests/web/test_openapi.py, so a route added without
a description fails the build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from periscope_ingest import __version__
from periscope_ingest.web import models as m

PLAYLIST = "application/vnd.apple.mpegurl"
TS = "video/mp2t"
MP4 = "video/mp4"
HTML = "text/html"
JPEG = "image/jpeg"


@dataclass(frozen=True, slots=True)
class Op:
    method: str
    path: str  # OpenAPI form: /api/broadcasts/{id}
    summary: str
    ok: type[BaseModel] | str | None = None  # JSON model, or a media type
    ok_status: int = 200
    body: type[BaseModel] | None = None
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    auth: str | None = None  # "admin" or "owner or admin"
    errors: tuple[int, ...] = field(default=())


_BROADCAST_QUERY = (
    ("channel", "string", "only this channel"),
    ("status", "string", "live, ended or interrupted"),
    ("limit", "integer", "page size, 1-500 (50)"),
    ("cursor", "string", "from the previous page's next URL"),
)
_CLIP_QUERY = (
    ("start", "number", "clip start, seconds from the start of the broadcast"),
    ("end", "number", "clip end, seconds"),
)
_LL_QUERY = (
    ("_HLS_msn", "integer", "LL-HLS blocking reload: wait for this media sequence number"),
    ("_HLS_part", "integer", "LL-HLS blocking reload: and this part of it"),
    ("_HLS_skip", "string", "YES or v2: a delta update"),
)

OPERATIONS: tuple[Op, ...] = (
    Op("GET", "/healthz", "Liveness", m.HealthOut),
    Op("GET", "/api/openapi.json", "This description", "application/json"),
    Op("GET", "/metrics", "Prometheus metrics", "text/plain"),
    Op("GET", "/api/client", "The caller's address and scheme as the server sees them (behind"
       " a reverse proxy: what its trusted X-Forwarded-For and -Proto say)", m.ClientOut),
    Op("GET", "/api/streams", "Live streams", m.StreamsOut),
    Op("GET", "/api/broadcasts", "Broadcasts, newest first", m.BroadcastPage,
       query=_BROADCAST_QUERY, errors=(400,)),
    Op("GET", "/api/broadcasts/{id}", "One broadcast", m.BroadcastOut, errors=(404,)),
    Op("PATCH", "/api/broadcasts/{id}", "Set a broadcast's title", m.BroadcastOut,
       body=m.BroadcastChanges, auth="owner or admin", errors=(400, 401, 404, 409)),
    Op("DELETE", "/api/broadcasts/{id}", "Delete a broadcast and its files", None, 204,
       auth="owner or admin", errors=(401, 404, 409)),
    Op("GET", "/api/channels/{channel}/archive.zip", "Every finished broadcast of a channel as"
       " MP4, and broadcasts.json, in one stored zip", "application/zip", auth="owner or admin"
       " (when accounts are on)", errors=(401, 404)),
    Op("GET", "/api/channels/{handle}/restream", "The channel's restream targets (URLs shown"
       " without their stream keys)", m.RestreamTargetsOut, auth="owner or admin",
       errors=(401, 404)),
    Op("POST", "/api/channels/{handle}/restream", "Forward the channel's broadcasts to an"
       " rtmp:// or rtmps:// URL (at once if live)", m.RestreamTargetOut, 201,
       body=m.NewRestreamTarget, auth="owner or admin", errors=(400, 401, 404, 409)),
    Op("DELETE", "/api/channels/{handle}/restream/{id}", "Stop forwarding to a target", None,
       204, auth="owner or admin", errors=(401, 404)),
    Op("GET", "/api/service", "The sunset phase and its dates", m.ServiceOut),
    Op("PUT", "/api/service/phase", "Move the sunset phase on", m.ServiceOut, body=m.PhaseChange,
       auth="admin", errors=(400, 401, 403)),
    Op("POST", "/api/accounts", "Create an account; its secrets are shown only now",
       m.CredentialsOut, 201, body=m.NewAccount, auth="admin", errors=(400, 401, 403, 409)),
    Op("GET", "/api/accounts", "Accounts (no secrets)", m.AccountsOut, auth="admin",
       errors=(401, 409)),
    Op("POST", "/api/accounts/{handle}/rotate-key", "A new stream key; the old one stops",
       m.RotatedKeyOut, auth="admin", errors=(401, 404)),
    Op("POST", "/api/accounts/{handle}/disable", "Refuse the account's key from now on", None,
       204, auth="admin", errors=(401, 404)),
    Op("GET", "/live/{channel}/index.m3u8", "Live media playlist", PLAYLIST, query=_LL_QUERY,
       errors=(400, 404, 503)),
    Op("GET", "/live/{channel}/master.m3u8", "Live master playlist", PLAYLIST, errors=(404,)),
    Op("GET", "/live/{channel}/poster.jpg", "A still of the live stream (its newest keyframe,"
       " refreshed every hls.poster_interval), else of the channel's last broadcast", JPEG,
       errors=(404,)),
    Op("GET", "/live/{channel}/{broadcast}/{segment}", "A live segment, part or init segment",
       TS, errors=(404,)),
    Op("GET", "/replays/{id}/index.m3u8", "Replay playlist (EVENT while live, then VOD)",
       PLAYLIST, errors=(404,)),
    Op("GET", "/replays/{id}/poster.jpg", "A still of the broadcast (a keyframe about a third"
       " in; the newest one while live)", JPEG, errors=(404,)),
    Op("GET", "/replays/{id}/{segment}", "A replay segment", TS, errors=(404,)),
    Op("GET", "/replays/{id}.mp4", "The broadcast as one MP4 (Range on finished ones)", MP4,
       query=_CLIP_QUERY, errors=(400, 404)),
    Op("GET", "/", "Home page", HTML),
    Op("GET", "/watch/{channel}", "Watch page", HTML),
    Op("GET", "/replays/{id}", "Replay page", HTML),
    Op("GET", "/channels/{handle}", "Channel page", HTML),
    Op("GET", "/static/{name}", "Page assets", "application/octet-stream", errors=(404,)),
)  # fmt: skip


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"ErrorOut": m.ErrorOut}
    for op in OPERATIONS:
        for model in (op.ok, op.body):
            if isinstance(model, type):
                found[model.__name__] = model
    return list(found.values())


def _content(model: type[BaseModel] | str) -> dict:
    if isinstance(model, str):
        return {model: {"schema": {"type": "string", "format": "binary"}}}
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}


@cache
def openapi_document() -> dict:
    models = _models()
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(op.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind},
             "description": text}
            for name, kind, text in op.query
        ]  # fmt: skip
        responses: dict[str, dict] = {}
        ok: dict = {"description": "OK" if op.ok_status != 204 else "Done"}
        if op.ok is not None:
            ok["content"] = _content(op.ok)
        responses[str(op.ok_status)] = ok
        for status in op.errors:
            responses[str(status)] = {"description": _REASONS.get(status, "Error")}
        operation: dict = {"summary": op.summary, "responses": responses}
        if parameters:
            operation["parameters"] = parameters
        if op.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(op.body)}
        if op.auth:
            operation["security"] = [{"bearer": []}]
            operation["description"] = f"Needs a bearer token: {op.auth}."
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "periscope-ingest", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_REASONS = {
    400: "Bad request (the body says why)",
    401: "A bearer token is missing or wrong",
    403: "Not allowed now (e.g. registrations closed)",
    404: "Not found",
    409: "Conflicts with the current state",
    503: "Not available within the blocking-reload wait",
}


def _path_names(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), headers={"Cache-Control": "max-age=300"})
