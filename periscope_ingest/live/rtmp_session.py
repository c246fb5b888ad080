"""One RTMP connection: the asyncio adapter around the sans-IO ServerConnection.

An RtmpSession feeds what it reads to ServerConnection, writes back what that has to send, and
turns its events into a broadcast: the publish decision (application, key, lifecycle, callback,
capacity), the StreamPipeline claimed for the channel, every audio and video message into it,
and the ends of a publish (unpublish, takeover, writer failure, disconnect). It also keeps its
own timers and read pacing. Taking connections in, the per-address limits, eviction and the
server-wide budgets are the listener's (RtmpServer, rtmp_server.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from periscope_ingest.live.client_address import address_group
from periscope_ingest.live.publish_decision import decide_publish, shown_app
from periscope_ingest.live.registry import ChannelBusy, Publication
from periscope_ingest.live.rtmp_reasons import CloseReason, MetricLabel, PublishRefusal
from periscope_ingest.logs import log_event
from periscope_ingest.media.aac import CodecConfigError as AacConfigError
from periscope_ingest.media.avc import CodecConfigError as AvcConfigError
from periscope_ingest.media.flv import FlvError
from periscope_ingest.rtmp.connection import (
    AudioReceived,
    Connected,
    IgnoredMessage,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    ServerConnection,
    VideoReceived,
)
from periscope_ingest.rtmp.errors import LimitExceeded, ProtocolError

if TYPE_CHECKING:
    from prometheus_client import Counter

    from periscope_ingest.live.rtmp_server import RtmpServer

# The listener's logger: one name for every RTMP log line, as before the two were split.
log = logging.getLogger("periscope_ingest.live.rtmp_server")

_MEDIA_ERRORS = (FlvError, AvcConfigError, AacConfigError)


class RtmpSession(asyncio.Protocol):
    def __init__(self, server: RtmpServer, tls: bool = False) -> None:
        self._server = server
        # RTMPS connections are not paced: there pausing holds back only what the TLS layer has
        # already read and decrypted (the socket is read on), so it saves little, and uvloop's
        # TLS transport drops what it holds when the client closes meanwhile: a broadcast lost
        # its last frames and its FCUnpublish (tests/e2e/test_tls.py).
        self._paced = bool(server.read_interval) and not tls
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
        self.resting = False  # paused until the pacer's next tick (read_pacing.py, ``pause``)
        self.pacing_tried = False  # the pacer has tried this socket's low-water mark
        self.reads = 0  # data_received calls: what rtmp.read_interval_ms saves shows here
        self._tasks: set[asyncio.Task] = set()
        self._max_pending = self._settings.hls.max_pending_packets

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; not an isinstance check: uvloop's do not subclass asyncio's.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.client = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.address = str(peer[0]) if peer else "?"
        self.group = address_group(self.address)
        refusal = self._server.admit(self)
        metrics = self._server.policy.metrics
        if refusal is not None:
            # The group is what the per-address limit counted (an IPv6 client's /64).
            self._warn(
                metrics and metrics.connections_refused,
                refusal.label,
                "rtmp_refused",
                client=self.client,
                group=self.group,
                reason=refusal.reason,
            )
            transport.abort()
            self._closed = True
            return
        if metrics is not None:
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
            self._fail(f"limit exceeded: {exc}", CloseReason.LIMIT)
            return
        except ProtocolError as exc:
            self._fail(f"protocol error: {exc}", CloseReason.PROTOCOL_ERROR)
            return
        except _MEDIA_ERRORS as exc:
            self._fail(f"malformed media: {exc}", CloseReason.MALFORMED_MEDIA)
            return
        if self._count_in_progress():
            return
        self._flush()
        self._apply_backpressure()
        publication = self._publication
        # Not before the first segment is listed (how soon a broadcast is watchable is worth a
        # few reads), nor while the keyframe closing a segment is due (listing delay).
        if (
            self._paced
            and publication is not None
            and publication.pipeline.edge.playlist is not None
            and not (self._paused or self._writes_blocked or self._transport is None)
        ):
            if publication.pipeline.next_cut.due_soon():
                self._server.pacer.unpaced(self)
            else:
                self._server.pacer.after_read(self, self._transport, len(data))

    def _count_in_progress(self) -> bool:
        """Keep the server-wide count of bytes in progress (RtmpServer.charge); close this
        connection (True) if it grew past rtmp.max_buffered_total."""
        in_progress = self._conn.bytes_in_progress
        grown = in_progress - self._in_progress
        if not grown:
            return False
        self._in_progress = in_progress
        over_budget = self._server.charge(grown)
        if over_budget is not None:
            self._fail(over_budget, CloseReason.LIMIT)
            return True
        return False

    @property
    def publishing(self) -> bool:
        """A publish was asked for (and is being decided, or was accepted)."""
        return self._publish_requested

    def evict(self, reason: str) -> None:
        self._fail(reason, CloseReason.EVICTED)
        self._server.release(self)  # its slot is the new connection's now, not once it is gone

    def wake(self) -> None:
        """The pacer's tick, after a read paused until it (read_pacing.py, ``pause``)."""
        self.resting = False
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
            if not (self._paused or self.resting):
                self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._server.release(self)
        self._server.pacer.forget(self)
        self._server.charge(-self._in_progress)
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
        decision = await decide_publish(
            request,
            policy=policy,
            settings=self._settings.rtmp,
            registry=self._server.registry,
            address=self.address,
            already_published=self._publication is not None or self._channel is not None,
        )
        channel, refusal, label = decision.channel, decision.refusal, decision.label
        pipeline = None
        if refusal is None and channel is not None:
            try:
                pipeline = await self._server.registry.claim(channel)
            except ChannelBusy as busy:
                refusal = busy.reason or "this stream key is already live"
                label = PublishRefusal.BUSY
        if refusal is not None or channel is None:
            if not self._closed:
                self._refuse(request.stream_id, channel, refusal or "refused", label)
            return
        registry, event = self._server.registry, "broadcast_continued"
        if pipeline is None:  # in a cluster, one another node held may continue here
            continued = await registry.adopt(channel, self._server.load_continued)
            pipeline = self._server.new_broadcast(channel, continued)
            event = "publish_started" if continued is None else event
        else:
            pipeline.resume()
        publication = Publication(pipeline, self.client, self._drop_for_takeover)
        registry.add(channel, publication)
        await registry.announce(channel, pipeline.broadcast_id)
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

    def _refuse(
        self, stream_id: int, channel: str | None, reason: str, label: PublishRefusal
    ) -> None:
        """Refuse a publish: counted under label, logged with reason, told to the client."""
        metrics = self._server.policy.metrics
        self._warn(
            metrics and metrics.publishes_refused,
            label,
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

    def _fail(self, reason: str, label: CloseReason) -> None:
        """Close: counted under label, logged with reason."""
        metrics = self._server.policy.metrics
        self._warn(
            metrics and metrics.connections_closed,
            label,
            "rtmp_closed",
            client=self.client,
            channel=self._channel,
            reason=reason,
        )
        self._close()
        self._suspend()

    @staticmethod
    def _warn(counter: Counter | None, label: MetricLabel, event: str, **fields: object) -> None:
        """A refusal or close: its counter (if metrics are on) under its typed label, and one
        warning line with the fields in the order given (log readers match on that)."""
        if counter is not None:
            counter.labels(label).inc()
        log_event(log, logging.WARNING, event, **fields)

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
                CloseReason.HANDSHAKE_TIMEOUT,
            )
            return
        now = self._loop.time()
        idle = now - self._last_data
        if idle >= limits.idle_timeout and not self._paused:
            self._fail(
                f"no data for idle_timeout={limits.idle_timeout:g} s", CloseReason.IDLE_TIMEOUT
            )
            return
        wait = limits.idle_timeout - idle
        if not self._publish_requested:
            # Pings keep a connection from being idle, not from having to publish.
            left = self.opened_at + limits.publish_deadline - now
            if left <= 0:
                self._fail(
                    f"no publish within publish_deadline={limits.publish_deadline:g} s",
                    CloseReason.PUBLISH_DEADLINE,
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
            if not (self._writes_blocked or self.resting):
                self._transport.resume_reading()
        else:
            self._loop.call_later(0.05, self._maybe_resume)
