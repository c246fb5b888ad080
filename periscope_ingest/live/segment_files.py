"""The media files of one broadcast, written in its worker thread: segments, init segments, parts.

Segments are MPEG-TS (FFmpeg's muxer) or fragmented MP4 (our Fmp4SegmentWriter: an init segment
written once per stream layout, then moof+mdat fragments). A segment is written under its partial
name and renamed when complete, so nothing half-written is ever listed. With LL-HLS each part is
the fragment written since the previous cut: it becomes a part file and is appended to the
segment file, so a whole segment is the concatenation of its parts.
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO

from periscope_ingest.live.segment_commands import BroadcastFiles, OpenSegment, UseTracks
from periscope_ingest.media.llhls import Part
from periscope_ingest.media.muxer import Fmp4SegmentWriter, StreamTemplates, TsSegmentMuxer
from periscope_ingest.media.packets import MediaPacket
from periscope_ingest.media.part_cutter import PartCut
from periscope_ingest.storage.atomic import partial_path, publish_partial, write_atomic


class SegmentFiles:
    """The open segment (or none) and what writing the next one needs (tracks, templates)."""

    def __init__(self, files: BroadcastFiles) -> None:
        self._files = files
        self._templates: StreamTemplates | None = None
        self.tracks: UseTracks | None = None  # those of the open (or last) segment
        self._next_tracks: UseTracks | None = None
        self._muxer: TsSegmentMuxer | None = None
        # fMP4: the fragment writer of the current stream layout, the segment file being
        # appended to, its size, and the parts cut from it.
        self._fmp4: Fmp4SegmentWriter | None = None
        self._fmp4_tracks: UseTracks | None = None
        self._segment_file: BinaryIO | None = None
        self._segment_size = 0
        self.parts: list[Part] = []
        self.map_uri: str | None = None  # the init segment, relative to the live playlist
        self.map_name: str | None = None  # the same, relative to the recording playlist
        self.open: OpenSegment | None = None

    @property
    def writing(self) -> bool:
        """A segment is open and its file or muxer is there (not abandoned)."""
        return self.open is not None and (self._muxer is not None or self._segment_file is not None)

    def use_tracks(self, tracks: UseTracks) -> None:
        """Takes effect at the next segment: a segment's streams are fixed when it opens."""
        self._next_tracks = tracks

    def open_segment(self, command: OpenSegment) -> bool:
        """Start writing a segment; True when it needed a new init segment (a new map URI)."""
        if self._next_tracks is not None:
            if self._templates is not None:
                self._templates.close()
            self.tracks, self._next_tracks = self._next_tracks, None
            self._templates = StreamTemplates(
                self.tracks.avcc, self.tracks.asc, video_codec=self.tracks.video_codec
            )
        if self._templates is None or self.tracks is None:
            raise RuntimeError("a segment was opened before any track was known")
        command.path.parent.mkdir(parents=True, exist_ok=True)
        new_map = False
        if command.segment_format == "fmp4":
            new_map = self._open_fmp4(command)
        else:
            self._muxer = TsSegmentMuxer(self._templates, partial_path(command.path))
        self.open = command
        return new_map

    def _open_fmp4(self, command: OpenSegment) -> bool:
        assert self._templates is not None and self.tracks is not None
        new_map = False
        if self._fmp4 is None or self._fmp4_tracks is not self.tracks:
            if command.init_path is None or command.init_uri is None:
                raise RuntimeError("an fMP4 segment needs an init segment path")
            # Fragment sequence numbers keep increasing over the whole broadcast.
            number = self._fmp4.sequence_number if self._fmp4 is not None else 1
            self._fmp4 = Fmp4SegmentWriter(self._templates, sequence_number=number)
            self._fmp4_tracks = self.tracks
            write_atomic(command.init_path, self._fmp4.init_segment())
            self.map_uri = command.init_uri
            self.map_name = command.init_path.name
            new_map = True
        self._segment_file = open(partial_path(command.path), "wb")  # noqa: SIM115 - see close
        self._segment_size = 0
        self.parts = []
        return new_map

    def write(self, packet: MediaPacket) -> None:
        """Raises PacketRefused for a packet the muxer will not take (the caller counts it)."""
        if self._muxer is not None:
            self._muxer.write(packet)
        elif self._fmp4 is not None and self._segment_file is not None:
            self._fmp4.write(packet)

    def part_uri(self, index: int) -> str:
        """The URI of part ``index`` of the open segment (EXT-X-PART, EXT-X-PRELOAD-HINT)."""
        assert self.open is not None
        return self._files.part_uri(self.open.sequence, index)

    def cut_part(self, cut: PartCut) -> tuple[str, bytes, Part] | None:
        """LL-HLS: the fragment since the last cut becomes a part file; returns its file name,
        bytes and playlist entry (None if nothing was written since)."""
        if self._fmp4 is None or self._segment_file is None or self.open is None:
            return None
        fragment = self._fmp4.cut()
        if not fragment:
            return None
        opened = self.open
        index = len(self.parts)
        path = self._files.part_path(opened.sequence, index)
        # The part is in the segment file too (written below): that copy is the recording.
        write_atomic(path, fragment, durable=False)
        self._segment_file.write(fragment)
        self._segment_size += len(fragment)
        part = Part(self.part_uri(index), cut.duration_ms, cut.independent)
        self.parts.append(part)
        return path.name, fragment, part

    def finish_fmp4_fragment(self) -> None:
        """fMP4 without LL-HLS parts: the segment's media is one fragment."""
        if self._fmp4 is not None and self._segment_file is not None:
            fragment = self._fmp4.cut()
            self._segment_file.write(fragment)
            self._segment_size += len(fragment)

    def close_segment(self) -> tuple[OpenSegment, int] | None:
        """The open segment is complete: closed, renamed to its final name; (it, its size)."""
        if not self.writing:
            return None
        assert self.open is not None
        if self._muxer is not None:
            size = self._muxer.close()
            self._muxer = None
        else:
            assert self._segment_file is not None
            self._segment_file.close()
            self._segment_file = None
            size = self._segment_size
        opened, self.open = self.open, None
        publish_partial(opened.path)
        return opened, size

    def abandon(self) -> None:
        """A segment that was never completed is never listed; remove its partial file."""
        # It is being thrown away, maybe because its directory is gone: nothing here may fail.
        if self._muxer is not None and self.open is not None:
            with contextlib.suppress(Exception):
                self._muxer.close()
            with contextlib.suppress(OSError):
                partial_path(self.open.path).unlink(missing_ok=True)
        if self._segment_file is not None and self.open is not None:
            with contextlib.suppress(Exception):
                self._segment_file.close()
            with contextlib.suppress(OSError):
                partial_path(self.open.path).unlink(missing_ok=True)
        self._muxer = None
        self._segment_file = None
        self.open = None

    def close(self) -> None:
        if self._templates is not None:
            self._templates.close()
