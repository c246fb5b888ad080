"""The two requests a thousand viewers repeat, answered before aiohttp's per-request machinery.

Every viewer of a live stream reloads its media playlist about once per target duration and
fetches each new segment: at 1000 viewers that is about 1500 requests a second, almost all for
the same few objects already held in memory (each stream's LiveEdge: its playlist and newest
media). aiohttp spends most of the server's CPU on them (request object, handler task,
middleware, router, response headers, and a copy of the body joined to its headers), about 2.8x
what nginx needs for the same load (docs/benchmarks.md). This module answers exactly those
requests on the connection itself: one bytes object per (playlist or segment, second), shared by
every viewer, written as is.

What is answered here: ``GET /live/{channel}/index.m3u8`` without a query, while the channel is
live and its playlist is known, and ``GET /live/{channel}/{broadcast}/{segment}`` without a query,
Range or conditional header, for the live broadcast: from memory while the segment is held there,
else read whole from its file in a worker thread (a viewer who joined before anyone watched, or
who fell behind). This module is the transport only: what is answered, with which headers, and
who counts as watching are decided by web/live_answers.py for both this and aiohttp's routes,
and turned into shared bytes by web/fast_answers.py.

Everything else, and anything unusual (other methods, a body, upgrades, escapes, folded or
malformed header lines, a head over MAX_HEAD_BYTES, a missing file, a service that has shut
down), is aiohttp's: the connection is handed over to aiohttp's own protocol, buffered bytes
included, and stays there. Correct HTTP stays in one place; this only takes the common case off
its path. A browser that loaded the page and its scripts over a connection may fetch media over
it too: those requests are aiohttp's, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from functools import partial
from typing import cast

from aiohttp import web

from periscope_ingest.logs import log_event
from periscope_ingest.web.fast_answers import FastAnswers, FileAnswer, Response, SegmentOut
from periscope_ingest.web.forwarded import TrustedProxies
from periscope_ingest.web.plain_get import ParsedHeads, PlainGet

# aiohttp's own line limit: a longer head is handed over, and aiohttp refuses it properly.
MAX_HEAD_BYTES = 8190
log = logging.getLogger(__name__)

_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux

# How often connections are checked against the idle timeout (at most; less for short ones).
SWEEP_INTERVAL_S = 5.0


class FastPathProtocol(asyncio.Protocol):
    """One HTTP connection: plain GETs of live media are answered here, in order (pipelined
    requests too); at the first other request the connection goes to aiohttp for good."""

    def __init__(self, site: FastPathSite) -> None:
        self._site = site
        self._clock = site.loop.time  # looked up once: it is read on every request
        self._transport: asyncio.Transport | None = None
        # The socket's descriptor, for the segment bodies written to it directly (None under
        # TLS, where the socket carries records and only the transport writes).
        self._fd: int | None = None
        self._buffer = b""
        self.client = "?"
        self._paused = False
        self._reading = False  # a segment file is being read for the first buffered request
        self.last_active = 0.0
        self.stalled_since: float | None = None  # our writes wait for the client to read
        self._unsent_when_stalled = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not an isinstance check: uvloop's do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client = str(peer[0])
        sock = transport.get_extra_info("socket")
        if sock is not None and not self._site.tls:
            self._fd = sock.fileno()
        if sock is not None and _TCP_USER_TIMEOUT is not None:
            # The kernel's own send timeout, for this connection whoever ends up answering it
            # (aiohttp, a download's sendfile): once what we sent waits untransmitted (a zero
            # window: the client reads nothing) or unacknowledged for http_write_timeout, the
            # connection is reset and whatever waits on it (a download thread) is freed.
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.IPPROTO_TCP,
                    _TCP_USER_TIMEOUT,
                    round(self._site.write_timeout * 1000),
                )
        self.last_active = self._clock()
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
            request = self._site.heads.parse(buffer[:end]) if end <= MAX_HEAD_BYTES else None
            response = None
            if request is not None:
                client = self.client
                if request.forwarded_for is not None and self._site.proxies:
                    client = self._site.proxies.client(client, request.forwarded_for)
                response = self._site.answers.respond(request, client)
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

    def _send(self, end: int, request: PlainGet, response: Response) -> None:
        transport = self._transport
        assert transport is not None
        self._buffer = self._buffer[end + 4 :]
        self.last_active = self._clock()
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
        fd = self._fd
        source = None
        if fd is not None and not transport.get_write_buffer_size():
            # Opened before a byte of the head goes out: a head promising Content-Length bytes
            # that never follow would make the next pipelined response read as this body.
            with contextlib.suppress(OSError):
                source = self._site.answers.segment_fd(out.path)
        if source is not None and fd is not None:
            try:
                sent = os.write(fd, out.head)
                if sent == len(out.head):
                    sent += os.sendfile(fd, source, 0, len(out.body))
            except OSError:
                # Nothing more was written: the rest goes from memory through the transport,
                # which also notices a connection that is gone.
                pass
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
        self.stalled_since = self._clock()
        if self._transport is not None:
            self._unsent_when_stalled = self._transport.get_write_buffer_size()
            self._transport.pause_reading()

    def note_progress(self, now: float) -> None:
        """While stalled: if the client read something since the last look, the wait for it
        starts again."""
        if self._transport is None:
            return
        unsent = self._transport.get_write_buffer_size()
        if unsent < self._unsent_when_stalled:
            self._unsent_when_stalled = unsent
            self.stalled_since = now

    def resume_writing(self) -> None:
        self._paused = False
        self.stalled_since = None
        self.last_active = self._clock()
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

    def abort(self) -> None:
        """Drop the connection and what it has not read: close() would keep both until the
        client reads, which a stalled one never does."""
        if self._transport is not None:
            self._transport.abort()
        self._transport = None
        self._site.connections.discard(self)


class FastPathSite(web.BaseSite):
    """aiohttp's TCP site, with FastPathProtocol in front of aiohttp's own protocol; with a TLS
    context, the same behind TLS (https_port), the handshake bounded by ``handshake_timeout``."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str,
        port: int,
        answers: FastAnswers,
        idle_timeout: float,
        write_timeout: float,
        proxies: TrustedProxies,
        tls: ssl.SSLContext | None = None,
        handshake_timeout: float | None = None,
        reuse_port: bool = False,
    ) -> None:
        super().__init__(runner, ssl_context=tls)
        self.answers = answers
        self.heads = ParsedHeads()  # what each request head seen recently asks for
        # The connection limit aiohttp applies as keepalive_timeout, applied here as well: a
        # connection that completes no request for this long (idle, or sending a head that never
        # ends) is closed.
        self.idle_timeout = idle_timeout
        # A client that reads nothing of what we send for this long is cut off (http_write_timeout).
        self.write_timeout = write_timeout
        self.proxies = proxies  # whose X-Forwarded-For names the client (trusted_proxies)
        self.connections: set[FastPathProtocol] = set()
        self.tls = tls
        # Until the TLS handshake is done the connection is asyncio's (FastPathProtocol and its
        # idle timeout start after it): this bounds the time a client may hold one open.
        self.handshake_timeout = handshake_timeout
        self._host = host
        self._port = port
        self._sweeper: asyncio.Task | None = None
        self._reuse_port = reuse_port  # `serve --workers`: the processes share the port

    @property
    def name(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self._host}:{self.port}"

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
        tls_options = (
            {"ssl": self.tls, "ssl_handshake_timeout": self.handshake_timeout} if self.tls else {}
        )
        self._server = await loop.create_server(
            lambda: FastPathProtocol(self),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_port=self._reuse_port or None,
            **tls_options,
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
            await asyncio.sleep(
                min(SWEEP_INTERVAL_S, self.idle_timeout / 2, self.write_timeout / 2)
            )
            now = loop.time()
            stale = now - self.idle_timeout
            stalled = now - self.write_timeout
            for connection in list(self.connections):
                if connection.stalled_since is not None:
                    # Waiting for the client to read, not idle: only the write timeout applies,
                    # counted from the last time it read anything (as nginx's send_timeout).
                    connection.note_progress(now)
                    if connection.stalled_since >= stalled:
                        continue
                    log_event(
                        log,
                        logging.INFO,
                        "http_reader_stalled",
                        client=connection.client,
                        reason=f"read nothing for http_write_timeout={self.write_timeout:g} s",
                    )
                    connection.abort()
                elif connection.last_active < stale:
                    connection.close()
