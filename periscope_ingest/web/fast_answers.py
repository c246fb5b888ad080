"""The fast path's responses as bytes (web/fast_path.py writes them), from LiveAnswers' decisions.

FastAnswers turns a PlainGet into a response, or None for aiohttp: the live media playlist (the
text its LiveEdge holds) and segments of the live broadcast (from memory while held there, else
a FileAnswer: read whole in a worker thread, once however many ask). What is answered, who counts
as watching, and the headers are web/live_answers.py's, the same as for aiohttp's routes; the
requests are counted under the same route labels (web/urls.py). One response per object is built
per second (its Date) and shared by every viewer; segment bodies go out by sendfile from files
kept open for that second.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from aiohttp.http import SERVER_SOFTWARE

from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.layout import DataLayout, InvalidName
from periscope_ingest.web.context import CORS_HEADERS
from periscope_ingest.web.live_answers import PLAYLIST_HEADERS, LiveAnswers, segment_headers
from periscope_ingest.web.plain_get import PlainGet
from periscope_ingest.web.urls import LIVE_PLAYLIST_ROUTE, LIVE_SEGMENT_ROUTE

# Responses built and kept for reuse during the second of their Date, oldest dropped first
# beyond this (counting the segment bodies they refer to): one stream's newest segments take
# about 2-3 MB at 3 Mb/s. A response dropped is rebuilt when asked for again, never refused.
MAX_CACHED_BYTES = 32 << 20

# Segment files kept open for sendfile within one second (the newest of each watched stream).
MAX_OPEN_SEGMENTS = 64
# Segment files larger than this are left to aiohttp's FileResponse, which streams them.
MAX_FILE_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class SegmentOut:
    """A segment response: its head, and its body both as bytes and as the file it is (sendfile)."""

    head: bytes
    body: bytes
    path: Path

    def __len__(self) -> int:
        return len(self.head) + len(self.body)


Response = bytes | SegmentOut


@dataclass(frozen=True, slots=True)
class FileAnswer:
    """A segment of a live broadcast that is not held in memory (nobody watched when it was
    made, or it is older than the newest few): its file is read in a worker thread, then sent
    as ``answer(data)``. A file that is missing or too large goes to aiohttp."""

    path: Path
    answer: Callable[[bytes], SegmentOut]


class FastAnswers:
    """Builds the response to a PlainGet from what the live streams hold, or None."""

    def __init__(self, layout: DataLayout, answers: LiveAnswers, metrics: Metrics) -> None:
        self._layout = layout
        self._answers = answers
        self._metrics = metrics
        # path -> (the object the response was built from, its Date, the response)
        self._responses: dict[str, tuple[object, str, Response]] = {}
        self._fds: dict[Path, int] = {}
        self._reads: dict[Path, asyncio.Future[bytes | None]] = {}
        self._cached_bytes = 0
        self._cache_date = ""  # the Date of every response kept
        self._date_second = 0
        self._date = ""

    def respond(self, request: PlainGet, client: str) -> Response | FileAnswer | None:
        parts = request.path.split("/")
        if len(parts) not in (4, 5) or parts[1] != "live":
            return None
        answers = self._answers
        if answers.shut_down():
            return None  # every route but a few answers 410: aiohttp's edge does that
        if len(parts) == 4:
            if parts[3] != "index.m3u8":
                return None
            live = answers.playlist_reloaded(parts[2], client)
            update = live.playlist if live is not None else None
            if update is None:
                return None
            response = self._cached(request, update)
            if response is None:
                response = self._build(request, update, *_playlist_head(update.text))
            self._metrics.count_request(LIVE_PLAYLIST_ROUTE, 200)
            return response
        if request.file_only:
            return None
        live = answers.media_requested(parts[2], parts[3])
        if live is None:
            return None
        name = parts[4]
        data = live.media(name)
        if data is not None and (cached := self._cached(request, data)) is not None:
            self._metrics.count_request(LIVE_SEGMENT_ROUTE, 200)
            return cached
        try:
            path = self._layout.find_segment(parts[2], parts[3], name)
        except InvalidName:
            return None
        if data is None:
            return FileAnswer(path, lambda data: self._file_response(live, path, data, request))
        out = self._keep_if_common(request, data, self._segment_out(path, data, request))
        self._metrics.count_request(LIVE_SEGMENT_ROUTE, 200)
        return out

    def _file_response(
        self, live: LiveEdge, path: Path, data: bytes, request: PlainGet
    ) -> SegmentOut:
        live.remember(path.name, data)  # the next viewers get it from memory
        self._metrics.count_request(LIVE_SEGMENT_ROUTE, 200)
        return self._segment_out(path, data, request)

    def _segment_out(self, path: Path, data: bytes, request: PlainGet) -> SegmentOut:
        head = self._join(_segment_head(path.name, len(data)), b"", self._now(), request)
        return SegmentOut(head, data, path)

    def read(self, path: Path) -> asyncio.Future[bytes | None]:
        """The file's bytes, read in a worker thread: once, however many viewers ask at once
        (a thousand joining a stream nobody watched yet all want its newest segments)."""
        pending = self._reads.get(path)
        if pending is None:
            pending = asyncio.get_running_loop().run_in_executor(None, _read_segment, path)
            self._reads[path] = pending
            pending.add_done_callback(lambda _: self._reads.pop(path, None))
        return pending

    def _cached(self, request: PlainGet, source: object) -> Response | None:
        """The response built from ``source`` this second for the same path, if any."""
        entry = self._responses.get(request.path)
        if entry is None or entry[0] is not source or entry[1] != self._now():
            return None
        return entry[2] if request.keep_alive and not request.http10 else None

    def _build(self, request: PlainGet, source: object, head: bytes, body: bytes) -> bytes:
        return self._keep_if_common(request, source, self._join(head, body, self._now(), request))

    def _keep_if_common(self, request: PlainGet, source: object, response: Response) -> Response:
        if request.keep_alive and not request.http10:  # the common form, worth keeping
            self._keep(request.path, (source, self._now(), response))
        return response

    def segment_fd(self, path: Path) -> int:
        """An open descriptor of a listed (so complete and never rewritten) segment file, kept
        until the second ends; os.sendfile sends from it without a copy in user space or into
        the socket buffer."""
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if len(self._fds) >= MAX_OPEN_SEGMENTS:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[path] = fd
        return fd

    def close(self) -> None:
        """Forget every response and close every file kept (each is reopened when asked for)."""
        self._responses.clear()
        self._cached_bytes = 0
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    @staticmethod
    def _join(head: bytes, body: bytes, date: str, request: PlainGet) -> bytes:
        connection = b""
        if not request.keep_alive:
            connection = b"Connection: close\r\n"
        elif request.http10:
            connection = b"Connection: keep-alive\r\n"
        return b"".join(
            (head, b"Date: ", date.encode(), b"\r\n", connection, _SERVER, b"\r\n", body)
        )

    def _keep(self, key: str, entry: tuple[object, str, Response]) -> None:
        if entry[1] != self._cache_date:
            # Responses carry their Date: those of a past second are never sent again. (Also
            # what keeps segments dropped from memory from being held here.)
            self.close()
            self._cache_date = entry[1]
        replaced = self._responses.pop(key, None)
        if replaced is not None:
            self._cached_bytes -= len(replaced[2])
        while self._responses and self._cached_bytes + len(entry[2]) > MAX_CACHED_BYTES:
            oldest = next(iter(self._responses))
            self._cached_bytes -= len(self._responses.pop(oldest)[2])
        self._responses[key] = entry
        self._cached_bytes += len(entry[2])

    def _now(self) -> str:
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(second, usegmt=True)
        return self._date


def _read_segment(path: Path) -> bytes | None:
    """A whole segment file, or None when it is missing or larger than MAX_FILE_BYTES."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                return None
            return f.read()
    except OSError:
        return None


_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()
_CORS = "".join(f"{name}: {value}\r\n" for name, value in CORS_HEADERS.items()).encode()


def _head(headers: dict[str, str], size: int) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"HTTP/1.1 200 OK\r\n{lines}Content-Length: {size}\r\n".encode() + _CORS


def _playlist_head(text: str) -> tuple[bytes, bytes]:
    body = text.encode()
    return _head(PLAYLIST_HEADERS, len(body)), body


def _segment_head(name: str, size: int) -> bytes:
    return _head(segment_headers(name), size)
