"""The two requests a thousand viewers repeat, answered before aiohttp's per-request machinery.

Every viewer of a live stream reloads its media playlist about once per target duration and
fetches each new segment: at 1000 viewers that is about 1500 requests a second, almost all for
the same few objects already held in memory (StreamPipeline.playlist and .media). aiohttp spends
most of the server's CPU on them (request object, handler task, middleware, router, response
headers, and a copy of the body joined to its headers), about 2.8x what nginx needs for the same
load (docs/benchmarks.md). This module answers exactly those requests on the connection itself:
one bytes object per (playlist or segment, second), shared by every viewer, written as is.

What is answered here: ``GET /live/{channel}/index.m3u8`` without a query, while the channel is
live and its playlist is known, and ``GET /live/{channel}/{broadcast}/{segment}`` without a query,
Range or conditional header, for the live broadcast: from memory while the segment is held there,
else read whole from its file in a worker thread (a viewer who joined before anyone watched, or
who fell behind). The responses are those of web/live.py for the same requests (type, caching,
CORS, Accept-Ranges), and they are counted and mark the stream watched the same way.

Everything else, and anything unusual (other methods, a body, upgrades, escapes, folded or
malformed header lines, a head over MAX_HEAD_BYTES, a missing file, a service that has shut
down), is aiohttp's: the connection is handed over to aiohttp's own protocol, buffered bytes
included, and stays there. Correct HTTP stays in one place; this only takes the common case off
its path. A browser that loaded the page and its scripts over a connection may fetch media over
it too: those requests are aiohttp's, as before.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE

from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.metrics import Metrics, ViewerCounter
from periscope_ingest.storage.layout import DataLayout, InvalidName
from periscope_ingest.sunset import Lifecycle, Phase
from periscope_ingest.web.context import (
    CORS_HEADERS,
    LIVE_PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    SEGMENT_CACHE,
)
from periscope_ingest.web.live import PLAYLIST_ROUTE, SEGMENT_ROUTE, segment_type

# aiohttp's own line limit: a longer head is handed over, and aiohttp refuses it properly.
MAX_HEAD_BYTES = 8190
# How often connections are checked against the idle timeout (at most; less for short ones).
SWEEP_INTERVAL_S = 5.0
# Responses built and kept for reuse during the second of their Date, oldest dropped first
# beyond this (counting the segment bodies they refer to): one stream's newest segments take
# about 2-3 MB at 3 Mb/s. A response dropped is rebuilt when asked for again, never refused.
MAX_CACHED_BYTES = 32 << 20

# Segment files kept open for sendfile within one second (the newest of each watched stream).
MAX_OPEN_SEGMENTS = 64
# Segment files larger than this are left to aiohttp's FileResponse, which streams them.
MAX_FILE_BYTES = 16 << 20

_REQUEST_LINE = re.compile(rb"GET (/[A-Za-z0-9._~/-]*) HTTP/1\.([01])")
# Header lines, each ending in CRLF: a token, a colon, a value without control characters.
# obs-fold (a line starting with a space) and lines without a colon do not match.
_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# Any of these makes the request aiohttp's: a body, a protocol switch, or an expectation.
_HANDED_OVER = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))
# Fields read here: those above, Connection, and those that make a segment request the file's
# (Range and the conditional ones, answered by aiohttp's FileResponse).
_NOTABLE = re.compile(
    rb"\r\n(content-length|transfer-encoding|upgrade|expect|connection"
    rb"|range|if-range|if-none-match|if-modified-since):([^\r]*)"
)


@dataclass(slots=True)
class PlainGet:
    """A GET this module may answer: its path, and whether the connection stays open after."""

    path: str
    keep_alive: bool
    http10: bool
    file_only: bool  # has Range or a conditional header


def parse_plain_get(head: bytes) -> PlainGet | None:
    """A request head (without the blank line that ends it) as a PlainGet, or None when it is
    anything else: then aiohttp parses it, and answers or refuses it."""
    line_end = head.find(b"\r\n")
    if line_end < 0:
        request_line, fields = head, b""
    else:
        request_line, fields = head[:line_end], head[line_end:] + b"\r\n"
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None or _FIELDS.fullmatch(fields, 2) is None:
        return None
    http10 = match.group(2) == b"0"
    keep_alive = not http10
    file_only = False
    # A player's request usually has none of the fields that matter here: one search, no match.
    for field in _NOTABLE.finditer(fields.lower()):
        name = field.group(1)
        if name in _HANDED_OVER:
            return None
        if name != b"connection":
            file_only = True
            continue
        options = {option.strip() for option in field.group(2).split(b",")}
        if b"upgrade" in options:
            return None
        if b"close" in options:
            keep_alive = False
        elif b"keep-alive" in options and http10:
            keep_alive = True
    return PlainGet(match.group(1).decode("ascii"), keep_alive, http10, file_only)


@dataclass(frozen=True, slots=True)
class SegmentOut:
    """A segment held in memory: its response head, and its body both as bytes and as a file."""

    head: bytes
    body: bytes
    path: Path

    def __len__(self) -> int:
        return len(self.head) + len(self.body)


_Response = bytes | SegmentOut


@dataclass(frozen=True, slots=True)
class FileAnswer:
    """A segment of a live broadcast that is not held in memory (nobody watched when it was
    made, or it is older than the newest few): its file is read in a worker thread, then sent
    as ``answer(data)``. A file that is missing or too large goes to aiohttp."""

    path: Path
    answer: Callable[[bytes], SegmentOut]


class LiveAnswers:
    """Builds the response to a PlainGet from what the live streams hold, or None."""

    def __init__(
        self,
        layout: DataLayout,
        registry: PublisherRegistry,
        viewers: ViewerCounter,
        metrics: Metrics,
        lifecycle: Lifecycle,
    ) -> None:
        self._layout = layout
        self._registry = registry
        self._viewers = viewers
        self._metrics = metrics
        self._lifecycle = lifecycle
        # path -> (the object the response was built from, its Date, the response)
        self._responses: dict[str, tuple[object, str, _Response]] = {}
        self._fds: dict[Path, int] = {}
        self._reads: dict[Path, asyncio.Future[bytes | None]] = {}
        self._cached_bytes = 0
        self._cache_date = ""  # the Date of every response kept
        self._date_second = 0
        self._date = ""

    def respond(self, request: PlainGet, client: str) -> _Response | FileAnswer | None:
        parts = request.path.split("/")
        if len(parts) not in (4, 5) or parts[1] != "live":
            return None
        if self._lifecycle.phase() >= Phase.SHUTDOWN:
            return None  # every route but a few answers 410: aiohttp's edge does that
        live = self._registry.get(parts[2])
        if live is None:
            return None
        if len(parts) == 4:
            update = live.playlist
            if parts[3] != "index.m3u8" or update is None:
                return None
            # As in web/live.py: who reloads the playlist is watching (the viewer estimate).
            self._viewers.seen(parts[2], client, time.monotonic())
            live.watched()
            response = self._cached(request, update)
            if response is None:
                response = self._build(request, update, *_playlist_head(update.text))
            self._metrics.count_request(PLAYLIST_ROUTE, 200)
            return response
        if request.file_only or live.broadcast_id != parts[3]:
            return None
        live.watched()
        name = parts[4]
        data = live.media(name)
        if data is None:
            try:
                path = self._layout.find_segment(parts[2], parts[3], name)
            except InvalidName:
                return None
            return FileAnswer(path, lambda data: self._file_response(live, path, data, request))
        out = self._cached(request, data)
        if out is None:
            try:
                path = self._layout.find_segment(parts[2], parts[3], name)
            except InvalidName:
                return None
            head = self._join(_segment_head(name, data)[0], b"", self._now(), request)
            out = self._keep_if_common(request, data, SegmentOut(head, data, path))
        self._metrics.count_request(SEGMENT_ROUTE, 200)
        return out

    def _file_response(
        self, live: StreamPipeline, path: Path, data: bytes, request: PlainGet
    ) -> SegmentOut:
        live.remember(path.name, data)  # the next viewers get it from memory
        head = self._join(_segment_head(path.name, data)[0], b"", self._now(), request)
        self._metrics.count_request(SEGMENT_ROUTE, 200)
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

    def _cached(self, request: PlainGet, source: object) -> Any:
        """The response built from ``source`` this second for the same path, if any."""
        entry = self._responses.get(request.path)
        if entry is None or entry[0] is not source or entry[1] != self._now():
            return None
        return entry[2] if request.keep_alive and not request.http10 else None

    def _build(self, request: PlainGet, source: object, head: bytes, body: bytes) -> bytes:
        return self._keep_if_common(request, source, self._join(head, body, self._now(), request))

    def _keep_if_common(self, request: PlainGet, source: object, response: _Response) -> _Response:
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

    def _keep(self, key: str, entry: tuple[object, str, _Response]) -> None:
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


def _playlist_head(text: str) -> tuple[bytes, bytes]:
    body = text.encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {PLAYLIST_TYPE}\r\n"
        f"Cache-Control: {LIVE_PLAYLIST_CACHE}\r\nContent-Length: {len(body)}\r\n"
    ).encode() + _CORS
    return head, body


def _segment_head(name: str, data: bytes) -> tuple[bytes, bytes]:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: {segment_type(name)}\r\n"
        f"Cache-Control: {SEGMENT_CACHE}\r\nAccept-Ranges: bytes\r\n"
        f"Content-Length: {len(data)}\r\n"
    ).encode() + _CORS
    return head, data


class FastPathProtocol(asyncio.Protocol):
    """One HTTP connection: plain GETs of live media are answered here, in order (pipelined
    requests too); at the first other request the connection goes to aiohttp for good."""

    def __init__(self, site: FastPathSite) -> None:
        self._site = site
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._client = "?"
        self._paused = False
        self._reading = False  # a segment file is being read for the first buffered request
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self._client = str(peer[0])
        self.last_active = self._site.loop.time()
        self._site.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        self._answer()

    def _answer(self) -> None:
        while not (self._paused or self._reading) and self._transport is not None:
            buffer = self._buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                # Bare LF line ends are aiohttp's to judge, as is a head that keeps growing.
                if len(buffer) > MAX_HEAD_BYTES or b"\n\n" in buffer:
                    self._hand_over()
                return
            request = parse_plain_get(buffer[:end]) if end <= MAX_HEAD_BYTES else None
            response = None
            if request is not None:
                response = self._site.answers.respond(request, self._client)
            if response is None:
                self._hand_over()
                return
            assert request is not None
            if isinstance(response, FileAnswer):
                # Later requests wait in the buffer: responses go out in request order.
                self._reading = True
                read = self._site.answers.read(response.path)
                read.add_done_callback(partial(self._file_read, end, request, response))
                return
            self._send(end, request, response)

    def _file_read(
        self, end: int, request: PlainGet, answer: FileAnswer, done: asyncio.Future
    ) -> None:
        self._reading = False
        if self._transport is None:
            return
        data = None if done.cancelled() or done.exception() else done.result()
        if data is None:
            self._hand_over()  # missing (aiohttp answers 404, or waits for an LL-HLS part)
            return
        self._send(end, request, answer.answer(data))
        self._answer()

    def _send(self, end: int, request: PlainGet, response: _Response) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer = self._buffer[end + 4 :]
        self.last_active = self._site.loop.time()
        if isinstance(response, bytes):
            transport.write(response)
        else:
            self._send_segment(transport, response)
        if not request.keep_alive:
            self.close()  # after what is buffered is sent

    def _send_segment(self, transport: asyncio.Transport, out: SegmentOut) -> None:
        """As much of the body as the socket takes at once goes with sendfile, straight from
        the page cache; the rest (a slow reader) through the transport, which waits for room.
        The socket is written directly only while the transport holds nothing unsent, so the
        bytes stay in order."""
        sent = 0
        sock = transport.get_extra_info("socket")
        if sock is not None and not transport.get_write_buffer_size():
            fd = sock.fileno()
            try:
                sent = os.write(fd, out.head)
                if sent == len(out.head):
                    source = self._site.answers.segment_fd(out.path)
                    sent += os.sendfile(fd, source, 0, len(out.body))
            except BlockingIOError:
                pass
            except OSError:
                return  # the connection is gone; the transport sees it on its next read
        if sent < len(out.head):
            transport.write(out.head[sent:])
            transport.write(out.body)
        elif sent - len(out.head) < len(out.body):
            transport.write(memoryview(out.body)[sent - len(out.head) :])

    def _hand_over(self) -> None:
        transport, self._transport = self._transport, None
        self._site.connections.discard(self)
        if transport is None or transport.is_closing():
            return
        handler = self._site.aiohttp_protocol()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        buffered, self._buffer = self._buffer, b""
        if buffered:
            handler.data_received(buffered)

    def pause_writing(self) -> None:
        # A slow reader: stop reading (and so answering) until what is written drains.
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resume_reading()
            self._answer()

    def eof_received(self) -> bool:
        return False  # half-closed by the client: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._site.connections.discard(self)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._site.connections.discard(self)


class FastPathSite(web.BaseSite):
    """aiohttp's TCP site, with FastPathProtocol in front of aiohttp's own protocol."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        answers: LiveAnswers,
        idle_timeout: float,
    ) -> None:
        super().__init__(runner)
        self.answers = answers
        # The connection limit aiohttp applies as keepalive_timeout, applied here as well: a
        # connection that completes no request for this long (idle, or sending a head that never
        # ends) is closed.
        self.idle_timeout = idle_timeout
        self.connections: set[FastPathProtocol] = set()
        self._host = host
        self._port = port
        self._sweeper: asyncio.Task | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system for port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def aiohttp_protocol(self) -> asyncio.Protocol:
        server = self._runner.server
        assert server is not None
        return server()

    async def start(self) -> None:
        await super().start()  # registers the site with the runner, which stops it
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FastPathProtocol(self), self._host, self._port, backlog=self._backlog
        )
        self._sweeper = loop.create_task(self._close_idle())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            connection.close()
        self.answers.close()
        await super().stop()

    async def _close_idle(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL_S, self.idle_timeout / 2))
            stale = loop.time() - self.idle_timeout
            for connection in [c for c in self.connections if c.last_active < stale]:
                connection.close()
