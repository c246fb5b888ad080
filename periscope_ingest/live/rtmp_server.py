"""The thin asyncio adapter around the sans-IO RTMP connection: sockets, timers, publishing.

One RtmpSession per TCP connection. It feeds bytes to ServerConnection, writes back what it has to
send, and turns publish events into a StreamPipeline registered for the channel.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from periscope_ingest.config import RtmpSettings, Settings, TlsSettings
from periscope_ingest.live.client_address import address_group
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.publish_auth import PublishCallback
from periscope_ingest.live.registry import ChannelBusy, Publication, PublisherRegistry
from periscope_ingest.logs import log_event
from periscope_ingest.media.aac import CodecConfigError as AacConfigError
from periscope_ingest.media.avc import CodecConfigError as AvcConfigError
from periscope_ingest.media.flv import FlvError
from periscope_ingest.metrics import Metrics
from periscope_ingest.rtmp.connection import (
    AudioReceived,
    Connected,
    IgnoredMessage,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    RtmpLimits,
    ServerConnection,
    VideoReceived,
)
from periscope_ingest.rtmp.errors import LimitExceeded, ProtocolError
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog
from periscope_ingest.storage.layout import DataLayout, is_channel_name, new_broadcast_id
from periscope_ingest.sunset import Lifecycle

log = logging.getLogger(__name__)

_MEDIA_ERRORS = (FlvError, AvcConfigError, AacConfigError)

# When the server is full, a new connection takes the place of the oldest one that has not
# published, if that one has had this long: long enough to connect and publish (a real encoder
# needs well under a second), so a burst of new connections cannot push out a publisher that is
# still starting.
EVICTABLE_AFTER_S = 2.0
# Client-chosen names (the RTMP application) are shown at most this long in logs.
SHOWN_NAME_CHARS = 40


class TlsError(Exception):
    """The certificate or key cannot be used; the message names the file and why."""


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else None
        if isinstance(exc, ssl.SSLError):
            why = "not a PEM certificate chain and its private key"
        raise TlsError(
            f"cannot use tls.cert_file {tls.cert_file} with tls.key_file {tls.key_file}:"
            f" {why or exc}"
        ) from None
    return context


def rtmp_limits(rtmp: RtmpSettings) -> RtmpLimits:
    """The sans-IO connection's limits, from the settings (their one source)."""
    return RtmpLimits(
        max_chunk_size=rtmp.max_chunk_size,
        max_message_size=rtmp.max_message_size,
        max_chunk_streams=rtmp.max_chunk_streams,
        max_command_size=rtmp.max_command_size,
        max_chunk_streams_before_publish=rtmp.max_chunk_streams_before_publish,
        max_buffered_bytes=rtmp.max_buffered_per_connection,
        out_chunk_size=rtmp.out_chunk_size,
        window_ack_size=rtmp.window_ack_size,
    )


def shown_app(app: str) -> str:
    """The application name as logs show it: its first path component only. Users paste the
    whole URL with their stream key (rtmp://host/live/KEY) into OBS's Server field; whatever
    follows the first '/' or '?' may be a secret."""
    head = app.split("/", 1)[0].split("?", 1)[0][:SHOWN_NAME_CHARS]
    return head if head == app else f"{head}/…"


@dataclass(frozen=True, slots=True)
class PublishPolicy:
    """Who may publish: accounts (or any key with open_publish) while the service accepts it."""

    lifecycle: Lifecycle
    accounts: AccountStore | None  # None: open publishing, the channel is the key
    on_started: Callable[[StreamPipeline], None] | None = None
    on_ended: Callable[[BroadcastRecord], None] | None = None
    metrics: Metrics | None = None
    publish_callback: PublishCallback | None = None  # auth.publish_url, after the checks above


class RtmpServer:
    def __init__(
        self,
        settings: Settings,
        layout: DataLayout,
        registry: PublisherRegistry,
        catalog: Catalog,
        policy: PublishPolicy,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.registry = registry
        self.catalog = catalog
        self.policy = policy
        self.limits = rtmp_limits(settings.rtmp)
        self.sessions: set[RtmpSession] = set()
        self._per_group: dict[str, int] = {}  # open connections per address group
        # Bytes of messages in progress on all connections (RtmpSession._in_progress summed).
        self.bytes_in_progress = 0
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._tls = tls  # for rtmps_port
        # Publishers that have read and wait for the next tick (see RtmpSession._rest); one
        # timer for all of them.
        self.read_interval = settings.rtmp.read_interval_ms / 1000
        self._resting: list[RtmpSession] = []
        self._tick: asyncio.TimerHandle | None = None

    def rest(self, session: RtmpSession) -> None:
        self._resting.append(session)
        if self._tick is None:
            loop = asyncio.get_running_loop()
            self._tick = loop.call_later(self.read_interval, self._wake_resting)

    def _wake_resting(self) -> None:
        self._tick = None
        resting, self._resting = self._resting, []
        for session in resting:
            session.wake()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RtmpSession(self), self.settings.host, self.settings.rtmp_port
        )
        if self.settings.rtmps_port is not None:
            # RTMPS: the same sessions behind TLS. The TLS handshake has the RTMP handshake's
            # time limit, so that a client cannot hold one open.
            self._tls_server = await loop.create_server(
                lambda: RtmpSession(self),
                self.settings.host,
                self.settings.rtmps_port,
                ssl=self._tls,
                ssl_handshake_timeout=self.settings.rtmp.handshake_timeout,
            )

    @property
    def tls_port(self) -> int | None:
        if self._tls_server is None:
            return None
        return self._tls_server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting, end every live stream cleanly (ENDLIST), close every connection."""
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        await self.end_all_broadcasts("server shutting down")
        for server in (self._server, self._tls_server):
            if server is not None:
                await server.wait_closed()

    async def end_all_broadcasts(self, reason: str) -> None:
        """Every publisher is told (Unpublish.Success) and closed; every broadcast ends."""
        for session in list(self.sessions):
            session.close_for_shutdown(reason)
        await self.registry.end_all(reason)

    def connections_from(self, group: str) -> int:
        return self._per_group.get(group, 0)

    def admit(self, session: RtmpSession) -> tuple[str, str] | None:
        """Take a new connection in, or say why not: (metric label, reason). A full server makes
        room by closing the oldest connection that has not published (see EVICTABLE_AFTER_S):
        connections that only connect and ping cannot hold every slot against publishers."""
        limits = self.settings.rtmp
        if self.connections_from(session.group) >= limits.max_connections_per_address:
            return (
                "max_connections_per_address",
                f"max_connections_per_address={limits.max_connections_per_address} reached",
            )
        if len(self.sessions) >= limits.max_connections:
            idle = [s for s in self.sessions if not s.publishing]
            oldest = min(idle, key=lambda s: s.opened_at, default=None)
            if oldest is None or session.opened_at - oldest.opened_at < EVICTABLE_AFTER_S:
                return "max_connections", f"max_connections={limits.max_connections} reached"
            oldest.evict(
                f"max_connections={limits.max_connections} reached; a new connection"
                " takes the place of the oldest one that has not published"
            )
        self.sessions.add(session)
        self._per_group[session.group] = self._per_group.get(session.group, 0) + 1
        return None

    def release(self, session: RtmpSession) -> None:
        """The connection no longer holds a slot (closed, or being closed after eviction)."""
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        left = self._per_group[session.group] - 1
        if left:
            self._per_group[session.group] = left
        else:
            del self._per_group[session.group]
        if (metrics := self.policy.metrics) is not None:
            metrics.connections.dec()


class RtmpSession(asyncio.Protocol):
    def __init__(self, server: RtmpServer) -> None:
        self._server = server
        self._settings = server.settings
        self._conn = ServerConnection(server.limits)
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.client = "?"
        self.address = "?"
        self.group = "?"  # what the per-address limit counts this client as
        self.opened_at = self._loop.time()
        self._publish_requested = False
        self._in_progress = 0  # this connection's share of RtmpServer.bytes_in_progress
        self._publication: Publication | None = None
        self._channel: str | None = None
        self._stream_id: int | None = None
        self._last_data = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._connected = False
        self._closed = False
        self._paused = False
        self._writes_blocked = False
        self._resting = False
        self.reads = 0  # data_received calls: what rtmp.read_interval_ms saves shows here
        self._tasks: set[asyncio.Task] = set()
        self._max_pending = self._settings.hls.max_pending_packets

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.address = str(peer[0]) if peer else "?"
        self.group = address_group(self.address)
        refusal = self._server.admit(self)
        if refusal is not None:
            label, reason = refusal
            # The group is what the per-address limit counted (an IPv6 client's /64).
            log_event(
                log,
                logging.WARNING,
                "rtmp_refused",
                client=self.client,
                group=self.group,
                reason=reason,
            )
            if (metrics := self._server.policy.metrics) is not None:
                metrics.connections_refused.labels(label).inc()
            transport.abort()
            self._closed = True
            return
        if (metrics := self._server.policy.metrics) is not None:
            metrics.connections.inc()
        self._arm_timer(self._settings.rtmp.handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.reads += 1
        self._last_data = self._loop.time()
        try:
            for event in self._conn.receive_data(data):
                kind = type(event)
                if kind is VideoReceived or kind is AudioReceived:
                    # Nearly every event: handled inline (one publication lookup per frame).
                    publication = self._publication
                    if publication is not None and event.stream_id == self._stream_id:
                        if kind is VideoReceived:
                            publication.pipeline.video(event.timestamp, event.payload)
                        else:
                            publication.pipeline.audio(event.timestamp, event.payload)
                else:
                    self._handle(event)
        except LimitExceeded as exc:
            self._fail(f"limit exceeded: {exc}", "limit")
            return
        except ProtocolError as exc:
            self._fail(f"protocol error: {exc}", "protocol_error")
            return
        except _MEDIA_ERRORS as exc:
            self._fail(f"malformed media: {exc}", "malformed_media")
            return
        if self._count_in_progress():
            return
        self._flush()
        self._apply_backpressure()
        publication = self._publication
        # Not before the first segment is listed: how soon a broadcast is watchable after it
        # starts is worth the few reads of its first seconds.
        if (
            publication is not None
            and publication.pipeline.edge.playlist is not None
            and self._server.read_interval
        ):
            self._rest()

    def _count_in_progress(self) -> bool:
        """Keep the server-wide count of bytes in progress; close this connection (True) if it
        grew past rtmp.max_buffered_total."""
        in_progress = self._conn.bytes_in_progress
        grown = in_progress - self._in_progress
        if not grown:
            return False
        server = self._server
        server.bytes_in_progress += grown
        self._in_progress = in_progress
        budget = self._settings.rtmp.max_buffered_total
        if grown > 0 and server.bytes_in_progress > budget:
            self._fail(
                f"max_buffered_total={budget} reached: {server.bytes_in_progress} bytes of"
                " messages in progress on all connections",
                "limit",
            )
            return True
        return False

    @property
    def publishing(self) -> bool:
        """A publish was asked for (and is being decided, or was accepted)."""
        return self._publish_requested

    def evict(self, reason: str) -> None:
        self._fail(reason, "evicted")
        self._server.release(self)  # its slot is the new connection's now, not once it is gone

    def _rest(self) -> None:
        """A publisher's encoder sends each frame as it is made (about 77 writes a second for
        30 fps video with AAC), and every read costs asyncio's and the kernel's per-read work
        whatever it carries: after a read, the connection waits for the server's next tick
        (rtmp.read_interval_ms) and then reads what arrived meanwhile in one go."""
        if self._resting or self._paused or self._writes_blocked or self._transport is None:
            return
        self._resting = True
        self._transport.pause_reading()
        self._server.rest(self)

    def wake(self) -> None:
        self._resting = False
        if not (self._closed or self._paused or self._writes_blocked) and self._transport:
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        # A client that sends but does not read (pings, commands) would otherwise grow our
        # write buffer without bound: stop reading from it until it reads.
        if self._transport is not None:
            self._writes_blocked = True
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._writes_blocked = False
            if not (self._paused or self._resting):
                self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._server.release(self)
        self._server.bytes_in_progress -= self._in_progress
        self._in_progress = 0
        self._suspend()

    # -- events -----------------------------------------------------------------------------

    def _handle(self, event: object) -> None:
        """Every event but audio and video (see data_received)."""
        if isinstance(event, MetadataReceived):
            if self._publication is not None:
                self._publication.pipeline.metadata(event.values)
        elif isinstance(event, Connected):
            self._connected = True
            self._check_timeout()  # re-armed for the idle timeout and the publish deadline
            log_event(
                log, logging.INFO, "rtmp_connected", client=self.client, app=shown_app(event.app)
            )
        elif isinstance(event, PublishRequested):
            self._publish_requested = True
            self._spawn(self._publish(event))
        elif isinstance(event, PublishStopped):
            publication = self._publication
            if publication is not None and self._channel and event.stream_id == self._stream_id:
                self._server.registry.end(
                    self._channel, publication, f"publisher sent {event.reason}"
                )
                self._publication = None
        elif isinstance(event, IgnoredMessage):
            log_event(
                log, logging.DEBUG, "rtmp_ignored", client=self.client, reason=event.description
            )

    async def _publish(self, request: PublishRequested) -> None:
        policy = self._server.policy
        channel: str | None = None
        refusal = None
        category = "other"  # the metric label of a refusal
        if self._publication is not None or self._channel is not None:
            refusal, category = "this connection already published", "repeated"
        elif request.app != self._settings.rtmp.app:
            refusal = (
                f"unknown application {shown_app(request.app)!r};"
                f" publish to /{self._settings.rtmp.app}"
            )
            category = "wrong_app"
        elif (closed := policy.lifecycle.publish_refusal()) is not None:
            refusal, category = closed, "broadcasts_closed"
        elif policy.accounts is None:
            if is_channel_name(request.name):
                channel = request.name
            elif policy.publish_callback is None:  # else the callback may name the channel
                refusal, category = "stream keys are 1-64 letters, digits, '-' or '_'", "bad_key"
        else:
            account = await asyncio.to_thread(policy.accounts.by_stream_key, request.name)
            if account is None:
                # Never echo or log the key: the reason says what, not which.
                refusal, category = "unknown, rotated or disabled stream key", "bad_key"
            else:
                channel = account.handle
        if refusal is None and policy.publish_callback is not None:
            verdict = await policy.publish_callback.decide(
                app=request.app,
                key=request.name,
                channel=channel,
                client=self.address,
                query=request.query,
            )
            refusal, channel = verdict.refusal, verdict.channel
            category = "callback"
        live = len(self._server.registry.live())
        if refusal is None and live >= self._settings.rtmp.max_publishers:
            refusal = f"the server is full (max_publishers={self._settings.rtmp.max_publishers})"
            category = "full"
        pipeline = None
        if refusal is None and channel is not None:
            try:
                pipeline = await self._server.registry.claim(channel)
            except ChannelBusy:
                refusal, category = "this stream key is already live", "busy"
        if refusal is not None or channel is None:
            if not self._closed:
                self._refuse(request.stream_id, channel, refusal or "refused", category)
            return
        registry = self._server.registry
        if pipeline is None:
            pipeline = self._new_broadcast(channel)
            event = "publish_started"
        else:
            pipeline.resume()
            event = "broadcast_continued"
        publication = Publication(pipeline, self.client, self._drop_for_takeover)
        registry.add(channel, publication)
        pipeline.on_writer_failed = self._writer_failed
        self._publication = publication
        self._channel = channel
        self._stream_id = request.stream_id
        if self._closed:  # the publisher left while we were deciding
            registry.suspend(channel, publication)
            return
        self._conn.accept_publish(request.stream_id)
        self._flush()
        log_event(
            log,
            logging.INFO,
            event,
            channel=channel,
            broadcast=pipeline.broadcast_id,
            client=self.client,
        )
        if event == "publish_started" and policy.on_started is not None:
            policy.on_started(pipeline)

    def _new_broadcast(self, channel: str) -> StreamPipeline:
        layout = self._server.layout
        # A new broadcast on the channel: the previous one's live playlists must not be served as
        # this one's while its first segment is being written.
        for stale in (layout.live_playlist(channel), layout.master_playlist(channel)):
            stale.unlink(missing_ok=True)
        return StreamPipeline(
            channel,
            new_broadcast_id(),
            layout,
            self._settings.hls,
            self._loop,
            self._server.catalog,
            self._server.policy.on_ended,
            self._server.policy.metrics,
        )

    def _refuse(self, stream_id: int, channel: str | None, reason: str, category: str) -> None:
        """Refuse a publish; ``category`` is the bounded metric label for ``reason``."""
        if (metrics := self._server.policy.metrics) is not None:
            metrics.publishes_refused.labels(category).inc()
        log_event(
            log,
            logging.WARNING,
            "publish_refused",
            channel=channel,
            client=self.client,
            reason=reason,
        )
        self._conn.reject_publish(stream_id, reason)
        self._flush()
        self._close()

    # -- ending -----------------------------------------------------------------------------

    def close_for_shutdown(self, reason: str) -> None:
        """Tell the publisher we stop (Unpublish.Success) and close; the registry ends streams."""
        if self._publication is not None and self._stream_id is not None and not self._closed:
            self._conn.stop_publish(self._stream_id, reason)
            self._flush()
        self._close()

    async def _drop_for_takeover(self, reason: str) -> None:
        log_event(
            log, logging.INFO, "publisher_replaced", channel=self._channel, client=self.client
        )
        self._close()
        self._suspend()

    def _writer_failed(self, reason: str) -> None:
        """What this publisher sends can no longer be recorded: say so with an error status (the
        encoder reconnects, and starts a new broadcast), end the broadcast, close."""
        publication, self._publication = self._publication, None
        if publication is None or self._channel is None:
            return
        log_event(
            log,
            logging.ERROR,
            "publish_failed",
            channel=self._channel,
            broadcast=publication.pipeline.broadcast_id,
            client=self.client,
            reason=reason,
        )
        if self._stream_id is not None and not self._closed:
            self._conn.reject_publish(self._stream_id, reason, code="NetStream.Publish.Failed")
            self._flush()
        self._server.registry.end(self._channel, publication, reason)
        self._close()

    def _suspend(self) -> None:
        """The connection is gone without an unpublish: the broadcast waits for a reconnect."""
        publication, self._publication = self._publication, None
        if publication is not None and self._channel is not None:
            self._server.registry.suspend(self._channel, publication)
            log_event(
                log,
                logging.INFO,
                "publisher_gone",
                channel=self._channel,
                broadcast=publication.pipeline.broadcast_id,
                client=self.client,
            )

    def _fail(self, reason: str, category: str) -> None:
        """Close with a log line; ``category`` is the bounded metric label for ``reason``."""
        if (metrics := self._server.policy.metrics) is not None:
            metrics.connections_closed.labels(category).inc()
        log_event(
            log,
            logging.WARNING,
            "rtmp_closed",
            client=self.client,
            channel=self._channel,
            reason=reason,
        )
        self._close()
        self._suspend()

    def _close(self) -> None:
        if not self._closed and self._transport is not None:
            self._closed = True
            self._transport.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _flush(self) -> None:
        out = self._conn.data_to_send()
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(out)

    def _spawn(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _arm_timer(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(seconds, self._check_timeout)

    def _check_timeout(self) -> None:
        if self._closed:
            return
        limits = self._settings.rtmp
        if not self._connected:
            limit = limits.handshake_timeout
            self._fail(
                f"no handshake and connect within handshake_timeout={limit:g} s",
                "handshake_timeout",
            )
            return
        now = self._loop.time()
        idle = now - self._last_data
        if idle >= limits.idle_timeout and not self._paused:
            self._fail(f"no data for idle_timeout={limits.idle_timeout:g} s", "idle_timeout")
            return
        wait = limits.idle_timeout - idle
        if not self._publish_requested:
            # Pings keep a connection from being idle, not from having to publish.
            left = self.opened_at + limits.publish_deadline - now
            if left <= 0:
                self._fail(
                    f"no publish within publish_deadline={limits.publish_deadline:g} s",
                    "publish_deadline",
                )
                return
            wait = min(wait, left)
        self._arm_timer(max(0.05, wait))

    def _apply_backpressure(self) -> None:
        """Stop reading while the disk writer is behind, so memory stays bounded."""
        publication = self._publication
        if publication is None or self._paused or self._transport is None:
            return
        if publication.pipeline.backlog() > self._max_pending:
            self._paused = True
            self._transport.pause_reading()
            self._loop.call_later(0.05, self._maybe_resume)

    def _maybe_resume(self) -> None:
        publication = self._publication
        if self._closed or publication is None or self._transport is None:
            return
        if publication.pipeline.backlog() <= self._max_pending // 2:
            self._paused = False
            self._last_data = self._loop.time()
            if not (self._writes_blocked or self._resting):
                self._transport.resume_reading()
        else:
            self._loop.call_later(0.05, self._maybe_resume)
