"""Export a recorded broadcast (its MPEG-TS or fMP4 segments) as MP4: copied packets, never
re-encoded. Whole recordings and exact clips (``start``/``end`` in seconds on the broadcast
timeline), as a faststart file or as a fragmented MP4 streamed while it is produced.

This module decides which segments a clip needs and drives the two halves of an export:
export_read.py opens segments and places them on one broadcast timeline (discontinuities
rebased), export_mux.py shifts, trims and muxes their packets (edit lists for exact clips).
The caller gives the segments (paths of files, or `SegmentSource`s: media/segment_source.py,
e.g. objects of the store read in ranges) and, for fMP4 segments, each one's init segment
(storage/ knows both; see storage.layout.init_segments).

Calls here block (file reads, muxing): run them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from periscope_ingest.media.export_mux import CallbackSink, Writer
from periscope_ingest.media.export_read import (
    TICKS_PER_SECOND,
    ExportError,
    ExportSegment,
    ensure_open,
    placed,
)
from periscope_ingest.media.segment_source import SegmentSource

__all__ = ["ExportError", "ExportInfo", "export_mp4", "stream_mp4"]

Segment = Path | SegmentSource
_NO_INITS: Mapping[Segment, Segment] = {}


@dataclass(frozen=True, slots=True)
class ExportInfo:
    duration: float  # seconds of the output
    size: int  # bytes written
    video: bool
    audio: bool


def export_mp4(
    segments: Sequence[Segment],
    out: BinaryIO | Path,
    *,
    start: float | None = None,
    end: float | None = None,
    inits: Mapping[Segment, Segment] = _NO_INITS,
) -> ExportInfo:
    """Write a complete MP4 with its index (moov) before the media (mdat), so players seek at once.

    FFmpeg's faststart pass rereads the finished file by name, so a file object gets the MP4 via a
    temporary file (a Path is written in place: the caller gives a temporary name and renames it).
    ``inits`` maps each fMP4 segment to its init segment.
    """
    if isinstance(out, Path):
        return _export(segments, inits, str(out), {"movflags": "+faststart"}, start, end, out)
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        path = Path(tmp) / "export.mp4"
        info = _export(segments, inits, str(path), {"movflags": "+faststart"}, start, end, path)
        with path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return info


def stream_mp4(
    segments: Sequence[Segment],
    write: Callable[[bytes], None],
    *,
    start: float | None = None,
    end: float | None = None,
    inits: Mapping[Segment, Segment] = _NO_INITS,
) -> ExportInfo:
    """Write a fragmented MP4 through ``write`` while it is produced; memory stays bounded.

    The init segment (ftyp + moov without samples) comes after the first fragment is cut
    (delay_moov), because only then does the muxer know the edit list and the AAC configuration;
    fragments follow at keyframes, and an mfra index at the end lets players seek.
    ``inits`` maps each fMP4 segment to its init segment.
    """
    sink = CallbackSink(write)
    return _export(segments, inits, sink, None, start, end, None)


def _copy(writer: Writer, segment: ExportSegment, shift: int) -> None:
    ensure_open(segment, probe=not writer.started)
    writer.copy(segment, shift)


def _export(
    segments: Sequence[Segment],
    inits: Mapping[Segment, Segment],
    target: str | CallbackSink,
    options: dict[str, str] | None,
    start: float | None,
    end: float | None,
    path: Path | None,
) -> ExportInfo:
    if not segments:
        raise ExportError("no segments to export")
    if start is not None and start < 0:
        raise ExportError(f"start {start} s is before the broadcast's beginning")
    if start is not None and end is not None and start >= end:
        raise ExportError(f"start {start} s is not before end {end} s")
    start_ticks = round((start or 0) * TICKS_PER_SECOND)
    end_ticks = None if end is None else round(end * TICKS_PER_SECOND)
    writer = Writer(target, options, start_ticks, end_ticks)
    held: tuple[ExportSegment, int] | None = None  # the latest segment beginning at or before start
    broadcast_end = 0
    try:
        for segment, shift in placed(segments, inits):
            broadcast_end = max(broadcast_end, segment.end + shift)
            begins = segment.first + shift
            if end_ticks is not None and begins >= end_ticks and held is None:
                segment.close()
                break
            if begins <= start_ticks:
                # Only the last segment that begins by ``start`` is needed (its keyframe).
                if held is not None:
                    held[0].close()
                held = (segment, shift)
                continue
            if held is not None:
                _copy(writer, *held)
                held[0].close()
                held = None
            if end_ticks is not None and begins >= end_ticks:
                segment.close()
                break
            _copy(writer, segment, shift)
            segment.close()
        if held is not None:
            _copy(writer, *held)
            held[0].close()
            held = None
        try:
            duration, video, audio = writer.close()
        except ExportError as exc:
            if start_ticks >= broadcast_end:
                raise ExportError(
                    f"start {start} s is beyond the broadcast's end "
                    f"({broadcast_end / TICKS_PER_SECOND:.3f} s)"
                ) from exc
            raise
    finally:
        if held is not None:
            held[0].close()
    size = path.stat().st_size if path is not None else target.size  # type: ignore[union-attr]
    return ExportInfo(duration, size, video, audio)
