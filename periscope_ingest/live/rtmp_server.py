"""The RTMP listener: taking connections in, and what they share.

RtmpServer listens on the RTMP port (and the RTMPS port, behind TLS), admits each new connection
or refuses it (max_connections_per_address, max_connections: a full server evicts the oldest
connection that has not published), keeps the server-wide budget of bytes in progress
(max_buffered_total) and the one read-pacing timer, holds what a new broadcast's pipeline is
built from (new_broadcast), and ends every broadcast on shutdown. Each connection is an
RtmpSession (rtmp_session.py): the publish flow and the media into the pipeline.
PublishPolicy and rtmp_limits() are importable from here, where the service takes them.
"""

from __future__ import annotations

import asyncio
import ssl

from periscope_ingest.config import Settings
from periscope_ingest.config_sections import RtmpSettings, TlsSettings
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.publish_decision import PublishPolicy
from periscope_ingest.live.read_pacing import ReadPacer, read_interval_s
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.rtmp_reasons import ConnectionRefusal, Refusal
from periscope_ingest.live.rtmp_session import RtmpSession
from periscope_ingest.rtmp.connection import RtmpLimits
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.continuation import ContinuedRecording, load_continued
from periscope_ingest.storage.layout import DataLayout, new_broadcast_id

__all__ = ["PublishPolicy", "RtmpServer", "TlsError", "rtmp_limits", "tls_context"]


# When the server is full, a new connection takes the place of the oldest one that has not
# published, if that one has had this long: long enough to connect and publish (a real encoder
# needs well under a second), so a burst of new connections cannot push out a publisher that is
# still starting.
EVICTABLE_AFTER_S = 2.0


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


class RtmpServer:
    """The RTMP (and RTMPS) listener; one RtmpSession per connection it admits."""

    def __init__(
        self,
        settings: Settings,
        layout: DataLayout,
        registry: PublisherRegistry,
        catalog: Catalog,
        policy: PublishPolicy,
        tls: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.settings = settings
        self._reuse_port = reuse_port  # `serve --workers`: the processes share the port
        self.layout = layout
        self.registry = registry
        self.catalog = catalog
        self.policy = policy
        self.limits = rtmp_limits(settings.rtmp)
        self.sessions: set[RtmpSession] = set()
        self._per_group: dict[str, int] = {}  # open connections per address group
        # Bytes of messages in progress on all connections (RtmpSession._in_progress summed,
        # through charge()).
        self.bytes_in_progress = 0
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._tls = tls  # for rtmps_port
        # Publishers read a few frames at a time (read_pacing.py); one timer for all of them.
        self.read_interval = read_interval_s(settings)
        self.pacer = ReadPacer(self.read_interval, settings.rtmp.read_pacing)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RtmpSession(self),
            self.settings.host,
            self.settings.rtmp_port,
            reuse_port=self._reuse_port or None,
        )
        if self.settings.rtmps_port is not None:
            # RTMPS: the same sessions behind TLS. The TLS handshake has the RTMP handshake's
            # time limit, so that a client cannot hold one open.
            self._tls_server = await loop.create_server(
                lambda: RtmpSession(self, tls=True),
                self.settings.host,
                self.settings.rtmps_port,
                ssl=self._tls,
                ssl_handshake_timeout=self.settings.rtmp.handshake_timeout,
                reuse_port=self._reuse_port or None,
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
        self.pacer.stop()
        await self.end_all_broadcasts("server shutting down")
        for server in (self._server, self._tls_server):
            if server is not None:
                await server.wait_closed()

    async def end_all_broadcasts(self, reason: str) -> None:
        """Every publisher is told (Unpublish.Success) and closed; every broadcast ends."""
        for session in list(self.sessions):
            session.close_for_shutdown(reason)
        await self.registry.end_all(reason)

    def admit(self, session: RtmpSession) -> Refusal | None:
        """Take a new connection in, or say why not. A full server makes room by closing the
        oldest connection that has not published (see EVICTABLE_AFTER_S): connections that only
        connect and ping cannot hold every slot against publishers."""
        limits = self.settings.rtmp
        if self._per_group.get(session.group, 0) >= limits.max_connections_per_address:
            return Refusal(
                ConnectionRefusal.MAX_CONNECTIONS_PER_ADDRESS,
                f"max_connections_per_address={limits.max_connections_per_address} reached",
            )
        if len(self.sessions) >= limits.max_connections:
            idle = [s for s in self.sessions if not s.publishing]
            oldest = min(idle, key=lambda s: s.opened_at, default=None)
            if oldest is None or session.opened_at - oldest.opened_at < EVICTABLE_AFTER_S:
                return Refusal(
                    ConnectionRefusal.MAX_CONNECTIONS,
                    f"max_connections={limits.max_connections} reached",
                )
            oldest.evict(
                f"max_connections={limits.max_connections} reached; a new connection"
                " takes the place of the oldest one that has not published"
            )
        self.sessions.add(session)
        self._per_group[session.group] = self._per_group.get(session.group, 0) + 1
        return None

    def charge(self, grown: int) -> str | None:
        """Count a change in one connection's bytes in progress; if it grew past
        rtmp.max_buffered_total, why that connection must close."""
        self.bytes_in_progress += grown
        budget = self.settings.rtmp.max_buffered_total
        if grown > 0 and self.bytes_in_progress > budget:
            return (
                f"max_buffered_total={budget} reached: {self.bytes_in_progress} bytes of"
                " messages in progress on all connections"
            )
        return None

    def new_broadcast(
        self, channel: str, continued: ContinuedRecording | None = None
    ) -> StreamPipeline:
        """The pipeline of a new broadcast on channel, for the session that publishes it, or of
        one another node recorded until now (``continued``, a cluster hand-over)."""
        layout = self.layout
        # A new broadcast on the channel: the previous one's live playlists must not be served as
        # this one's while its first segment is being written.
        for stale in (layout.live_playlist(channel), layout.master_playlist(channel)):
            stale.unlink(missing_ok=True)
        return StreamPipeline(
            channel,
            continued.record.id if continued is not None else new_broadcast_id(),
            layout,
            self.settings.hls,
            asyncio.get_running_loop(),
            self.catalog,
            self.policy.on_ended,
            self.policy.metrics,
            self.policy.on_file_complete,
            continued,
            self.read_interval,
        )

    async def load_continued(self, channel: str, broadcast_id: str) -> ContinuedRecording | None:
        """A cluster hand-over: the recording so far of a broadcast another node held on this
        channel, copied from the store (or found in the shared data directory)."""
        store = self.policy.recordings
        if store is None:
            return None
        return await asyncio.to_thread(load_continued, self.layout, store, channel, broadcast_id)

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
