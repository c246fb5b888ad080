"""The disk side of one live stream, in its own thread.

Muxing and file writes block for tens of milliseconds at times, so none of it runs on the event
loop. The loop decides (what to cut, when to end) and sends commands; this thread owns every file of
the stream: the segment being written, the live playlist and the master playlist. Commands are
executed strictly in order, so a playlist never lists a segment that is not complete on disk.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
from periscope_ingest.storage.atomic import partial_path, publish_partial, write_atomic

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
    uri: str
    program_date_time: datetime
    discontinuity: bool


@dataclass(frozen=True, slots=True)
class CloseSegment:
    duration_ticks: int
    target_duration_s: int


@dataclass(frozen=True, slots=True)
class EndPlaylist:
    pass


@dataclass(frozen=True, slots=True)
class SegmentPublished:
    """Reported back to the loop after a segment is complete and listed."""

    sequence: int
    duration_ms: int
    size: int


Command = UseTracks | OpenSegment | MediaPacket | CloseSegment | EndPlaylist
_STOP = object()


class SegmentWorker:
    def __init__(
        self,
        name: str,
        playlist_path: Path,
        master_path: Path,
        window: int,
        on_published: Callable[[SegmentPublished], None],
    ) -> None:
        self._playlist_path = playlist_path
        self._master_path = master_path
        self._window = window
        self._on_published = on_published
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
        self._thread = threading.Thread(target=self._run, name=f"segments-{name}", daemon=True)
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
        elif isinstance(command, EndPlaylist) and self._playlist is not None:
            self._playlist.end()
            self._write_playlist()

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
        if self._playlist is None:
            self._playlist = LivePlaylist(command.target_duration_s, self._window)
        duration_ms = max(1, ticks_to_ms(command.duration_ticks))
        self._playlist.append(
            Segment(
                sequence=opened.sequence,
                uri=opened.uri,
                duration_ms=duration_ms,
                program_date_time=opened.program_date_time,
                discontinuity=opened.discontinuity,
                size=size,
            )
        )
        self._write_playlist()
        self._update_master(segment_bitrate(size, duration_ms))
        self._on_published(SegmentPublished(opened.sequence, duration_ms, size))

    def _write_playlist(self) -> None:
        assert self._playlist is not None
        write_atomic(self._playlist_path, self._playlist.render().encode())

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
