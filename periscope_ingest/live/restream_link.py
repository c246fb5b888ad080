"""One restream target: its connection to the other server, re-made with backoff, and the
bounded queue between our ingest and that connection (live/restream.py is the fan-out).

The ingest side only calls offer() and restart(), which never wait: they append to the queue or
drop. Everything that waits (connecting, publishing, writing, reading the target's
acknowledgements) happens in the link's own task:

    _run: forever, one _session, then sleep retry_delay (doubling up to max_retry_delay; back to
          retry_delay after a session that went live)
    _session: connect (TLS for rtmps://), publish, then _pump (queue -> socket) and _read
          (acks, pongs, the target's errors) until either ends

Timestamps are rebased per connection so every publish at a target starts at 0, and after our
publisher reconnects (its clock restarts) they continue where they were, never going back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from typing import TYPE_CHECKING

from periscope_ingest.config_sections import RestreamSettings
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics
from periscope_ingest.rtmp.client import (
    ClientConnection,
    PublishRefused,
    ServerStatus,
    TargetAddress,
)
from periscope_ingest.rtmp.errors import ProtocolError
from periscope_ingest.storage.restream import RestreamTarget

if TYPE_CHECKING:
    from periscope_ingest.live.restream import ChannelRestream

# The logger these events had before this module was split from live/restream.py: log
# filters and the JSON lines' "logger" field stay the same.
log = logging.getLogger("periscope_ingest.live.restream")

VIDEO, AUDIO, METADATA = 1, 2, 3  # the kinds of queued messages
STATES = ("connecting", "live", "retrying", "failed")
METADATA_SIZE = 512  # what a queued onMetaData is counted as
_READ_SIZE = 65536


class TargetRefused(Exception):
    """The target answered with an error status (wrong key, stream busy, ...)."""


class TargetLink:
    """One target: its connection (re-made with backoff), its queue and its status."""

    def __init__(
        self,
        channel: str,
        target: RestreamTarget,
        settings: RestreamSettings,
        tee: ChannelRestream,
    ) -> None:
        self.id = target.id
        self.channel = channel
        self.address: TargetAddress = target.address
        self._settings = settings
        self._tee = tee
        self.state = "connecting"
        self.bytes_sent = 0
        self.drops = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._reported = (0, 0, 0)  # bytes, drops, reconnects already added to /metrics
        self._queue: deque[tuple[int, int, object]] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._live = False
        self._need_keyframe = True  # frames wait for a keyframe (after connect, drop, restart)
        self._dropping = False  # ... because the queue was full: those frames count as drops
        self._base = 0  # publisher timestamp that is 0 at the target
        self._rebase = True
        self._continue_at = 0
        self._last_out = 0
        self._stopping = False
        self._task: asyncio.Task | None = None

    # -- the ingest side (cheap, never waits) --------------------------------------------------

    def offer(self, kind: int, timestamp: int, payload: object, keyframe: bool) -> None:
        if not self._live:
            return
        size = METADATA_SIZE if kind == METADATA else len(payload)  # type: ignore[arg-type]
        limit = self._settings.queue_bytes
        if self._need_keyframe:
            if not keyframe:
                if self._dropping:
                    self.drops += 1
                return
            if self._queued_bytes + size + self._tee.headers_size() > limit:
                self.drops += 1
                return
            if self._rebase:
                self._base = timestamp - self._continue_at
                self._rebase = False
            self._need_keyframe = self._dropping = False
            self._put_headers(self._out_time(timestamp) or 0)
        elif self._queued_bytes + size > limit:
            self.drops += 1
            self._need_keyframe = self._dropping = True
            return
        if kind == METADATA:
            out = self._last_out
        else:
            out = self._out_time(timestamp)
            if out is None:
                return  # from before the keyframe this connection started at
        self._queue.append((kind, out, payload))
        self._queued_bytes += size
        self._wakeup.set()

    def restart(self) -> None:
        """Our publisher reconnected: its clock restarted; continue after the last timestamp."""
        self._need_keyframe = self._rebase = True
        self._dropping = False
        self._continue_at = self._last_out + 1

    def _out_time(self, timestamp: int) -> int | None:
        out = (timestamp - self._base) & 0xFFFFFFFF
        if out >= 0x80000000:
            return None
        if out > self._last_out:
            self._last_out = out
        return out

    def _put_headers(self, timestamp: int) -> None:
        tee = self._tee
        for kind, payload in (
            (METADATA, tee.metadata_values),
            (VIDEO, tee.video_header),
            (AUDIO, tee.audio_header),
        ):
            if payload is not None:
                self._queue.append((kind, timestamp, payload))
                self._queued_bytes += METADATA_SIZE if kind == METADATA else len(payload)

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        return {
            "id": self.id,
            "target": self.address.masked,
            "state": self.state,
            "bytes_sent": self.bytes_sent,
            "drops": self.drops,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }

    def report(self, metrics: Metrics) -> None:
        """Add what happened since the last report to the channel's counters."""
        sent, drops, reconnects = self._reported
        if self.bytes_sent > sent:
            metrics.restream_bytes.labels(self.channel).inc(self.bytes_sent - sent)
        if self.drops > drops:
            metrics.restream_drops.labels(self.channel).inc(self.drops - drops)
        if self.reconnects > reconnects:
            metrics.restream_reconnects.labels(self.channel).inc(self.reconnects - reconnects)
        self._reported = (self.bytes_sent, self.drops, self.reconnects)

    # -- the connection ------------------------------------------------------------------------

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        settings = self._settings
        delay = settings.retry_delay
        while True:
            went_live = False
            try:
                went_live = await self._session()
                reason = "the target closed the connection"
                self.state = "retrying"
            except TargetRefused as exc:
                # Still retried (a stale publisher at the target times out; a key gets fixed),
                # but shown as failed: waiting will not help unless someone acts.
                self.state = "failed"
                reason = f"refused: {exc}"
            except (OSError, TimeoutError, EOFError, ProtocolError) as exc:
                self.state = "retrying"
                reason = _describe(exc)
            self.last_error = reason
            if went_live:
                delay = settings.retry_delay
            log_event(
                log,
                logging.WARNING,
                "restream_retrying",
                channel=self.channel,
                target=self.address.masked,
                reason=reason,
                retry_in=f"{delay:g}",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.max_retry_delay)
            self.reconnects += 1

    async def _session(self) -> bool:
        """One connection: publish, then forward until it fails. True if it went live."""
        address = self.address
        settings = self._settings
        tls = ssl.create_default_context() if address.tls else None
        async with asyncio.timeout(settings.connect_timeout):
            reader, writer = await asyncio.open_connection(
                address.host, address.port, ssl=tls, server_hostname=address.host if tls else None
            )
        conn = ClientConnection(
            address.app, address.stream_name, address.tc_url, chunk_size=settings.chunk_size
        )
        try:
            writer.write(conn.data_to_send())
            async with asyncio.timeout(settings.connect_timeout):
                while not conn.publishing:
                    data = await reader.read(_READ_SIZE)
                    if not data:
                        raise EOFError("the target closed the connection before publishing")
                    self._receive(conn, data)
                    writer.write(conn.data_to_send())
            self._go_live()
            pump = asyncio.get_running_loop().create_task(self._pump(conn, writer))
            read = asyncio.get_running_loop().create_task(self._read(conn, reader, writer))
            try:
                done, _ = await asyncio.wait((pump, read), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (pump, read):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            for task in done:
                task.result()  # raises the reason the connection ended
            return True
        finally:
            was_live, self._live = self._live, False
            self._queue.clear()
            self._queued_bytes = 0
            if was_live and self._stopping:
                with contextlib.suppress(Exception):
                    conn.unpublish()  # the broadcast ended: tell the target, as OBS does
                    writer.write(conn.data_to_send())
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    def _go_live(self) -> None:
        self._live = True
        self._need_keyframe = self._rebase = True
        self._dropping = False
        self._continue_at = self._last_out = 0
        self.state = "live"
        self.last_error = None
        log_event(
            log, logging.INFO, "restream_live", channel=self.channel, target=self.address.masked
        )

    def _receive(self, conn: ClientConnection, data: bytes) -> None:
        for event in conn.receive_data(data):
            if isinstance(event, PublishRefused):
                raise TargetRefused(f"{event.code} {event.description}".strip())
            if isinstance(event, ServerStatus) and (
                event.level == "error" or "Unpublish" in event.code
            ):
                raise EOFError(f"the target ended the stream: {event.code}")

    async def _read(
        self, conn: ClientConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                raise EOFError("the target closed the connection")
            self._receive(conn, data)
            if out := conn.data_to_send():
                writer.write(out)  # acknowledgements, pongs

    async def _pump(self, conn: ClientConnection, writer: asyncio.StreamWriter) -> None:
        queue = self._queue
        wakeup = self._wakeup
        while True:
            if not queue:
                wakeup.clear()
                await wakeup.wait()
                continue
            while queue:
                kind, timestamp, payload = queue.popleft()
                if kind == VIDEO:
                    conn.send_video(timestamp, payload)  # type: ignore[arg-type]
                    self._queued_bytes -= len(payload)  # type: ignore[arg-type]
                elif kind == AUDIO:
                    conn.send_audio(timestamp, payload)  # type: ignore[arg-type]
                    self._queued_bytes -= len(payload)  # type: ignore[arg-type]
                else:
                    conn.send_metadata(timestamp, payload)  # type: ignore[arg-type]
                    self._queued_bytes -= METADATA_SIZE
            data = conn.data_to_send()
            writer.write(data)
            self.bytes_sent += len(data)
            await writer.drain()  # waits only while the socket's buffer is over its mark


def _describe(exc: BaseException) -> str:
    """A reason for the status and the log: never the URL (it holds the stream key)."""
    if isinstance(exc, TimeoutError):
        return "timed out connecting or starting to publish"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc) or type(exc).__name__
    return text[:200]
