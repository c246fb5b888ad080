"""Recorded segments for an export: opened, and placed on one broadcast timeline.

An export reads a broadcast's MPEG-TS or fMP4 segments in order. fMP4 segments (``.m4s``:
moof+mdat only) are read with their init segment, which the caller gives (storage/ knows
where init segments are; media/ never builds paths), prepended in memory: a segment is a few MB.
A segment is read through a `SegmentSource` (media/segment_source.py): a file on disk, or an
object in the store read in ranges; a Path is a file.
TS segments after the first are placed from their PES headers, without opening them, so that
an export can skip the segments before a clip cheaply.

The broadcast timeline
    Segments of one broadcast normally form one continuous timeline (see muxer.TIMESTAMP_OFFSET).
    After a crash or an encoder clock jump the next segment may start earlier than the previous one
    ended, or much later. Such a step is a discontinuity: the segment is shifted so that it starts
    where the previous one ended. The shift is the same for every track of a segment, so audio and
    video keep their relative offset. Time 0 is the first video frame of the first segment (the
    first audio frame for audio-only broadcasts); ``start``/``end`` are seconds on that timeline.

Calls here block (file reads, demuxing): run them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from periscope_ingest.media.errors import error_text
from periscope_ingest.media.segment_source import SegmentSource, as_source

# Our segments count time in 90 kHz ticks (MPEG-TS); everything here stays in that unit.
TICKS_PER_SECOND = 90_000
TICK = Fraction(1, TICKS_PER_SECOND)
# A forward step larger than this between two segments is a gap to close, not a timeline.
MAX_GAP = TICKS_PER_SECOND
# Consecutive segments overlap slightly at their edges (audio of the next segment can start a
# few ms before the last video frame of the previous one ends). A larger overlap is a backward
# step of the clock.
MAX_OVERLAP = TICKS_PER_SECOND // 2


class ExportError(Exception):
    """The export cannot be made; the message says why (no media in range, unreadable input...)."""


@dataclass(slots=True)
class ExportSegment:
    """A segment and its extent on its own clock, in 90 kHz ticks; opened when it is read."""

    source: SegmentSource
    # The extent of the video (audio when there is none): the track segments are cut by, whose
    # first frame is where a clip may begin and whose continuity defines the timeline. Audio of
    # a segment starts and ends a few ms away from it and simply follows.
    first: int  # presentation time of the first frame
    end: int  # presentation end of the last frame
    container: av.container.InputContainer | None = None
    init: SegmentSource | None = None  # fMP4: the init segment it is decoded with

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def _ticks(value: int | None, time_base: Fraction | None) -> int | None:
    if value is None or time_base is None:
        return None
    return round(value * time_base * TICKS_PER_SECOND)


def _fmp4_bytes(source: SegmentSource, init: SegmentSource | None) -> bytes:
    if init is None:
        raise ExportError(f"fMP4 segment {source} has no init segment beside it")
    return init.read_all() + source.read_all()


def _fmp4_extents(data: bytes) -> dict[str, tuple[int, int]]:
    """First PTS and presentation end per track of a fragment, from its packets (no decoding):
    the mov demuxer reports fragment durations from the start of the timeline, not the segment."""
    extents: dict[str, tuple[int, int]] = {}
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            if packet.pts is None or packet.stream.type not in ("video", "audio"):
                continue
            base = packet.time_base
            start = _ticks(packet.pts, base)
            end = _ticks(packet.pts + (packet.duration or 0), base)
            assert start is not None and end is not None
            kind = packet.stream.type
            first, last = extents.get(kind, (start, end))
            extents[kind] = (min(first, start), max(last, end))
    return extents


def _open_segment(source: SegmentSource, init: SegmentSource | None = None) -> ExportSegment:
    """Open a segment; FFmpeg has read its first packets and the end of the file by then."""
    fmp4 = source.suffix == ".m4s"
    try:
        if fmp4:
            data = _fmp4_bytes(source, init)
            extents = _fmp4_extents(data)
            container = av.open(io.BytesIO(data), format="mp4")
        else:
            container = av.open(source.demux_input(), format="mpegts")
    except (OSError, av.FFmpegError) as exc:
        raise ExportError(f"cannot read segment {source}: {error_text(exc)}") from exc
    if not fmp4:
        extents = {}
        for stream in container.streams:
            first = _ticks(stream.start_time, stream.time_base)
            if stream.type in ("video", "audio") and first is not None:
                length = _ticks(stream.duration, stream.time_base) or 0
                extents[stream.type] = (first, first + length)
    extent = extents.get("video") or extents.get("audio")
    if extent is None:
        container.close()
        raise ExportError(f"segment {source} holds no audio or video")
    return ExportSegment(source, *extent, container, init)


# Opening a TS segment after the first with these options costs a fifth: FFmpeg finds the streams
# in the PMT and decodes nothing to probe parameters, which the first segment already gave (its
# streams are the output's templates). Packets come out the same (the parsers time them).
_QUICK_TS_OPTIONS = {
    "probesize": "32",
    "analyzeduration": "0",
    "fpsprobesize": "0",
    "skip_estimate_duration_from_pts": "1",
}
_TS_PACKET = 188
_HEAD_BYTES = 64 * _TS_PACKET * 8  # ~96 KiB: the first video PES of a segment is at its start
_TAIL_BYTES = 256 * 1024  # holds the last frames, among which the latest presentation time
# Frames the tail must hold: B-frame reordering puts the latest presentation time a few frames
# before the end of a segment.
_TAIL_FRAMES = 16
_PTS_WRAP = 1 << 33
_VIDEO_PES_START = re.compile(rb"\x00\x00\x01[\xe0-\xef]")


def _video_pts(data: bytes, limit: int | None = None) -> list[int]:
    """PTS of the video PES packets starting in ``data`` (whole TS packets from a packet start),
    the first ``limit`` of them if given.

    A video PES begins with 00 00 01 E0-EF. Within H.264 and HEVC data a start code is never
    followed by such a byte (it would set a NAL header's forbidden bit), so the search finds
    PES headers and, rarely, bytes of other payloads: each match is kept only if it is where a
    PES starts, the payload of a TS packet flagged as a payload unit start.
    """
    found: list[int] = []
    for match in _VIDEO_PES_START.finditer(data):
        at = match.start()
        start = at - at % _TS_PACKET
        if data[start] != 0x47 or start + _TS_PACKET > len(data):
            break  # not TS, or a partial packet at the end
        if not data[start + 1] & 0x40:
            continue  # not a payload unit start
        control = data[start + 3] >> 4 & 3
        payload = start + 4 + (1 + data[start + 4] if control & 2 else 0)
        if (
            at == payload
            and control & 1
            and at + 14 <= start + _TS_PACKET
            and data[at + 7] & 0x80  # PTS present
        ):
            b = data[at + 9 : at + 14]
            found.append(
                (b[0] >> 1 & 7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
            )
            if len(found) == limit:
                break
    return found


def _ts_video_extent(source: SegmentSource, frame: int) -> tuple[int, int] | None:
    """The video extent of a TS segment from its PES headers (first frame's PTS; latest PTS of its
    last frames plus one frame), as FFmpeg measures it but without opening the file: a few hundred
    KB read. None when no video PES is found there."""
    try:
        size = source.size()
        head = source.read(0, _HEAD_BYTES)
        tail_at = max(0, size - _TAIL_BYTES)
        tail_at -= tail_at % _TS_PACKET
        # A segment shorter than the head is read once (from the store, one request fewer).
        tail = head[tail_at:] if size <= len(head) else source.read(tail_at, size)
        lasts = _video_pts(tail)
        if len(lasts) < _TAIL_FRAMES and tail_at > 0:
            # Too few frames to be sure the latest presentation time is among them.
            lasts = _video_pts(source.read_all())
    except OSError as exc:
        raise ExportError(f"cannot read segment {source}: {error_text(exc)}") from exc
    firsts = _video_pts(head, 1)
    if not firsts or not lasts:
        return None
    first, last = firsts[0], max(lasts)
    if last < first:
        last += _PTS_WRAP  # the 33-bit clock wrapped within the segment
    return first, last + frame


def _quick_open(segment: ExportSegment) -> None:
    """Open a segment placed from its PES headers, without probing its streams."""
    try:
        container = av.open(
            segment.source.demux_input(), format="mpegts", options=_QUICK_TS_OPTIONS
        )
    except (OSError, av.FFmpegError) as exc:
        raise ExportError(f"cannot read segment {segment.source}: {error_text(exc)}") from exc
    segment.container = container


def placed(
    segments: Sequence[Path | SegmentSource],
    inits: Mapping[Path | SegmentSource, Path | SegmentSource],
) -> Iterator[tuple[ExportSegment, int]]:
    """Place segments in order; yield each with the shift that puts it on the broadcast timeline.

    The first segment is opened (its streams are the output's templates); later TS segments with
    video are placed from their PES headers and opened only when read (``container`` is None
    until then; see `ensure_open`). ``inits`` maps each fMP4 segment to its init segment (Paths
    are files on disk). The caller closes what it receives. ``segment time + shift`` is
    broadcast time.
    """
    shift = 0
    previous: ExportSegment | None = None
    frame = 0  # one video frame in ticks; 0 when segments must be opened to be placed
    for given in segments:
        source = as_source(given)
        init = inits.get(given)
        segment = None
        if frame and source.suffix == ".ts":
            extent = _ts_video_extent(source, frame)
            if extent is not None:
                segment = ExportSegment(source, *extent)
        if segment is None:
            segment = _open_segment(source, None if init is None else as_source(init))
            if previous is None and source.suffix == ".ts":
                assert segment.container is not None
                video = segment.container.streams.video
                rate = video[0].guessed_rate if video else None
                if rate:
                    frame = round(TICKS_PER_SECOND / rate)
        if previous is None:
            shift = -segment.first
        else:
            step = segment.first - previous.end
            if step < -MAX_OVERLAP or step > MAX_GAP:
                # Discontinuity: continue where the previous segment ended.
                shift = previous.end + shift - segment.first
        previous = segment
        yield segment, shift


def ensure_open(segment: ExportSegment, probe: bool) -> None:
    """Open a segment `placed` left closed; `probe` when its streams must be fully known (the
    output's streams are made from them), else cheaply (see _QUICK_TS_OPTIONS)."""
    if segment.container is not None:
        return
    if probe:
        segment.container = _open_segment(segment.source, segment.init).container
    else:
        _quick_open(segment)
