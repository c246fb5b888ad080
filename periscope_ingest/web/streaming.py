"""Sending what a blocking producer writes, as it writes it, with bounded memory.

Exports run in a worker thread and call ``write(bytes)``; each chunk crosses to the event loop
through a small bounded queue, so a slow client slows the producer down instead of filling memory,
and a client that goes away stops the producer at its next write. A client that stops reading is cut
off after the write timeout (web/write_timeout.py), which stops the producer the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from aiohttp import web

from periscope_ingest.web.write_timeout import within_write_timeout

T = TypeVar("T")

_QUEUE_CHUNKS = 8  # chunks in flight between the thread and the socket
_COALESCE = 256 * 1024  # small writes (zip headers, MP4 boxes) are sent together


class ClientGone(Exception):
    """The HTTP client closed the connection: the producer stops."""


_DONE = object()


async def stream_from_thread(
    response: web.StreamResponse,
    produce: Callable[[Callable[[bytes], None]], T],
    pool: Executor,
    request: web.BaseRequest,
    write_timeout: float,
) -> T:
    """Run ``produce(write)`` in a thread of ``pool``, sending everything it writes through
    ``response`` (prepared for ``request``), each write within ``write_timeout``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue(_QUEUE_CHUNKS)
    gone = False
    pending = bytearray()

    def put(item: object) -> None:
        if gone:
            raise ClientGone()
        asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

    def write(data: bytes) -> None:
        pending.extend(data)
        if len(pending) >= _COALESCE:
            put(bytes(pending))
            pending.clear()

    def run() -> T:
        try:
            result = produce(write)
            if pending:
                put(bytes(pending))
            return result
        finally:
            if not gone:
                asyncio.run_coroutine_threadsafe(queue.put(_DONE), loop).result()

    producer = loop.run_in_executor(pool, run)
    # If the client leaves, nobody awaits the producer: still consume its outcome.
    producer.add_done_callback(lambda f: f.cancelled() or f.exception())
    try:
        while (chunk := await queue.get()) is not _DONE:
            assert isinstance(chunk, bytes)
            await within_write_timeout(request, response.write(chunk), write_timeout)
    except BaseException:
        gone = True
        while not queue.empty():  # unblock a producer waiting for room
            queue.get_nowait()
        raise
    return await producer
