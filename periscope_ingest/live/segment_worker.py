"""The disk side of one broadcast, in its own thread: a queue loop over three owners.

Muxing and file writes block for tens of milliseconds at times, so none of it runs on the event
loop. The loop decides (what to cut, when to end) and sends commands (live/segment_commands.py);
this thread executes them strictly in order, so a playlist never lists a segment that is not
complete on disk. What it writes is split by concern:

- live/segment_files.py: the segment being written, init segments and LL-HLS parts;
- live/playlist_publisher.py: the live, master and recording playlists, and the PlaylistUpdate
  reported to the loop after every live playlist change;
- live/broadcast_record.py: broadcast.json and the catalog row.

A failure of the disk or the muxer ends this broadcast's recording (reported once through
``on_failed``), never the server; the queue keeps draining so the loop never blocks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from periscope_ingest.live.broadcast_record import BroadcastRecordKeeper
from periscope_ingest.live.next_cut import NextCutWindow
from periscope_ingest.live.playlist_publisher import PlaylistPublisher
from periscope_ingest.live.segment_commands import (
    BroadcastFiles,
    CloseSegment,
    Command,
    CutPart,
    EndPlaylist,
    OpenSegment,
    PlaylistUpdate,
    SegmentPublished,
    UpdateRecord,
    UseTracks,
)
from periscope_ingest.live.segment_files import SegmentFiles
from periscope_ingest.logs import log_event
from periscope_ingest.media.llhls import LowLatencySettings
from periscope_ingest.media.master_playlist import segment_bitrate
from periscope_ingest.media.muxer import PacketRefused
from periscope_ingest.media.packets import MediaPacket, ticks_to_ms
from periscope_ingest.media.part_cutter import PartCut
from periscope_ingest.media.playlist import Segment
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog
from periscope_ingest.storage.continuation import ContinuedRecording

log = logging.getLogger(__name__)

_STOP = object()
# Media packets are handed to the thread in batches of up to this many, and any other command
# sends the batch before it: a queue hand-off per packet woke the thread 80 times a second per
# stream, and those context switches cost more CPU than the muxing itself. The packets of an open
# segment only have to be on disk when the segment (or LL-HLS part) closes, which is a command.
# Except near the expected cut (live/next_cut.py): a batch still unmuxed when the keyframe that
# closes the segment arrives is listing delay (and thirty streams cut at once on a busy box), so
# the batch goes over as the window before the cut opens (one read interval before it), and
# what comes after, a few frames, with the command that closes the segment. (Each packet of
# the window went over on its own before: eight more wake-ups a segment at a 100 ms interval.)
PACKET_BATCH = 64


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
        on_file_complete: Callable[[Path], None] | None = None,
        continued: ContinuedRecording | None = None,
        next_cut: NextCutWindow | None = None,
    ) -> None:
        self._broadcast_id = record.id
        self._next_cut = next_cut or NextCutWindow(0)
        self._directory = files.directory
        self._files = files
        # storage.url s3://: told (from this thread) of each file of the recording once it is
        # complete on disk, to be uploaded (live/uploader.py). None with file://.
        self._on_file_complete = on_file_complete
        self._record = BroadcastRecordKeeper(record, files.directory, catalog, on_file_complete)
        self._segments = SegmentFiles(files)
        self._playlists = PlaylistPublisher(files, window, low_latency, on_playlist, continued)
        self._on_published = on_published
        self._on_ended = on_ended
        self._on_failed = on_failed  # called once, from this thread, when writing fails
        self._refused = 0  # packets the muxer would not take
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._batch: list[MediaPacket] = []  # loop side: packets not yet handed over
        self._near_cut = False  # loop side: the batch went over as the window before a cut opened
        # The backlog in packets, from two counters each written by one side only.
        self._packets_sent = 0  # loop side
        self._packets_done = 0  # thread side
        # Set by the loop while the stream has viewers: finished segments and parts are then
        # also handed back in memory, to be served without touching the disk.
        self.keep_media = False
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
            elif not self._near_cut and self._next_cut.due_soon():
                self._near_cut = True
                self._hand_over_batch()
            return
        self._near_cut = False  # a command: the window before the next cut opens anew
        self._hand_over_batch()
        self._queue.put(command)

    def _hand_over_batch(self) -> None:
        if self._batch:
            self._packets_sent += len(self._batch)
            self._queue.put(self._batch)
            self._batch = []

    def set_keep_media(self, keep: bool) -> None:
        self.keep_media = keep

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
            self._directory.mkdir(parents=True, exist_ok=True)
            self._record.save()
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
        self._segments.abandon()
        self._segments.close()
        self._playlists.close()

    def _fail(self, exc: BaseException) -> None:
        first = self.failed is None
        self.failed = exc
        log_event(
            log,
            logging.ERROR,
            "segment_writer_failed",
            broadcast=self._broadcast_id,
            reason=repr(exc),
        )
        self._segments.abandon()
        if first and self._on_failed is not None:
            # Media that nothing records must not keep arriving: the publish is ended (see
            # StreamPipeline.on_writer_failed), and the encoder reconnects.
            self._on_failed(exc)

    def _write_packets(self, packets: list[MediaPacket]) -> None:
        try:
            if self.failed is not None:
                return
            write = self._segments.write
            for packet in packets:
                try:
                    write(packet)
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
                broadcast=self._broadcast_id,
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
            self._segments.use_tracks(command)
        elif isinstance(command, UpdateRecord):
            self._record.update(command.changes)
        elif isinstance(command, EndPlaylist):
            self._end(command.status)

    def _open_segment(self, command: OpenSegment) -> None:
        segments = self._segments
        if segments.open_segment(command) and segments.map_uri is not None:
            self._playlists.map_changed(segments.map_uri)
            if self._on_file_complete is not None and command.init_path is not None:
                self._on_file_complete(command.init_path)
        self._playlists.segment_opened(command, segments.part_uri(0))

    def _cut_part(self, cut: PartCut, last: bool = False) -> None:
        segments = self._segments
        written = segments.cut_part(cut)
        if written is None:
            return
        name, fragment, part = written
        media = ((name, fragment),) if self.keep_media else ()
        self._playlists.part_added(part, segments.part_uri(len(segments.parts)), media, last)

    def _close_segment(self, command: CloseSegment) -> SegmentPublished | None:
        segments = self._segments
        if not segments.writing:
            return None
        opened = segments.open
        assert opened is not None
        fmp4 = opened.segment_format == "fmp4"
        if fmp4 and command.last_part is not None:
            self._cut_part(command.last_part, last=True)
        elif fmp4:
            segments.finish_fmp4_fragment()
        closed = segments.close_segment()
        assert closed is not None
        opened, size = closed
        if command.duration_ms is not None:
            duration_ms = max(1, command.duration_ms)
        else:
            duration_ms = max(1, ticks_to_ms(command.duration_ticks))
        segment = Segment(
            sequence=opened.sequence,
            uri=opened.uri,
            duration_ms=duration_ms,
            program_date_time=opened.program_date_time,
            discontinuity=opened.discontinuity,
            size=size,
            map_uri=segments.map_uri if fmp4 else None,
        )

        def media() -> tuple[tuple[str, bytes], ...]:
            # Read back from the page cache, only for a watched stream: viewers fetch a segment
            # as soon as it is listed, and serving it from memory is much cheaper than the file.
            return ((opened.path.name, opened.path.read_bytes()),) if self.keep_media else ()

        self._playlists.segment_closed(
            segment,
            command.target_duration_s,
            opened,
            segments.parts,
            (opened.path.name, segments.map_name if fmp4 else None),
            media,
            command.part_target_ms,
        )
        if self._on_file_complete is not None:
            # The segment before the playlist that lists it (the uploader keeps this order).
            self._on_file_complete(opened.path)
            self._on_file_complete(self._files.recording_playlist)
        self._playlists.update_master(segments.tracks, segment_bitrate(size, duration_ms))
        self._record.segment_added(duration_ms, size, opened.discontinuity)
        return SegmentPublished(opened.sequence, duration_ms, size)

    def _end(self, status: str) -> None:
        try:
            self._playlists.end()
            if self._on_file_complete is not None:
                self._on_file_complete(self._files.recording_playlist)  # now VOD
        finally:
            # Even if the files could not be written: the broadcast is over either way.
            try:
                self._record.end(status)
            finally:
                self._on_ended(self._record.record)
