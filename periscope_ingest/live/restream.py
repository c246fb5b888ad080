"""Restreaming: a live broadcast forwarded, as it arrives, to other RTMP(S) servers.

What nginx-rtmp's ``push`` and SRS's ``forward`` do. No transcoding: the FLV tag bodies the
publisher sent are re-chunked by rtmp/client.ClientConnection, one connection per target.

    StreamPipeline.video/audio/metadata --(only when the channel has targets)--> ChannelRestream
        --> TargetLink.offer (per target: a bounded queue) --> its own task writes to the socket

The ingest path never waits for a target: offer() only appends to a queue. A target that
cannot keep up has its queue fill to restream.queue_bytes; from then on its frames are dropped
(and counted) until the next keyframe that fits, which is sent after the stream's sequence
headers and metadata, as is the first keyframe after every (re)connection. A target that drops
is reconnected after restream.retry_delay, doubling up to restream.max_retry_delay.

Timestamps are rebased per connection so every publish at a target starts at 0, and after our
publisher reconnects (its clock restarts) they continue where they were, never going back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from periscope_ingest.config_sections import RestreamSettings
from periscope_ingest.logs import log_event
from periscope_ingest.media.ingest import video_codec, video_record
from periscope_ingest.metrics import Metrics
from periscope_ingest.rtmp.client import (
    ClientConnection,
    PublishRefused,
    ServerStatus,
    TargetAddress,
)
from periscope_ingest.rtmp.errors import ProtocolError
from periscope_ingest.storage.restream import RestreamStore, RestreamTarget

if TYPE_CHECKING:
    from periscope_ingest.live.pipeline import StreamInfo, StreamPipeline
    from periscope_ingest.live.registry import PublisherRegistry

log = logging.getLogger(__name__)

VIDEO, AUDIO, METADATA = 1, 2, 3
STATES = ("connecting", "live", "retrying", "failed")
_METADATA_SIZE = 512  # what a queued onMetaData is counted as
_READ_SIZE = 65536


def is_video_sequence_header(payload: bytes) -> bool:
    first = payload[0]
    if first & 0x80:  # Enhanced RTMP: packet type SequenceStart
        return first & 0x0F == 0
    # Legacy AVC (7), and the HEVC (12) and AV1 (13) ids some encoders use the same way.
    return first & 0x0F in (7, 12, 13) and len(payload) > 1 and payload[1] == 0


def is_audio_sequence_header(payload: bytes) -> bool:
    first = payload[0]
    if first >> 4 == 10:  # AAC: packet type 0
        return len(payload) > 1 and payload[1] == 0
    if first >> 4 == 9:  # Enhanced RTMP audio: SequenceStart
        return first & 0x0F == 0
    return False


def _video_header_from(info: StreamInfo) -> bytes | None:
    """An FLV sequence header rebuilt from the parsed configuration (targets added mid-way)."""
    if info.video is None:
        return None
    codec = video_codec(info.video)
    record = video_record(info.video)
    if codec == "avc1":
        return b"\x17\x00\x00\x00\x00" + record
    return bytes((0x90,)) + codec.encode() + record  # keyframe, SequenceStart, FourCC


def _audio_header_from(info: StreamInfo) -> bytes | None:
    return b"\xaf\x00" + info.audio.asc if info.audio is not None else None


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
        size = _METADATA_SIZE if kind == METADATA else len(payload)  # type: ignore[arg-type]
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
                self._queued_bytes += _METADATA_SIZE if kind == METADATA else len(payload)

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
                    self._queued_bytes -= _METADATA_SIZE
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


class ChannelRestream:
    """The fan-out for one live broadcast: remembers its sequence headers and metadata for
    targets that (re)connect, and offers every message to every target."""

    def __init__(
        self,
        channel: str,
        settings: RestreamSettings,
        metrics: Metrics,
        on_task: Callable[[asyncio.Task], None],
    ) -> None:
        self.channel = channel
        self._settings = settings
        self._metrics = metrics
        self._on_task = on_task
        self.links: dict[int, TargetLink] = {}
        self._offer_to: tuple[TargetLink, ...] = ()
        self.video_header: bytes | None = None
        self.audio_header: bytes | None = None
        self.metadata_values: dict | None = None
        self._has_video = False
        self.closed = False

    def seed(self, info: StreamInfo) -> None:
        """Attached mid-broadcast: take the headers from what the pipeline already parsed."""
        self.video_header = _video_header_from(info)
        self.audio_header = _audio_header_from(info)
        self._has_video = info.video is not None
        self.metadata_values = dict(info.metadata) or None

    def headers_size(self) -> int:
        return (
            len(self.video_header or b"")
            + len(self.audio_header or b"")
            + (_METADATA_SIZE if self.metadata_values else 0)
        )

    # -- from StreamPipeline ---------------------------------------------------------------

    def video(self, timestamp: int, payload: bytes) -> None:
        if not payload:
            return
        self._has_video = True
        if is_video_sequence_header(payload):
            self.video_header = payload
            keyframe = False
        else:
            keyframe = (payload[0] >> 4) & 7 == 1
        for link in self._offer_to:
            link.offer(VIDEO, timestamp, payload, keyframe)

    def audio(self, timestamp: int, payload: bytes) -> None:
        if not payload:
            return
        header = is_audio_sequence_header(payload)
        if header:
            self.audio_header = payload
        # Without video, any audio frame is a place to start.
        keyframe = not header and not self._has_video
        for link in self._offer_to:
            link.offer(AUDIO, timestamp, payload, keyframe)

    def metadata(self, values: dict) -> None:
        self.metadata_values = {
            k: v for k, v in values.items() if isinstance(v, str | float | bool)
        }
        for link in self._offer_to:
            link.offer(METADATA, 0, self.metadata_values, False)

    def restart(self) -> None:
        for link in self._offer_to:
            link.restart()

    # -- targets ---------------------------------------------------------------------------

    def set_targets(self, targets: list[RestreamTarget]) -> None:
        if self.closed:
            return
        wanted = {t.id: t for t in targets}
        for target_id in [i for i in self.links if i not in wanted]:
            self.links.pop(target_id).stop()
        for target_id, target in wanted.items():
            if target_id not in self.links:
                link = TargetLink(self.channel, target, self._settings, self)
                self.links[target_id] = link
                self._on_task(link.start())
        self._offer_to = tuple(self.links.values())

    def close(self) -> None:
        """The broadcast ended (or has no targets left): every target is told and closed."""
        self.closed = True
        for link in self.links.values():
            link.report(self._metrics)  # before the channel's series are forgotten
            link.stop()
        self._offer_to = ()


class Restreamer:
    """Every channel's restreaming: attaches a ChannelRestream to each broadcast that has
    targets, applies changes made through the API at once, reports status and metrics."""

    def __init__(
        self,
        settings: RestreamSettings,
        store: RestreamStore,
        registry: PublisherRegistry,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self._registry = registry
        self._metrics = metrics
        self._tasks: set[asyncio.Task] = set()

    def broadcast_started(self, pipeline: StreamPipeline) -> None:
        """Attach at once (so no sequence header is missed), then load the targets; detach
        again if there are none, so a channel without targets costs nothing per frame."""
        if self.settings.max_targets == 0:
            return
        tee = self._new_tee(pipeline.channel)
        pipeline.restream = tee
        self._spawn(self._load(pipeline, tee))

    async def targets_changed(self, channel: str) -> None:
        """After an API change: the live broadcast (if any) forwards to the new set at once."""
        pipeline = self._registry.get(channel)
        if pipeline is None:
            return
        targets = await asyncio.to_thread(self.store.list, channel)
        tee = pipeline.restream
        if tee is None and targets:
            tee = self._new_tee(channel)
            tee.seed(pipeline.info)
            pipeline.restream = tee
        if tee is not None:
            self._apply(pipeline, tee, targets)

    async def _load(self, pipeline: StreamPipeline, tee: ChannelRestream) -> None:
        targets = await asyncio.to_thread(self.store.list, pipeline.channel)
        self._apply(pipeline, tee, targets)

    def _apply(
        self, pipeline: StreamPipeline, tee: ChannelRestream, targets: list[RestreamTarget]
    ) -> None:
        if pipeline.restream is not tee or tee.closed:
            return  # the broadcast ended meanwhile
        targets = targets[: self.settings.max_targets]  # a lowered limit applies at once
        if not targets:
            pipeline.restream = None
            tee.close()
            return
        tee.set_targets(targets)

    def _new_tee(self, channel: str) -> ChannelRestream:
        return ChannelRestream(channel, self.settings, self._metrics, self._tasks_add)

    def _tasks_add(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _spawn(self, coro) -> None:
        self._tasks_add(asyncio.get_running_loop().create_task(coro))

    def collect(self) -> None:
        """At scrape time: counters brought up to date, targets counted by state."""
        counts = dict.fromkeys(STATES, 0)
        for pipeline in self._registry.live():
            tee = pipeline.restream
            if tee is None:
                continue
            for link in tee.links.values():
                link.report(self._metrics)
                counts[link.state] += 1
        for state, count in counts.items():
            self._metrics.restream_targets.labels(state).set(count)

    async def stop(self) -> None:
        """After every broadcast ended: wait for the target connections to close."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.store.close()
