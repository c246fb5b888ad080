"""A finished file sent straight from the object store (storage.url s3://), with Range.

A node without the finished recording.mp4 on its disk sends it from the store as it reads it,
in ranged GETs of ``storage.read_chunk_kb`` on a download thread, one chunk read ahead while the
previous one goes out: the first byte leaves after one GET, memory stays at two chunks, and the
disk is not filled with a copy. What aiohttp's FileResponse gives a local file is given here
too: a single byte range (206 with Content-Range; 416 outside the file), HEAD, Content-Length,
``Accept-Ranges: bytes``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor

from aiohttp import web

from periscope_ingest.storage.objects import StoreUnavailable
from periscope_ingest.storage.store_source import StoreObject
from periscope_ingest.web.downloads import Sending
from periscope_ingest.web.write_timeout import within_write_timeout


def _byte_range(request: web.Request, size: int) -> tuple[int, int] | None:
    """[start, end) of the one range asked for (the whole file without a Range header); None
    when it cannot be satisfied."""
    try:
        asked = request.http_range
    except ValueError:  # malformed, or several ranges: aiohttp's FileResponse answers 416 too
        return None
    start, stop = asked.start, asked.stop
    if start is None and stop is None:
        return 0, size
    if start is not None and start < 0:  # bytes=-N: the last N bytes
        return (max(0, size + start), size) if size else None
    start = start or 0
    end = size if stop is None else min(stop, size)
    if start >= size or start >= end:
        return None
    return start, end


async def send_stored(
    request: web.Request,
    sending: Sending,
    stored: StoreObject,
    headers: dict[str, str],
    pool: Executor,
    write_timeout: float,
) -> web.StreamResponse:
    """Send ``stored`` (or the range asked for) inside the download slot of ``sending``.

    The first chunk is read before the head goes out, so that a store that does not answer is
    still a clean error (StoreUnavailable) rather than a body cut short."""
    size = stored.size()
    wanted = _byte_range(request, size)
    if wanted is None:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    start, end = wanted
    loop = asyncio.get_running_loop()
    chunk = stored.chunk_bytes

    def read(at: int) -> asyncio.Future[bytes]:
        future = loop.run_in_executor(pool, stored.read, at, min(at + chunk, end))
        # If the client leaves meanwhile nobody awaits it: still consume its outcome.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return future

    head_only = request.method == "HEAD"
    pending = None if head_only or start == end else read(start)
    first = await pending if pending is not None else b""
    response = web.StreamResponse(
        status=206 if "Range" in request.headers else 200,  # as FileResponse: even bytes=0-
        headers={**headers, "Accept-Ranges": "bytes"},
    )
    response.content_length = end - start
    if response.status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    sending.response = response
    await response.prepare(request)
    data, at = first, start + len(first)
    while data:
        # The next chunk is on its way while this one is written: two chunks at most in memory.
        pending = read(at) if at < end else None
        await within_write_timeout(request, response.write(data), write_timeout)
        data = await pending if pending is not None else b""
        if pending is not None and not data:
            raise StoreUnavailable(f"object store GET {stored.key!r}: shorter than {size} bytes")
        at += len(data)
    await within_write_timeout(request, response.write_eof(), write_timeout)
    return response
