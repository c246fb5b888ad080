"""The disk side of one broadcast, in its own thread.

Muxing and file writes block for tens of milliseconds at times, so none of it runs on the event
loop. The loop decides (what to cut, when to end) and sends commands; this thread owns every file of
the broadcast: the segment being written, the live and master playlists of the channel, the
recording's EVENT/VOD playlist and its record (broadcast.json and the catalog row). Commands are
executed strictly in order, so a playlist never lists a segment that is not complete on disk.

Segments are MPEG-TS (FFmpeg's muxer) or fragmented MP4 (our Fmp4SegmentWriter: an init segment
written once per stream layout, then moof+mdat fragments). With LL-HLS the loop sends `CutPart`
at every part boundary: the fragment written since the previous cut becomes a part file and is
appended to the segment file, so a whole segment is the concatenation of its parts. After every
live playlist change the loop gets a `PlaylistUpdate` (what is listed, and the rendered text) so
blocked playlist requests can be answered the moment their part exists.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from periscope_ingest.logs import log_event
from periscope_ingest.media.llhls import LowLatencyPlaylist, LowLatencySettings, Part
from periscope_ingest.media.master_playlist import Variant, render_master, segment_bitrate
from periscope_ingest.media.muxer import (
    Fmp4SegmentWriter,
    PacketRefused,
    StreamTemplates,
    TsSegmentMuxer,
)
from periscope_ingest.media.packets import MediaPacket, ticks_to_ms
from periscope_ingest.media.playlist import LivePlaylist, Segment
from periscope_ingest.media.playlist_reader import render_vod
from periscope_ingest.media.segmenter import PartCut
from periscope_ingest.storage.atomic import partial_path, publish_partial, write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.layout import part_name
from periscope_ingest.storage.recordings import write_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UseTracks:
    avcc: bytes | None  # the video decoder configuration record: avcC, hvcC or av1C
    asc: bytes | None
    codecs: tuple[str, ...]
    resolution: tuple[int, int] | None
    frame_rate: float | None
    video_codec: str = "avc1"  # "avc1", "hvc1" or "av01"


@dataclass(frozen=True, slots=True)
class OpenSegment:
    sequence: int
    path: Path
    uri: str  # relative to the channel's live playlist
    program_date_time: datetime
    discontinuity: bool
    segment_format: str = "ts"  # "ts" or "fmp4"
    # fMP4: where the init segment goes if this segment needs a new one (first segment, new
    # tracks), and its URI relative to the channel's live playlist.
    init_path: Path | None = None
    init_uri: str | None = None


@dataclass(frozen=True, slots=True)
class CutPart:
    """LL-HLS: the media written since the previous cut is a complete part."""

    cut: PartCut


@dataclass(frozen=True, slots=True)
class CloseSegment:
    duration_ticks: int
    target_duration_s: int
    duration_ms: int | None = None  # LL-HLS: from the same ms positions as the parts
    last_part: PartCut | None = None  # LL-HLS: the segment's last part ends with it


@dataclass(frozen=True, slots=True)
class EndPlaylist:
    """The broadcast is over: ENDLIST on the live playlist, the recording becomes VOD."""

    status: str = "ended"  # or "interrupted"


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """Facts the loop learned (title from metadata, codecs) for broadcast.json and the catalog."""

    changes: dict


@dataclass(frozen=True, slots=True)
class SegmentPublished:
    """Reported back to the loop after a segment is complete and listed."""

    sequence: int
    duration_ms: int
    size: int
    write_seconds: float = 0.0  # closing, listing and recording it, in this thread


@dataclass(frozen=True, slots=True)
class PlaylistUpdate:
    """Reported back to the loop after every change of the live playlist (file already written).

    `next_sequence` is the media sequence number of the segment being written and `parts` how
    many of its parts are listed: a blocking request for (msn, part) can be answered once
    msn < next_sequence, or msn == next_sequence and part < parts. `text`/`delta` are the
    rendered playlist and its delta update (None without LL-HLS). `media` holds the files this
    update lists for the first time, (file name, bytes), when the loop asked for them
    (SegmentWorker.keep_media): they arrive together with the playlist that names them.
    """

    next_sequence: int
    parts: int
    ended: bool
    target_duration_s: int
    text: str
    delta: str | None = None
    media: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class BroadcastFiles:
    """Where the worker writes; built by storage's DataLayout, the owner of every path."""

    directory: Path
    live_playlist: Path
    master_playlist: Path
    recording_playlist: Path


Command = (
    UseTracks | OpenSegment | MediaPacket | CutPart | CloseSegment | EndPlaylist | UpdateRecord
)
_STOP = object()
# Media packets are handed to the thread in batches of up to this many, and any other command
# sends the batch before it: a queue hand-off per packet woke the thread 80 times a second per
# stream, and those context switches cost more CPU than the muxing itself. The packets of an open
# segment only have to be on disk when the segment (or LL-HLS part) closes, which is a command.
PACKET_BATCH = 64
# How stale a live broadcast's duration/size in broadcast.json and the catalog may get.
RECORD_SAVE_EVERY_S = 10.0


class SegmentWorker:
    def __init__(
        self,
        record: BroadcastRecord,
        files: BroadcastFiles,
        window: int,
        catalog: Catalog,
        on_published: Callable[[SegmentPublished], None],
        on_ended: Callable[[BroadcastRecord], None],
        *,
        low_latency: LowLatencySettings | None = None,
        on_playlist: Callable[[PlaylistUpdate], None] | None = None,
        on_failed: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._record = record
        self._on_failed = on_failed  # called once, from this thread, when writing fails
        self._low_latency = low_latency
        self._on_playlist = on_playlist
        # fMP4 state: the fragment writer of the current stream layout, the segment file being
        # appended to, the parts of the open segment, the init segment's URIs.
        self._fmp4: Fmp4SegmentWriter | None = None
        self._fmp4_tracks: UseTracks | None = None
        self._segment_file: BinaryIO | None = None
        self._segment_size = 0
        self._parts: list[Part] = []
        self._map_uri: str | None = None  # relative to the live playlist
        self._map_name: str | None = None  # relative to the recording playlist
        self._last_sequence: int | None = None
        self._files = files
        self._playlist_path = files.live_playlist
        self._master_path = files.master_playlist
        self._window = window
        self._catalog = catalog
        self._on_published = on_published
        self._on_ended = on_ended
        self._recording: LivePlaylist | None = None
        self._record_saved_at = 0.0
        self._refused = 0  # packets the muxer would not take
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._batch: list[MediaPacket] = []  # loop side: packets not yet handed over
        # The backlog in packets, from two counters each written by one side only.
        self._packets_sent = 0  # loop side
        self._packets_done = 0  # thread side
        # Set by the loop while the stream has viewers: finished segments and parts are then
        # also handed back in memory, to be served without touching the disk.
        self.keep_media = False
        self._templates: StreamTemplates | None = None
        self._tracks: UseTracks | None = None
        self._next_tracks: UseTracks | None = None
        self._muxer: TsSegmentMuxer | None = None
        self._open: OpenSegment | None = None
        self._playlist: LivePlaylist | None = None
        self._peak_bandwidth = 0
        self._master_bandwidth = 0
        self.failed: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"segments-{record.channel}-{record.id}", daemon=True
        )
        self._thread.start()

    # -- loop side --------------------------------------------------------------------------

    def send(self, command: Command) -> None:
        if type(command) is MediaPacket:
            self._batch.append(command)
            if len(self._batch) >= PACKET_BATCH:
                self._hand_over_batch()
            return
        self._hand_over_batch()
        self._queue.put(command)

    def _hand_over_batch(self) -> None:
        if self._batch:
            self._packets_sent += len(self._batch)
            self._queue.put(self._batch)
            self._batch = []

    def backlog(self) -> int:
        """Packets received but not yet muxed (the session pauses reading when high)."""
        return self._packets_sent + len(self._batch) - self._packets_done

    def stop(self) -> None:
        """Ask the thread to finish its queue and exit; ``join`` waits for it."""
        self._hand_over_batch()
        self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- thread side ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._files.directory.mkdir(parents=True, exist_ok=True)
            self._save_record()
        except Exception as exc:
            self._fail(exc)
        while True:
            command = self._queue.get()
            if command is _STOP:
                break
            if type(command) is list:
                self._write_packets(command)
                continue
            if self.failed is not None and not isinstance(command, EndPlaylist):
                continue  # keep draining so the loop never blocks; only the ending is tried
            try:
                self._execute(command)
            except Exception as exc:  # a disk or muxer failure ends this stream, not the server
                self._fail(exc)
        self._abandon_open_segment()
        if self._templates is not None:
            self._templates.close()

    def _fail(self, exc: BaseException) -> None:
        first = self.failed is None
        self.failed = exc
        log_event(
            log, logging.ERROR, "segment_writer_failed", broadcast=self._record.id, reason=repr(exc)
        )
        self._abandon_open_segment()
        if first and self._on_failed is not None:
            # Media that nothing records must not keep arriving: the publish is ended (see
            # StreamPipeline.on_writer_failed), and the encoder reconnects.
            self._on_failed(exc)

    def _write_packets(self, packets: list[MediaPacket]) -> None:
        try:
            if self.failed is not None:
                return
            for packet in packets:
                try:
                    if self._muxer is not None:
                        self._muxer.write(packet)
                    elif self._fmp4 is not None and self._segment_file is not None:
                        self._fmp4.write(packet)
                except PacketRefused as exc:
                    self._packet_refused(exc)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._packets_done += len(packets)

    def _packet_refused(self, exc: PacketRefused) -> None:
        # One bad packet costs that packet, not the recording.
        self._refused += 1
        if self._refused in (1, 10, 100) or self._refused % 1000 == 0:
            log_event(
                log,
                logging.WARNING,
                "packet_dropped",
                broadcast=self._record.id,
                count=self._refused,
                reason=str(exc),
            )

    def _execute(self, command: object) -> None:
        if isinstance(command, CutPart):
            self._cut_part(command.cut)
        elif isinstance(command, OpenSegment):
            self._open_segment(command)
        elif isinstance(command, CloseSegment):
            started = time.perf_counter()
            published = self._close_segment(command)
            if published is not None:
                self._on_published(replace(published, write_seconds=time.perf_counter() - started))
        elif isinstance(command, UseTracks):
            # Takes effect at the next segment: a segment's streams are fixed when it opens.
            self._next_tracks = command
        elif isinstance(command, UpdateRecord):
            self._record = replace(self._record, **command.changes)
            self._save_record()
        elif isinstance(command, EndPlaylist):
            self._end(command.status)

    def _open_segment(self, command: OpenSegment) -> None:
        if self._next_tracks is not None:
            if self._templates is not None:
                self._templates.close()
            self._tracks, self._next_tracks = self._next_tracks, None
            self._templates = StreamTemplates(
                self._tracks.avcc, self._tracks.asc, video_codec=self._tracks.video_codec
            )
        if self._templates is None or self._tracks is None:
            raise RuntimeError("a segment was opened before any track was known")
        command.path.parent.mkdir(parents=True, exist_ok=True)
        if command.segment_format == "fmp4":
            self._open_fmp4_segment(command)
        else:
            self._muxer = TsSegmentMuxer(self._templates, partial_path(command.path))
        self._open = command
        if isinstance(self._playlist, LowLatencyPlaylist):
            self._playlist.start_segment(command.program_date_time, command.discontinuity)
            self._playlist.set_preload_hint(self._part_uri(command, 0))

    def _open_fmp4_segment(self, command: OpenSegment) -> None:
        assert self._templates is not None and self._tracks is not None
        if self._fmp4 is None or self._fmp4_tracks is not self._tracks:
            if command.init_path is None or command.init_uri is None:
                raise RuntimeError("an fMP4 segment needs an init segment path")
            # Fragment sequence numbers keep increasing over the whole broadcast.
            number = self._fmp4.sequence_number if self._fmp4 is not None else 1
            self._fmp4 = Fmp4SegmentWriter(self._templates, sequence_number=number)
            self._fmp4_tracks = self._tracks
            write_atomic(command.init_path, self._fmp4.init_segment())
            self._map_uri = command.init_uri
            self._map_name = command.init_path.name
            if isinstance(self._playlist, LowLatencyPlaylist):
                self._playlist.set_map_uri(self._map_uri)
        self._segment_file = open(partial_path(command.path), "wb")  # noqa: SIM115 - see close
        self._segment_size = 0
        self._parts = []

    @staticmethod
    def _part_uri(opened: OpenSegment, index: int) -> str:
        return posixpath.join(posixpath.dirname(opened.uri), part_name(opened.sequence, index))

    def _cut_part(self, cut: PartCut) -> None:
        """LL-HLS: the fragment since the last cut becomes part file <sequence>.<n>.m4s."""
        if self._fmp4 is None or self._segment_file is None or self._open is None:
            return
        fragment = self._fmp4.cut()
        if not fragment:
            return
        opened = self._open
        index = len(self._parts)
        name = part_name(opened.sequence, index)
        # The part is in the segment file too (written below): that copy is the recording.
        write_atomic(opened.path.with_name(name), fragment, durable=False)
        self._segment_file.write(fragment)
        self._segment_size += len(fragment)
        part = Part(self._part_uri(opened, index), cut.duration_ms, cut.independent)
        self._parts.append(part)
        if isinstance(self._playlist, LowLatencyPlaylist):
            self._playlist.add_part(part)
            self._playlist.set_preload_hint(self._part_uri(opened, index + 1))
            self._write_playlist(((name, fragment),) if self.keep_media else ())

    def _finish_fmp4_segment(self, command: CloseSegment) -> int:
        assert self._fmp4 is not None and self._segment_file is not None
        if command.last_part is not None:
            self._cut_part(command.last_part)
        else:
            fragment = self._fmp4.cut()
            self._segment_file.write(fragment)
            self._segment_size += len(fragment)
        self._segment_file.close()
        self._segment_file = None
        return self._segment_size

    def _new_playlists(self, target_duration_s: int, opened: OpenSegment) -> None:
        self._recording = LivePlaylist(target_duration_s, 0, "EVENT")
        if self._low_latency is None or opened.segment_format != "fmp4" or self._map_uri is None:
            self._playlist = LivePlaylist(target_duration_s, self._window)
            return
        playlist = LowLatencyPlaylist(
            target_duration_s, self._window, low_latency=self._low_latency, map_uri=self._map_uri
        )
        # The target duration is known once the first segment closes: list its parts now.
        playlist.start_segment(opened.program_date_time, opened.discontinuity)
        for part in self._parts:
            playlist.add_part(part)
        self._playlist = playlist

    def _close_segment(self, command: CloseSegment) -> SegmentPublished | None:
        if self._open is None or (self._muxer is None and self._segment_file is None):
            return None
        if self._muxer is not None:
            size = self._muxer.close()
            self._muxer = None
        else:
            size = self._finish_fmp4_segment(command)
        opened, self._open = self._open, None
        publish_partial(opened.path)
        if self._playlist is None or self._recording is None:
            self._new_playlists(command.target_duration_s, opened)
        assert self._playlist is not None and self._recording is not None
        if command.duration_ms is not None:
            duration_ms = max(1, command.duration_ms)
        else:
            duration_ms = max(1, ticks_to_ms(command.duration_ticks))
        fmp4 = opened.segment_format == "fmp4"
        segment = Segment(
            sequence=opened.sequence,
            uri=opened.uri,
            duration_ms=duration_ms,
            program_date_time=opened.program_date_time,
            discontinuity=opened.discontinuity,
            size=size,
            map_uri=self._map_uri if fmp4 else None,
        )
        if isinstance(self._playlist, LowLatencyPlaylist):
            self._playlist.append(segment)
            # The next part is the first of the next segment (if the stream goes on).
            self._playlist.set_preload_hint(
                posixpath.join(posixpath.dirname(opened.uri), part_name(opened.sequence + 1, 0))
            )
        else:
            self._playlist.append(segment)
        self._last_sequence = opened.sequence
        # The recording's playlist sits beside its segments: URIs are bare file names.
        self._recording.append(
            replace(segment, uri=opened.path.name, map_uri=self._map_name if fmp4 else None)
        )
        # Recording first: a viewer of the live playlist may switch to the replay at once.
        write_atomic(self._files.recording_playlist, self._recording.render().encode())
        # Read back from the page cache, only for a watched stream: viewers fetch a segment as
        # soon as it is listed, and serving it from memory is much cheaper than from the file.
        media = ((opened.path.name, opened.path.read_bytes()),) if self.keep_media else ()
        self._write_playlist(media)
        self._update_master(segment_bitrate(size, duration_ms))
        record = self._record
        self._record = replace(
            record,
            duration=round(record.duration + duration_ms / 1000, 3),
            size=record.size + size,
            segments=record.segments + 1,
            discontinuities=record.discontinuities + (1 if opened.discontinuity else 0),
        )
        # The record's running totals are for listings only (recovery recounts them from the
        # recording playlist): saving them every few segments, not every one, halves the file
        # work per segment.
        if record.segments == 0 or time.monotonic() - self._record_saved_at >= RECORD_SAVE_EVERY_S:
            self._save_record()
        return SegmentPublished(opened.sequence, duration_ms, size)

    def _write_playlist(self, media: tuple[tuple[str, bytes], ...] = ()) -> None:
        playlist = self._playlist
        assert playlist is not None
        text = playlist.render()
        write_atomic(self._playlist_path, text.encode())
        if self._on_playlist is None:
            return
        if isinstance(playlist, LowLatencyPlaylist):
            delta = playlist.render(skip=True) if playlist.skippable_segments() else text
            parts = len(playlist.pending_parts)
        else:
            delta, parts = None, 0
        self._on_playlist(
            PlaylistUpdate(
                next_sequence=playlist.next_sequence,
                parts=parts,
                ended=playlist.ended,
                target_duration_s=playlist.target_duration_s,
                text=text,
                delta=delta,
                media=media,
            )
        )

    def _save_record(self) -> None:
        try:
            write_record(self._files.directory, self._record)
        finally:
            # Also when the directory cannot be written: listings must not show a broadcast
            # that failed as live (the next start recovers the record from the files).
            self._catalog.put(self._record)
            self._record_saved_at = time.monotonic()

    def _end(self, status: str) -> None:
        try:
            if self._playlist is not None and self._recording is not None:
                self._playlist.end()
                self._write_playlist()
                vod = render_vod(self._recording.target_duration_s, self._recording.segments)
                write_atomic(self._files.recording_playlist, vod.encode())
        finally:
            # Even if the files could not be written: the broadcast is over either way.
            self._record = replace(self._record, status=status, ended_at=iso(datetime.now(UTC)))
            try:
                self._save_record()
            finally:
                self._on_ended(self._record)

    def _update_master(self, bitrate: int) -> None:
        # BANDWIDTH is the peak segment bitrate. Rewrite only when it grows noticeably: players
        # read the master once, and an ever-changing file would defeat caches for nothing.
        self._peak_bandwidth = max(self._peak_bandwidth, bitrate)
        if self._tracks is None or self._peak_bandwidth <= self._master_bandwidth * 1.1:
            return
        self._master_bandwidth = self._peak_bandwidth
        variant = Variant(
            uri=self._playlist_path.name,
            bandwidth=self._peak_bandwidth,
            codecs=self._tracks.codecs,
            resolution=self._tracks.resolution,
            frame_rate=self._tracks.frame_rate,
        )
        write_atomic(self._master_path, render_master([variant]).encode())

    def _abandon_open_segment(self) -> None:
        """A segment that was never completed is never listed; remove its partial file."""
        # It is being thrown away, maybe because its directory is gone: nothing here may fail.
        if self._muxer is not None and self._open is not None:
            with contextlib.suppress(Exception):
                self._muxer.close()
            with contextlib.suppress(OSError):
                partial_path(self._open.path).unlink(missing_ok=True)
        if self._segment_file is not None and self._open is not None:
            with contextlib.suppress(Exception):
                self._segment_file.close()
            with contextlib.suppress(OSError):
                partial_path(self._open.path).unlink(missing_ok=True)
        self._muxer = None
        self._segment_file = None
        self._open = None
