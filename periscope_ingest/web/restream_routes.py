"""Restream targets over HTTP: the channel's owner (or the operator) adds, lists and removes
the RTMP(S) URLs its broadcasts are forwarded to. Changes apply to a live broadcast at once."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ValidationError

from periscope_ingest.live.restream import Restreamer
from periscope_ingest.storage.layout import is_channel_name
from periscope_ingest.storage.restream import RestreamError, TooManyTargets
from periscope_ingest.web.api import bad_request
from periscope_ingest.web.auth import require_owner_or_admin
from periscope_ingest.web.context import ACCOUNTS, RESTREAMER, parse_count
from periscope_ingest.web.models import (
    NewRestreamTarget,
    RestreamTargetOut,
    RestreamTargetsOut,
    respond,
)


async def _authorized(request: web.Request) -> tuple[str, Restreamer]:
    handle = request.match_info["handle"]
    restreamer = request.app[RESTREAMER]
    if restreamer is None or not is_channel_name(handle):
        raise web.HTTPNotFound(text="unknown channel\n")
    await require_owner_or_admin(request, handle)
    accounts = request.app[ACCOUNTS]
    if accounts is not None and await asyncio.to_thread(accounts.get, handle) is None:
        raise web.HTTPNotFound(text="unknown channel\n")  # only an admin gets this far
    return handle, restreamer


async def list_targets(request: web.Request) -> web.Response:
    handle, restreamer = await _authorized(request)
    targets = await asyncio.to_thread(restreamer.store.list, handle)
    return respond(
        RestreamTargetsOut, {"targets": [t.as_json() for t in targets]}, cache="no-store"
    )


async def add_target(request: web.Request) -> web.Response:
    handle, restreamer = await _authorized(request)
    try:
        body = NewRestreamTarget.model_validate_json(await request.read())
        target = await asyncio.to_thread(
            restreamer.store.add, handle, body.url, restreamer.settings.max_targets
        )
    except ValidationError as exc:
        raise bad_request(exc.errors()[0]["msg"]) from None
    except TooManyTargets as exc:
        raise web.HTTPConflict(text=f"{exc}\n") from None
    except RestreamError as exc:
        raise bad_request(str(exc)) from None
    await restreamer.targets_changed(handle)
    return respond(RestreamTargetOut, target.as_json(), status=201, cache="no-store")


async def remove_target(request: web.Request) -> web.Response:
    handle, restreamer = await _authorized(request)
    target_id = parse_count(request.match_info["id"])
    if target_id is None or not await asyncio.to_thread(restreamer.store.remove, handle, target_id):
        raise web.HTTPNotFound(text="no such restream target\n")
    await restreamer.targets_changed(handle)
    return web.Response(status=204)


def add_restream_routes(app: web.Application) -> None:
    app.router.add_get("/api/channels/{handle}/restream", list_targets)
    app.router.add_post("/api/channels/{handle}/restream", add_target)
    app.router.add_delete("/api/channels/{handle}/restream/{id}", remove_target)
