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

This module is the fan-out (ChannelRestream, one per broadcast with targets) and the service
that attaches it (Restreamer); live/restream_link.py is one target's queue and connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from periscope_ingest.config_sections import RestreamSettings
from periscope_ingest.live.restream_link import (
    AUDIO,
    METADATA,
    METADATA_SIZE,
    STATES,
    VIDEO,
    TargetLink,
)
from periscope_ingest.media.ingest import video_codec, video_record
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.restream import RestreamStore, RestreamTarget

if TYPE_CHECKING:
    from periscope_ingest.live.pipeline import StreamPipeline
    from periscope_ingest.live.registry import PublisherRegistry
    from periscope_ingest.live.stream_info import StreamInfo


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
            + (METADATA_SIZE if self.metadata_values else 0)
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
