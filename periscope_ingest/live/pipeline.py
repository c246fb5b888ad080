"""One live stream on the event loop: RTMP media messages in, segment commands out.

Everything here is cheap and pure-ish (FLV parsing, timeline, cut decisions); the blocking work is
sent to the stream's SegmentWorker thread.

With LL-HLS the pipeline also decides where partial segments end (media/segmenter.PartCutter) and
keeps the latest live playlist the worker published, so the web layer can hold blocking playlist
reloads: `wait_for(msn, part)` awaits one shared future that the worker's notification (through
call_soon_threadsafe) resolves; nothing polls, and a thousand waiters cost a thousand futures'
callbacks once per part.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from periscope_ingest.config import HlsSettings
from periscope_ingest.live.segment_worker import (
    BroadcastFiles,
    CloseSegment,
    CutPart,
    EndPlaylist,
    OpenSegment,
    PlaylistUpdate,
    SegmentPublished,
    SegmentWorker,
    UpdateRecord,
    UseTracks,
)
from periscope_ingest.logs import log_event
from periscope_ingest.media.aac import AacConfig
from periscope_ingest.media.ingest import (
    Notice,
    Placed,
    StreamAssembler,
    TracksReady,
    VideoConfig,
    video_codec,
    video_record,
)
from periscope_ingest.media.llhls import LowLatencySettings
from periscope_ingest.media.packets import TICKS_PER_SECOND, MediaPacket
from periscope_ingest.media.segmenter import Action, PartCutter, Segmenter
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.layout import DataLayout, parse_part_name, parse_segment_name

if TYPE_CHECKING:
    from periscope_ingest.live.restream import ChannelRestream

log = logging.getLogger(__name__)

# Blocking playlist reloads are held at most this many target durations.
_HOLD_TARGET_DURATIONS = 3
# Segments over which the bitrate and frame rate in /api/streams are measured.
_STATS_SEGMENTS = 5
COUNT_FLUSH_MESSAGES = 200  # about 2.5 s of a 30 fps stream with audio
# A watched stream keeps its newest files in memory for viewers: the segments with the last
# MEMORY_SEGMENTS sequence numbers and the parts of the segment being written. Players fetch
# what was just listed; older files are served from disk. "Watched" lasts WATCHED_FOR_S after
# the last playlist or media request.
MEMORY_SEGMENTS = 3
WATCHED_FOR_S = 30.0


@dataclass(slots=True)
class _SegmentTally:
    payload_bytes: int = 0
    video_frames: int = 0


@dataclass(slots=True)
class StreamInfo:
    """What /api/streams reports about a live stream."""

    channel: str
    broadcast_id: str
    started_at: datetime
    video: VideoConfig | None = None
    audio: AacConfig | None = None
    metadata: dict = field(default_factory=dict)
    segments: int = 0
    bitrate: int | None = None  # measured bits/s of the media payload
    frame_rate: float | None = None  # measured frames/s

    def as_json(self) -> dict:
        video = self.video
        audio = self.audio
        return {
            "key": self.channel,
            "channel": self.channel,
            "broadcast_id": self.broadcast_id,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "video_codec": video.codecs if video else None,
            "audio_codec": audio.codecs if audio else None,
            "resolution": f"{video.width}x{video.height}" if video else None,
            "width": video.width if video else None,
            "height": video.height if video else None,
            "frame_rate": self.frame_rate or (video.frame_rate if video else None),
            "audio_sample_rate": audio.sample_rate if audio else None,
            "audio_channels": audio.channels if audio else None,
            "bitrate": self.bitrate,
            "segments": self.segments,
            "playlist": f"/live/{self.channel}/index.m3u8",
        }


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
    ) -> None:
        self.channel = channel
        self.broadcast_id = broadcast_id
        self._layout = layout
        self._hls = hls
        self._loop = loop
        self._on_ended = on_ended
        self.info = StreamInfo(channel, broadcast_id, datetime.now(UTC))
        self.suspended = False
        self.poster_interval = hls.poster_interval  # how often its live poster is renewed
        self._metrics = metrics
        self._cut_at: dict[int, float] = {}  # segment sequence -> when its end frame arrived
        # Children looked up once: a labelled lookup per message would cost more than parsing it.
        self._ingest_bytes = metrics.ingest_bytes.labels(channel) if metrics else None
        self._ingest_messages = metrics.ingest_messages.labels(channel) if metrics else None
        # Counted here and added to the (locked) metric counters every COUNT_FLUSH_MESSAGES
        # messages and whenever a segment closes: four locked increments per message were 4 % of
        # the ingest CPU.
        self._uncounted_bytes = 0
        self._uncounted_messages = 0
        self._media: dict[str, tuple[int, bytes]] = {}  # file name -> (sequence, bytes)
        self._watched_until = 0.0
        self._assembler = StreamAssembler(
            start_buffer_ms=round(hls.segment_duration * 1000 + hls.start_buffer * 1000),
        )
        self._segmenter: Segmenter | None = None
        self._next_sequence = 0
        self._pending_discontinuity = False
        self._forcing = False  # the latest cut was forced (no keyframe)
        self._clock_anchor: tuple[int, datetime] | None = None  # (pts ticks, wall clock)
        self._tally = _SegmentTally()
        self._recent: deque[tuple[int, _SegmentTally]] = deque(maxlen=_STATS_SEGMENTS)
        self.last_media_at = time.monotonic()
        # Set only while the channel has restream targets (live/restream.py): otherwise the
        # per-message cost of restreaming is the one check of this attribute.
        self.restream: ChannelRestream | None = None
        self._finished = False
        self._title_known = False
        record = BroadcastRecord(broadcast_id, channel, iso(self.info.started_at))
        files = BroadcastFiles(
            directory=layout.broadcast_dir(channel, broadcast_id),
            live_playlist=layout.live_playlist(channel),
            master_playlist=layout.master_playlist(channel),
            recording_playlist=layout.recording_playlist(channel, broadcast_id),
        )
        # MPEG-TS or fMP4; an AV1 stream switches a "ts" server to fMP4 for this broadcast.
        self.segment_format = hls.segment_format
        self.low_latency = hls.low_latency
        self._part_cutter: PartCutter | None = None
        self._segment_start_pts = 0
        self._init_needed = True  # the next fMP4 segment starts a new init segment
        # The live playlist as last published by the worker, and the future its next change
        # resolves (blocking playlist reload).
        self.playlist: PlaylistUpdate | None = None
        self._changed: asyncio.Future[None] = loop.create_future()
        low_latency = None
        if hls.low_latency:
            low_latency = LowLatencySettings(part_target_ms=round(hls.part_duration * 1000))
        self._worker = SegmentWorker(
            record,
            files,
            hls.window,
            catalog,
            self._published_from_thread,
            self._ended_from_thread,
            low_latency=low_latency,
            on_playlist=self._playlist_from_thread,
            on_failed=self._failed_from_thread,
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
        self._count(payload)
        if self.restream is not None:
            self.restream.video(timestamp, payload)
        self._handle(self._assembler.video_message(timestamp, payload))

    def audio(self, timestamp: int, payload: bytes) -> None:
        self.last_media_at = time.monotonic()
        self._count(payload)
        if self.restream is not None:
            self.restream.audio(timestamp, payload)
        self._handle(self._assembler.audio_message(timestamp, payload))

    def _count(self, payload: bytes) -> None:
        self._uncounted_bytes += len(payload)
        self._uncounted_messages += 1
        if self._uncounted_messages >= COUNT_FLUSH_MESSAGES:
            self._flush_counts()

    def _flush_counts(self) -> None:
        if self._metrics is not None and self._ingest_bytes and self._ingest_messages:
            self._ingest_bytes.inc(self._uncounted_bytes)
            self._ingest_messages.inc(self._uncounted_messages)
            self._metrics.ingest_bytes_all.inc(self._uncounted_bytes)
            self._metrics.ingest_messages_all.inc(self._uncounted_messages)
        self._uncounted_bytes = self._uncounted_messages = 0

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
        self.suspended = True
        self._flush_counts()
        self._handle(self._assembler.flush())
        self._close_open_segment()

    def resume(self) -> None:
        """The same key is back: continue this broadcast after a discontinuity."""
        self.suspended = False
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
        if self._finished:
            return
        restream, self.restream = self.restream, None
        if restream is not None:
            restream.close()
        self._flush_counts()
        self._handle(self._assembler.flush())
        self._finished = True
        self._close_open_segment()
        self._worker.send(EndPlaylist(status))
        self._worker.stop()
        await asyncio.to_thread(self._worker.join)
        self._notify_changed()  # blocked requests answer with whatever is final
        log_event(
            log,
            logging.INFO,
            "stream_ended",
            channel=self.channel,
            broadcast=self.broadcast_id,
            segments=self.info.segments,
        )

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
        codecs = tuple(c.codecs for c in (ready.video, ready.audio) if c is not None)
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
        self._init_needed = True
        self._worker.send(
            UpdateRecord(
                {
                    "video_codec": ready.video.codecs if ready.video else None,
                    "audio_codec": ready.audio.codecs if ready.audio else None,
                    "width": ready.video.width if ready.video else None,
                    "height": ready.video.height if ready.video else None,
                    "frame_rate": ready.video.frame_rate if ready.video else None,
                }
            )
        )
        self._worker.send(
            UseTracks(
                avcc=video_record(ready.video) if ready.video else None,
                asc=ready.audio.asc if ready.audio else None,
                codecs=codecs,
                resolution=(ready.video.width, ready.video.height) if ready.video else None,
                frame_rate=ready.video.frame_rate if ready.video else None,
                video_codec=codec,
            )
        )
        if self._segmenter is None:
            self._segmenter = Segmenter(
                self._hls.segment_duration, ready.video is not None, self._hls.segment_cap
            )
            if self.low_latency:
                self._part_cutter = PartCutter(self._hls.part_duration, ready.video is not None)
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
        if decision.action is Action.CUT:
            discontinuity = decision.discontinuity or self._pending_discontinuity
            self._pending_discontinuity = False
            if decision.closed_duration is not None:
                assert segmenter.target_duration_s is not None
                self._close(decision.closed_duration, segmenter.target_duration_s, packet.pts)
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
        self._tally.payload_bytes += len(packet.data)
        if packet.track == "video":
            self._tally.video_frames += 1
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
            command = CloseSegment(duration_ticks, target_duration_s, duration_ms, last_part)
        else:
            command = CloseSegment(duration_ticks, target_duration_s)
        self._cut_at[self._next_sequence - 1] = time.monotonic()
        self._worker.send(command)
        self._flush_counts()  # a listed segment's bytes are counted by the time it is listed
        self._recent.append((duration_ticks, self._tally))
        self._tally = _SegmentTally()
        total_ticks = sum(d for d, _ in self._recent)
        if total_ticks > 0:
            seconds = total_ticks / TICKS_PER_SECOND
            self.info.bitrate = round(sum(t.payload_bytes for _, t in self._recent) * 8 / seconds)
            frames = sum(t.video_frames for _, t in self._recent)
            self.info.frame_rate = round(frames / seconds, 3) if frames else None

    def _failed_from_thread(self, exc: BaseException) -> None:
        self._call_on_loop(self._writer_failed, exc)

    def _writer_failed(self, exc: BaseException) -> None:
        if self.on_writer_failed is not None:
            self.on_writer_failed(f"the recording could not be written ({type(exc).__name__})")

    def _published_from_thread(self, published: SegmentPublished) -> None:
        self._call_on_loop(self._published, published)

    def _playlist_from_thread(self, update: PlaylistUpdate) -> None:
        self._call_on_loop(self._playlist_changed, update)

    def _playlist_changed(self, update: PlaylistUpdate) -> None:
        self._keep_media(update)
        self.playlist = update
        self._notify_changed()

    # -- the newest files in memory, for viewers ----------------------------------------------

    def watched(self) -> None:
        """A viewer asked for this stream's playlist or media: keep the newest files in memory."""
        self._watched_until = time.monotonic() + WATCHED_FOR_S
        self._worker.keep_media = True

    def media(self, name: str) -> bytes | None:
        """A segment or part file of this broadcast, if it is one of the newest ones."""
        kept = self._media.get(name)
        return kept[1] if kept is not None else None

    def remember(self, name: str, data: bytes) -> None:
        """A listed file read from disk for a viewer (made before anyone watched): kept like
        those the writer hands over, if it is among the newest, so the next viewers get it
        from memory."""
        sequence = _media_sequence(name)
        update = self.playlist
        if sequence is None or update is None or time.monotonic() > self._watched_until:
            return
        if sequence >= update.next_sequence - MEMORY_SEGMENTS:
            self._media.setdefault(name, (sequence, data))

    def _keep_media(self, update: PlaylistUpdate) -> None:
        if time.monotonic() > self._watched_until:
            self._worker.keep_media = False
            self._media.clear()
            return
        for name, data in update.media:
            if (sequence := _media_sequence(name)) is not None:
                self._media[name] = (sequence, data)
        oldest = update.next_sequence - MEMORY_SEGMENTS
        if any(sequence < oldest for sequence, _ in self._media.values()):
            self._media = {n: kept for n, kept in self._media.items() if kept[0] >= oldest}

    def _notify_changed(self) -> None:
        changed, self._changed = self._changed, self._loop.create_future()
        if not changed.done():
            changed.set_result(None)

    # -- blocking playlist reload (LL-HLS) ----------------------------------------------------

    def has(self, msn: int, part: int | None) -> bool:
        """Whether the published live playlist holds segment `msn` (complete, when `part` is
        None) or part `part` of it, or anything later; always True once it has ended."""
        update = self.playlist
        if update is None:
            return False
        if update.ended or msn < update.next_sequence:
            return True
        return part is not None and msn == update.next_sequence and part < update.parts

    def hold_timeout(self) -> float:
        """How long a blocking request may be held: three target durations (RFC 8216bis)."""
        if self.playlist is not None:
            target = self.playlist.target_duration_s
        else:
            target = max(1, round(self._hls.segment_duration))
        return _HOLD_TARGET_DURATIONS * target

    async def wait_for(self, msn: int, part: int | None, timeout: float) -> bool:
        """Wait until `has(msn, part)`; False after `timeout` seconds. Costs no CPU meanwhile:
        every waiter awaits the same future, resolved once per playlist change."""
        loop = self._loop
        deadline = loop.time() + timeout
        while not self.has(msn, part):
            if self._finished and self._worker_done():
                return self.has(msn, part)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                return self.has(msn, part)
        return True

    def _worker_done(self) -> bool:
        return not self._worker.alive()

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


def _media_sequence(name: str) -> int | None:
    part = parse_part_name(name)
    return part[0] if part is not None else parse_segment_name(name)
