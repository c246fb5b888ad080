"""A write timeout for downloads, which aiohttp does not have.

aiohttp waits as long as it takes for a client to read: a response write waits in drain(), and a
file goes out with ``loop.sendfile``, with no timeout on either. A client that asks for a
download and never reads would hold its download slot (and, for a streamed download, a worker
thread) for as long as it keeps the connection open. The kernel's TCP_USER_TIMEOUT (set by
web/fast_path.py) cuts such clients off on Linux 5.11 and later only: older kernels keep a
zero window open for ever as long as the client answers probes, and other systems have no such
option. So every download write goes through ``within_write_timeout``: if the client takes
nothing of what waits for it for ``http_write_timeout`` seconds, its connection is aborted
(``transport.abort``: what it did not read is dropped, not kept until it reads, as close()
would) and StalledReader is raised, which frees whatever waited on it. This is nginx's
send_timeout: a limit on the time between two reads, not on the whole response.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from aiohttp import web

T = TypeVar("T")

# How often, at most, a waiting write looks for progress (less for small timeouts).
_CHECK_INTERVAL_S = 1.0


class StalledReader(ConnectionError):
    """The client read nothing for the write timeout: its connection was aborted."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"read nothing for http_write_timeout={timeout:g} s")


async def within_write_timeout(request: web.BaseRequest, write: Awaitable[T], timeout: float) -> T:
    """Await ``write`` (a response write, or a part of a file sent), resetting the clock each
    time the client takes some of what is buffered for it. Raises StalledReader after aborting
    the connection if it takes nothing for ``timeout`` seconds."""
    sending = asyncio.ensure_future(write)
    loop = asyncio.get_running_loop()
    transport = request.transport
    unsent = _unsent(transport)
    deadline = loop.time() + timeout
    check = min(_CHECK_INTERVAL_S, timeout / 4)
    try:
        while True:
            done, _ = await asyncio.wait(
                (sending,), timeout=max(0.0, min(check, deadline - loop.time()))
            )
            if done:
                return sending.result()
            now = _unsent(transport)
            if now < unsent:  # the client read some: the wait starts again
                deadline = loop.time() + timeout
            unsent = now
            if loop.time() >= deadline:
                break
    except BaseException:
        sending.cancel()
        raise
    # Stop the write first (a sendfile in progress gives the transport back), then abort.
    sending.cancel()
    await asyncio.wait((sending,))
    if transport is not None:
        transport.abort()
    raise StalledReader(timeout)


def _unsent(transport: asyncio.Transport | None) -> int:
    return transport.get_write_buffer_size() if transport is not None else 0
