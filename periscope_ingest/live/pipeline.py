"""One live stream on the event loop: RTMP media messages in, segment commands out.

Everything here is cheap and pure-ish (FLV parsing, timeline, cut decisions); the blocking work is
sent to the stream's SegmentWorker thread.

With LL-HLS the pipeline also decides where partial segments end (media/part_cutter.py).
What the worker publishes (playlists, the newest media) goes to the stream's LiveEdge
(live/edge.py), the one object viewers are answered from; web/ never reads the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.config_sections import HlsSettings
from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.ingest_counts import IngestCounts
from periscope_ingest.live.next_cut import NextCutWindow
from periscope_ingest.live.segment_commands import (
    BroadcastFiles,
    CloseSegment,
    CutPart,
    EndPlaylist,
    OpenSegment,
    PlaylistUpdate,
    SegmentPublished,
    UpdateRecord,
    UseTracks,
)
from periscope_ingest.live.segment_worker import SegmentWorker
from periscope_ingest.live.stream_info import StreamInfo, StreamMeter
from periscope_ingest.logs import log_event
from periscope_ingest.media.ingest import (
    Notice,
    Placed,
    StreamAssembler,
    TracksReady,
    video_codec,
)
from periscope_ingest.media.llhls import LowLatencySettings
from periscope_ingest.media.packets import TICKS_PER_SECOND, MediaPacket
from periscope_ingest.media.part_cutter import PartCutter
from periscope_ingest.media.segmenter import Action, Segmenter
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.continuation import ContinuedRecording
from periscope_ingest.storage.layout import DataLayout

if TYPE_CHECKING:
    from periscope_ingest.live.restream import ChannelRestream

log = logging.getLogger(__name__)


class StreamPipeline:
    """One broadcast: it may outlive a connection (reconnect grace) and continue on the next."""

    def __init__(
        self,
        channel: str,
        broadcast_id: str,
        layout: DataLayout,
        hls: HlsSettings,
        loop: asyncio.AbstractEventLoop,
        catalog: Catalog,
        on_ended: Callable[[BroadcastRecord], None] | None = None,
        metrics: Metrics | None = None,
        on_file_complete: Callable[[Path], None] | None = None,
        continued: ContinuedRecording | None = None,
        read_interval_s: float = 0.0,
    ) -> None:
        """``continued``: the recording so far of a broadcast another node took in until now
        (a cluster hand-over): this one goes on with it, after a discontinuity."""
        self.channel = channel
        self.broadcast_id = broadcast_id
        self._layout = layout
        self._hls = hls
        self._loop = loop
        self._on_ended = on_ended
        if continued is not None:
            record = continued.record
            started_at = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
        else:
            started_at = datetime.now(UTC)
            record = BroadcastRecord(broadcast_id, channel, iso(started_at))
        self.info = StreamInfo(channel, broadcast_id, started_at)
        self._metrics = metrics
        self._cut_at: dict[int, float] = {}  # segment sequence -> when its end frame arrived
        self._counts = IngestCounts(channel, metrics)
        self._assembler = StreamAssembler(
            start_buffer_ms=round(hls.segment_duration * 1000 + hls.start_buffer * 1000),
        )
        self._segmenter: Segmenter | None = None
        self._next_sequence = continued.next_sequence if continued else 0
        self._pending_discontinuity = continued is not None
        # A continued broadcast keeps the target duration its playlists already carry.
        self._continued_target = continued.target_duration_s if continued else None
        self._forcing = False  # the latest cut was forced (no keyframe)
        self._clock_anchor: tuple[int, datetime] | None = None  # (pts ticks, wall clock)
        self._meter = StreamMeter(self.info)
        self.last_media_at = time.monotonic()
        # Set only while the channel has restream targets (live/restream.py): otherwise the
        # per-message cost of restreaming is the one check of this attribute.
        self.restream: ChannelRestream | None = None
        self._finished = False
        self._title_known = record.title is not None
        self.info.segments = record.segments
        # MPEG-TS or fMP4; an AV1 stream switches a "ts" server to fMP4 for this broadcast.
        self.segment_format = hls.segment_format
        self.low_latency = hls.low_latency
        self._part_cutter: PartCutter | None = None
        self._segment_start_pts = 0
        self.next_cut = NextCutWindow(round(read_interval_s * TICKS_PER_SECOND))
        low_latency = None
        if hls.low_latency:
            low_latency = LowLatencySettings.of(hls.part_duration, hls.part_hold_back)
        self._worker = SegmentWorker(
            record,
            BroadcastFiles.of(layout, channel, broadcast_id),
            hls.window,
            catalog,
            self._published_from_thread,
            self._ended_from_thread,
            low_latency=low_latency,
            on_playlist=self._playlist_from_thread,
            on_failed=self._failed_from_thread,
            on_file_complete=on_file_complete,
            continued=continued,
            next_cut=self.next_cut,
        )
        # What viewers are answered from (web/ reads only this).
        self.edge = LiveEdge(
            self.info,
            low_latency=hls.low_latency,
            segment_duration_s=hls.segment_duration,
            poster_interval=hls.poster_interval,
            keep_media=self._worker.set_keep_media,
            restream_status=self._restream_status,
            loop=loop,
        )
        # Set by the RTMP session that publishes: called (on the loop) when the writer fails.
        self.on_writer_failed: Callable[[str], None] | None = None

    # -- inputs from the RTMP session -------------------------------------------------------

    def metadata(self, values: dict) -> None:
        self.info.metadata = {k: v for k, v in values.items() if isinstance(v, str | float | bool)}
        title = values.get("title")
        if isinstance(title, str) and title.strip() and not self._title_known:
            self._title_known = True
            self._worker.send(UpdateRecord({"title": title.strip()[:200]}))
        self._handle(self._assembler.metadata(values))
        if self.restream is not None:
            self.restream.metadata(values)

    def video(self, timestamp: int, payload: bytes) -> None:
        self.last_media_at = time.monotonic()
        self._counts.add(len(payload))
        if self.restream is not None:
            self.restream.video(timestamp, payload)
        self._handle(self._assembler.video_message(timestamp, payload))

    def audio(self, timestamp: int, payload: bytes) -> None:
        self.last_media_at = time.monotonic()
        self._counts.add(len(payload))
        if self.restream is not None:
            self.restream.audio(timestamp, payload)
        self._handle(self._assembler.audio_message(timestamp, payload))

    @property
    def suspended(self) -> bool:
        """The publisher dropped off and may reconnect (reconnect grace)."""
        return self.edge.reconnecting

    def _restream_status(self) -> list[dict]:
        restream = self.restream
        return [link.status() for link in restream.links.values()] if restream else []

    @property
    def writer_failed(self) -> bool:
        """The disk writer failed: nothing sent to this broadcast is recorded any more."""
        return self._worker.failed is not None

    def backlog(self) -> int:
        """Packets the disk writer has not muxed yet (the session pauses reading when high)."""
        return self._worker.backlog()

    def suspend(self) -> None:
        """The publisher dropped off: publish what was received; the broadcast stays live."""
        if self._finished or self.suspended:
            return
        self.edge.reconnecting = True
        self._counts.flush()
        self._handle(self._assembler.flush())
        self._close_open_segment()

    def resume(self) -> None:
        """The same key is back: continue this broadcast after a discontinuity."""
        self.edge.reconnecting = False
        self.last_media_at = time.monotonic()
        self._assembler.restart()
        if self.restream is not None:
            self.restream.restart()  # targets continue at the next keyframe, timestamps rebased
        self._pending_discontinuity = True
        # Wall-clock time went on while nobody published: PROGRAM-DATE-TIME re-anchors.
        self._clock_anchor = None

    def _close_open_segment(self) -> None:
        if self._segmenter is not None:
            duration = self._segmenter.finish()
            if duration is not None and self._segmenter.target_duration_s is not None:
                self._close(
                    duration,
                    self._segmenter.target_duration_s,
                    self._segment_start_pts + duration,
                )

    async def finish(self, status: str = "ended") -> None:
        """Close the open segment and end the playlists (EXT-X-ENDLIST); waits for the disk."""
        if not self._finished:
            await self._stop_writing(EndPlaylist(status))
            self._log_stop("stream_ended")

    async def hand_over(self) -> None:
        """Another node continues this broadcast (a cluster hand-over): publish what was
        received and stop writing, without ending it (no EXT-X-ENDLIST, no final record)."""
        if not self._finished:
            await self._stop_writing(None)
            self._log_stop("stream_handed_over")

    async def _stop_writing(self, ending: EndPlaylist | None) -> None:
        restream, self.restream = self.restream, None
        if restream is not None:
            restream.close()
        self._counts.flush()
        self._handle(self._assembler.flush())
        self._finished = True
        self._close_open_segment()
        if ending is not None:
            self._worker.send(ending)
        self._worker.stop()
        await asyncio.to_thread(self._worker.join)
        self.edge.close()  # blocked requests answer with whatever is final

    def _log_stop(self, event: str) -> None:
        where = {"channel": self.channel, "broadcast": self.broadcast_id}
        log_event(log, logging.INFO, event, **where, segments=self.info.segments)

    # -- internals --------------------------------------------------------------------------

    def _handle(self, outputs: list) -> None:
        for output in outputs:
            if isinstance(output, Placed):
                self._packet(output.packet, output.discontinuity)
            elif isinstance(output, TracksReady):
                self._tracks(output)
            elif isinstance(output, Notice):
                log_event(
                    log,
                    logging.WARNING,
                    "stream_notice",
                    channel=self.channel,
                    broadcast=self.broadcast_id,
                    reason=output.message,
                )

    def _tracks(self, ready: TracksReady) -> None:
        self.info.video, self.info.audio = ready.video, ready.audio
        codec = video_codec(ready.video) if ready.video is not None else "avc1"
        if codec == "av01" and self.segment_format == "ts":
            # HLS carries AV1 only in fMP4 (and FFmpeg's TS muxer writes it as private data).
            self.segment_format = "fmp4"
            log_event(
                log,
                logging.WARNING,
                "stream_format_switched",
                channel=self.channel,
                broadcast=self.broadcast_id,
                format="fmp4",
                reason="AV1 cannot be packaged in MPEG-TS (hls.segment_format=ts); this"
                " broadcast is packaged as fMP4",
            )
        self._worker.send(UpdateRecord.of_tracks(ready))
        self._worker.send(UseTracks.of(ready))
        if self._segmenter is None:
            self._segmenter = Segmenter(
                self._hls.segment_duration, ready.video is not None, self._hls.segment_cap
            )
            if self._continued_target is not None:
                self._segmenter.continue_with(self._continued_target)
            if self.low_latency:
                self._part_cutter = PartCutter(
                    self._hls.part_duration, ready.video is not None, self._hls.segment_duration
                )
        else:
            # New stream layout mid-broadcast: the next segment must be muxed with new streams.
            self._pending_discontinuity = True
        log_event(
            log,
            logging.INFO,
            "stream_tracks",
            channel=self.channel,
            broadcast=self.broadcast_id,
            video=ready.video.codecs if ready.video else None,
            resolution=f"{ready.video.width}x{ready.video.height}" if ready.video else None,
            audio=ready.audio.codecs if ready.audio else None,
            sample_rate=ready.audio.sample_rate if ready.audio else None,
        )

    def _packet(self, packet: MediaPacket, discontinuity: bool) -> None:
        segmenter = self._segmenter
        if segmenter is None or self._finished:
            return
        decision = segmenter.place(packet, discontinuity or self._pending_discontinuity)
        if decision.action is Action.DROP:
            return
        self.next_cut.last_dts = packet.dts
        if decision.action is Action.CUT:
            discontinuity = decision.discontinuity or self._pending_discontinuity
            self._pending_discontinuity = False
            if decision.closed_duration is not None:
                assert segmenter.target_duration_s is not None
                self._close(decision.closed_duration, segmenter.target_duration_s, packet.pts)
                self.next_cut.segment_cut(packet.dts, decision.closed_duration)
            if decision.forced and not self._forcing:
                # Once per run of forced cuts: a camera that stopped for an hour is one line.
                if packet.track == "audio":
                    reason = "the video stopped while the audio goes on"
                else:
                    reason = (
                        "no keyframe within the longest segment allowed; set a keyframe"
                        f" interval of {self._hls.segment_duration:g} s in the encoder"
                    )
                log_event(
                    log,
                    logging.WARNING,
                    "segment_forced_cut",
                    channel=self.channel,
                    broadcast=self.broadcast_id,
                    reason=reason,
                )
            self._forcing = decision.forced
            self._open(packet.pts, discontinuity)
            if self._part_cutter is not None:
                self._part_cutter.open_segment(packet, discontinuity, segmenter.listing_limit_ms)
        elif self._part_cutter is not None:
            # A part is complete when the frame that starts the next one arrives.
            cut = self._part_cutter.place(packet)
            if cut is not None:
                self._worker.send(CutPart(cut))
        self._meter.packet(len(packet.data), packet.track == "video")
        self._worker.send(packet)

    def _open(self, pts: int, discontinuity: bool) -> None:
        if self._clock_anchor is None:
            self._clock_anchor = (pts, datetime.now(UTC))
        anchor_pts, anchor_wall = self._clock_anchor
        wall = anchor_wall + timedelta(seconds=(pts - anchor_pts) / TICKS_PER_SECOND)
        sequence = self._next_sequence
        self._next_sequence += 1
        self._segment_start_pts = pts
        layout, channel, broadcast, fmt = (
            self._layout,
            self.channel,
            self.broadcast_id,
            self.segment_format,
        )
        init_path = init_uri = None
        if fmt == "fmp4":
            init_path = layout.init_segment_path(channel, broadcast, sequence)
            init_uri = layout.init_segment_uri(broadcast, sequence)
        self._worker.send(
            OpenSegment(
                sequence=sequence,
                path=layout.segment_path(channel, broadcast, sequence, fmt),
                uri=layout.segment_uri(broadcast, sequence, fmt),
                program_date_time=wall,
                discontinuity=discontinuity and sequence > 0,
                segment_format=fmt,
                init_path=init_path,
                init_uri=init_uri,
            )
        )

    def _close(self, duration_ticks: int, target_duration_s: int, end_pts: int) -> None:
        if self._part_cutter is not None and self._part_cutter.open:
            last_part, duration_ms = self._part_cutter.close_segment(end_pts)
            if self._next_sequence == 1 and self._segmenter is not None:
                # The first segment fixes EXT-X-TARGETDURATION: it must cover the parts.
                self._segmenter.cover_first(duration_ms)
                target_duration_s = self._segmenter.target_duration_s or target_duration_s
            part_target = self._part_cutter.part_target_ms  # fixed by close_segment at last
            command = CloseSegment(
                duration_ticks, target_duration_s, duration_ms, last_part, part_target
            )
        else:
            command = CloseSegment(duration_ticks, target_duration_s)
        self._cut_at[self._next_sequence - 1] = time.monotonic()
        self._worker.send(command)
        self._counts.flush()  # a listed segment's bytes are counted by the time it is listed
        self._meter.segment_closed(duration_ticks)

    def _failed_from_thread(self, exc: BaseException) -> None:
        self._call_on_loop(self._writer_failed, exc)

    def _writer_failed(self, exc: BaseException) -> None:
        if self.on_writer_failed is not None:
            self.on_writer_failed(f"the recording could not be written ({type(exc).__name__})")

    def _published_from_thread(self, published: SegmentPublished) -> None:
        self._call_on_loop(self._published, published)

    def _playlist_from_thread(self, update: PlaylistUpdate) -> None:
        self._call_on_loop(self.edge.publish, update)

    def _ended_from_thread(self, record: BroadcastRecord) -> None:
        if self._on_ended is not None:
            self._call_on_loop(self._on_ended, record)

    def _call_on_loop(self, callback: Callable, argument: object) -> None:
        # A closed loop means the server is gone and nobody is listening.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, argument)

    def _published(self, published: SegmentPublished) -> None:
        self.info.segments += 1
        cut_at = self._cut_at.pop(published.sequence, None)
        if self._metrics is not None:
            self._metrics.segments_written.inc()
            self._metrics.segment_write_seconds.observe(published.write_seconds)
            if cut_at is not None:
                self._metrics.listing_delay_seconds.observe(time.monotonic() - cut_at)
        log_event(
            log,
            logging.DEBUG,
            "segment_published",
            channel=self.channel,
            broadcast=self.broadcast_id,
            sequence=published.sequence,
            duration_ms=published.duration_ms,
            size=published.size,
        )
