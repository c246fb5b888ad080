"""The operator's side over HTTP: the sunset phase, accounts; and the 410 gate after shutdown."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pydantic import ValidationError

from periscope_ingest.storage.accounts import AccountError
from periscope_ingest.sunset import Phase
from periscope_ingest.web.api import bad_request
from periscope_ingest.web.auth import require_admin
from periscope_ingest.web.context import ACCOUNTS, LIFECYCLE, PHASE_CHANGED, WEBHOOKS
from periscope_ingest.web.models import (
    AccountsOut,
    CredentialsOut,
    NewAccount,
    PhaseChange,
    RotatedKeyOut,
    ServiceOut,
    respond,
)

# Still answered after shutdown: monitoring, and pages that explain what happened.
_OPEN_AFTER_SHUTDOWN = {"/healthz", "/api/service"}


def shutdown_notice(request: web.Request) -> web.HTTPGone | None:
    """After shutdown, the 410 that answers this request (None while the service runs)."""
    if request.app[LIFECYCLE].phase() < Phase.SHUTDOWN or request.path in _OPEN_AFTER_SHUTDOWN:
        return None
    notice = "This service has shut down. Its recordings are no longer available here."
    if request.path.startswith("/api/"):
        return web.HTTPGone(
            text=f'{{"error": "{notice}", "phase": "shutdown"}}', content_type="application/json"
        )
    return web.HTTPGone(text=notice + "\n")


async def service_status(request: web.Request) -> web.Response:
    return respond(ServiceOut, request.app[LIFECYCLE].describe())


async def set_phase(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        change = PhaseChange.model_validate_json(await request.read())
        phase = Phase.from_label(change.phase)
        lifecycle = request.app[LIFECYCLE]
        await asyncio.to_thread(lifecycle.advance, phase)
    except (ValidationError, ValueError) as exc:
        message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise bad_request(message) from None
    request.app[PHASE_CHANGED].set()
    return respond(ServiceOut, lifecycle.describe())


def _accounts(request: web.Request):
    accounts = request.app[ACCOUNTS]
    if accounts is None:
        raise web.HTTPConflict(text="accounts are off: open_publish is set\n")
    return accounts


async def create_account(request: web.Request) -> web.Response:
    require_admin(request)
    accounts = _accounts(request)
    refusal = request.app[LIFECYCLE].registration_refusal()
    if refusal is not None:
        raise web.HTTPForbidden(text=f"{refusal}\n")
    try:
        body = NewAccount.model_validate_json(await request.read())
        credentials = await asyncio.to_thread(accounts.create, body.handle)
    except ValidationError as exc:
        raise bad_request(exc.errors()[0]["msg"]) from None
    except AccountError as exc:
        raise bad_request(str(exc)) from None
    request.app[WEBHOOKS].emit("account.created", {"handle": credentials.handle})
    # The only time these secrets are shown.
    return respond(CredentialsOut, credentials.as_json(), status=201, cache="no-store")


async def list_accounts(request: web.Request) -> web.Response:
    require_admin(request)
    accounts = await asyncio.to_thread(_accounts(request).list)
    return respond(AccountsOut, {"accounts": [a.as_json() for a in accounts]})


async def rotate_key(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        credentials = await asyncio.to_thread(
            _accounts(request).rotate_key, request.match_info["handle"]
        )
    except AccountError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    return respond(
        RotatedKeyOut,
        {"handle": credentials.handle, "stream_key": credentials.stream_key},
        cache="no-store",
    )


async def disable_account(request: web.Request) -> web.Response:
    require_admin(request)
    try:
        await asyncio.to_thread(_accounts(request).set_disabled, request.match_info["handle"])
    except AccountError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    return web.Response(status=204)


def add_service_routes(app: web.Application) -> None:
    app.router.add_get("/api/service", service_status)
    app.router.add_put("/api/service/phase", set_phase)
    app.router.add_post("/api/accounts", create_account)
    app.router.add_get("/api/accounts", list_accounts)
    app.router.add_post("/api/accounts/{handle}/rotate-key", rotate_key)
    app.router.add_post("/api/accounts/{handle}/disable", disable_account)
