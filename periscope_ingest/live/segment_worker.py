"""The disk side of one broadcast, in its own thread.

Muxing and file writes block for tens of milliseconds at times, so none of it runs on the event
loop. The loop decides (what to cut, when to end) and sends commands; this thread owns every file of
the broadcast: the segment being written, the live and master playlists of the channel, the
recording's EVENT/VOD playlist and its record (broadcast.json and the catalog row). Commands are
executed strictly in order, so a playlist never lists a segment that is not complete on disk.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.media.muxer import StreamTemplates, TsSegmentMuxer
from periscope_ingest.media.packets import MediaPacket, ticks_to_ms
from periscope_ingest.media.playlist import (
    LivePlaylist,
    Segment,
    Variant,
    render_master,
    segment_bitrate,
)
from periscope_ingest.media.playlist_reader import render_vod
from periscope_ingest.storage.atomic import partial_path, publish_partial, write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.recordings import write_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UseTracks:
    avcc: bytes | None
    asc: bytes | None
    codecs: tuple[str, ...]
    resolution: tuple[int, int] | None
    frame_rate: float | None


@dataclass(frozen=True, slots=True)
class OpenSegment:
    sequence: int
    path: Path
    uri: str  # relative to the channel's live playlist
    program_date_time: datetime
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class CloseSegment:
    duration_ticks: int
    target_duration_s: int


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


@dataclass(frozen=True, slots=True)
class BroadcastFiles:
    """Where the worker writes; built by storage's DataLayout, the owner of every path."""

    directory: Path
    live_playlist: Path
    master_playlist: Path
    recording_playlist: Path


Command = UseTracks | OpenSegment | MediaPacket | CloseSegment | EndPlaylist | UpdateRecord
_STOP = object()


class SegmentWorker:
    def __init__(
        self,
        record: BroadcastRecord,
        files: BroadcastFiles,
        window: int,
        catalog: Catalog,
        on_published: Callable[[SegmentPublished], None],
        on_ended: Callable[[BroadcastRecord], None],
    ) -> None:
        self._record = record
        self._files = files
        self._playlist_path = files.live_playlist
        self._master_path = files.master_playlist
        self._window = window
        self._catalog = catalog
        self._on_published = on_published
        self._on_ended = on_ended
        self._recording: LivePlaylist | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
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
        self._queue.put(command)

    def backlog(self) -> int:
        return self._queue.qsize()

    def stop(self) -> None:
        """Ask the thread to finish its queue and exit; ``join`` waits for it."""
        self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- thread side ------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._files.directory.mkdir(parents=True, exist_ok=True)
            self._save_record()
        except Exception as exc:
            self.failed = exc
            log_event(log, logging.ERROR, "segment_writer_failed", reason=repr(exc))
        while True:
            command = self._queue.get()
            if command is _STOP:
                break
            if self.failed is not None:
                continue  # keep draining so the loop never blocks; nothing more is written
            try:
                self._execute(command)
            except Exception as exc:  # a disk or muxer failure ends this stream, not the server
                self.failed = exc
                log_event(log, logging.ERROR, "segment_writer_failed", reason=repr(exc))
                self._abandon_open_segment()
        self._abandon_open_segment()
        if self._templates is not None:
            self._templates.close()

    def _execute(self, command: object) -> None:
        if isinstance(command, MediaPacket):
            if self._muxer is not None:
                self._muxer.write(command)
        elif isinstance(command, OpenSegment):
            self._open_segment(command)
        elif isinstance(command, CloseSegment):
            self._close_segment(command)
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
            self._templates = StreamTemplates(self._tracks.avcc, self._tracks.asc)
        if self._templates is None:
            raise RuntimeError("a segment was opened before any track was known")
        command.path.parent.mkdir(parents=True, exist_ok=True)
        self._muxer = TsSegmentMuxer(self._templates, partial_path(command.path))
        self._open = command

    def _close_segment(self, command: CloseSegment) -> None:
        if self._muxer is None or self._open is None:
            return
        size = self._muxer.close()
        self._muxer = None
        opened, self._open = self._open, None
        publish_partial(opened.path)
        if self._playlist is None or self._recording is None:
            self._playlist = LivePlaylist(command.target_duration_s, self._window)
            self._recording = LivePlaylist(command.target_duration_s, 0, "EVENT")
        duration_ms = max(1, ticks_to_ms(command.duration_ticks))
        segment = Segment(
            sequence=opened.sequence,
            uri=opened.uri,
            duration_ms=duration_ms,
            program_date_time=opened.program_date_time,
            discontinuity=opened.discontinuity,
            size=size,
        )
        self._playlist.append(segment)
        # The recording's playlist sits beside its segments: URIs are bare file names.
        self._recording.append(replace(segment, uri=opened.path.name))
        # Recording first: a viewer of the live playlist may switch to the replay at once.
        write_atomic(self._files.recording_playlist, self._recording.render().encode())
        self._write_playlist()
        self._update_master(segment_bitrate(size, duration_ms))
        record = self._record
        self._record = replace(
            record,
            duration=round(record.duration + duration_ms / 1000, 3),
            size=record.size + size,
            segments=record.segments + 1,
            discontinuities=record.discontinuities + (1 if opened.discontinuity else 0),
        )
        self._save_record()
        self._on_published(SegmentPublished(opened.sequence, duration_ms, size))

    def _write_playlist(self) -> None:
        assert self._playlist is not None
        write_atomic(self._playlist_path, self._playlist.render().encode())

    def _save_record(self) -> None:
        write_record(self._files.directory, self._record)
        self._catalog.put(self._record)

    def _end(self, status: str) -> None:
        if self._playlist is not None and self._recording is not None:
            self._playlist.end()
            self._write_playlist()
            vod = render_vod(self._recording.target_duration_s, self._recording.segments)
            write_atomic(self._files.recording_playlist, vod.encode())
        self._record = replace(self._record, status=status, ended_at=iso(datetime.now(UTC)))
        self._save_record()
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
        if self._muxer is not None and self._open is not None:
            with contextlib.suppress(Exception):  # it is being thrown away anyway
                self._muxer.close()
            partial_path(self._open.path).unlink(missing_ok=True)
        self._muxer = None
        self._open = None
