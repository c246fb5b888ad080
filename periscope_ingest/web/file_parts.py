"""A part of a file sent on a response, by the loop's sendfile where it has one.

asyncio's loops send a file with ``loop.sendfile`` (the kernel's sendfile: no copy through
Python). uvloop has no ``loop.sendfile`` (it raises NotImplementedError), so there a part is read
in a worker thread and written through the response, as aiohttp itself does when sendfile is
missing: a copy in user space per part, the price of the loop's lower cost everywhere else
(docs/benchmarks.md, "Seventh set"). Either way one call sends one part, which the caller bounds
with the write timeout (web/write_timeout.py).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Executor
from typing import BinaryIO

from aiohttp.abc import AbstractStreamWriter


def loop_has_sendfile(loop: asyncio.AbstractEventLoop) -> bool:
    """asyncio's loops implement loop.sendfile; uvloop's keeps the abstract one, which raises."""
    return type(loop).sendfile is not asyncio.AbstractEventLoop.sendfile


async def copy_file_part(
    writer: AbstractStreamWriter, fobj: BinaryIO, offset: int, count: int, executor: Executor
) -> None:
    """Read ``count`` bytes at ``offset`` in ``executor`` and write them (waiting until the
    transport has room again, as any response write does)."""
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(executor, os.pread, fobj.fileno(), count, offset)
    if len(data) != count:
        # The head promised Content-Length bytes: a short body would hang the client.
        raise ConnectionResetError(f"file ended {count - len(data)} bytes early")
    await writer.write(data)
