"""Who may do what over HTTP: the operator (admin token) and channel owners (their API token).

Tokens are compared in constant time (admin) or looked up by keyed hash (owners); neither is ever
logged or echoed.
"""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web

from periscope_ingest.web.context import ACCOUNTS, ADMIN_TOKEN


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthorized(message: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=f"{message}\n", headers={"WWW-Authenticate": "Bearer"})


def is_admin(request: web.Request) -> bool:
    expected = request.app[ADMIN_TOKEN]
    given = _bearer(request)
    if expected is None or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def require_admin(request: web.Request) -> None:
    if request.app[ADMIN_TOKEN] is None:
        raise web.HTTPForbidden(text="set admin_token (PERISCOPE_ADMIN_TOKEN) to allow this\n")
    if not is_admin(request):
        raise _unauthorized("an admin token is required")


async def require_owner_or_admin(request: web.Request, channel: str) -> None:
    """The channel's owner (its API token) or the operator may go on."""
    if is_admin(request):
        return
    token = _bearer(request)
    accounts = request.app[ACCOUNTS]
    if token is not None and accounts is not None:
        account = await asyncio.to_thread(accounts.by_token, token)
        if account is not None and account.handle == channel:
            return
    raise _unauthorized("the channel owner's token or an admin token is required")
