"""Export a recorded broadcast (its MPEG-TS or fMP4 segments) as MP4: copied packets, never
re-encoded.

fMP4 segments (``.m4s``: moof+mdat only) are read with their init segment (the latest
``init-NNNNNN.mp4`` beside them, see storage/layout.py) prepended in memory; a segment is a few MB.

Calls here block (file reads, muxing): run them in a worker thread, never on the event loop.

The broadcast timeline
    Segments of one broadcast normally form one continuous timeline (see muxer.TIMESTAMP_OFFSET).
    After a crash or an encoder clock jump the next segment may start earlier than the previous one
    ended, or much later. Such a step is a discontinuity: the segment is shifted so that it starts
    where the previous one ended. The shift is the same for every track of a segment, so audio and
    video keep their relative offset. Time 0 is the first video frame of the first segment (the
    first audio frame for audio-only broadcasts); ``start``/``end`` are seconds on that timeline.

Exact clips without decoding
    Video can only start at a keyframe. Every packet is shifted so that ``start`` maps to 0: the
    frames from the keyframe at or before ``start`` get negative timestamps and FFmpeg's mov muxer
    writes an edit list that hides them (they are decoded as references, never shown). At the other
    end, video packets are kept while their decode time is before ``end``: every frame shown before
    ``end`` and every reference it needs has an earlier decode time. Frames among them that would be
    shown at or after ``end`` get their presentation time clamped to ``end`` with no duration, so
    the track (and its edit list) ends exactly at ``end``.

    AAC frames (21.3 ms at 48 kHz) cannot be split either. Frames overlapping an edge are kept:
    dropping them would leave up to a frame of silence at the edge and a decoder without the
    overlap it needs to reconstruct the first shown samples. At the start the edit list hides the
    part before ``start``; at the end the audio may run on by less than one AAC frame.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
from av.bitstream import BitStreamFilterContext

from periscope_ingest.media.errors import error_text
from periscope_ingest.storage.layout import init_segment_for

# Our segments count time in 90 kHz ticks (MPEG-TS); everything here stays in that unit.
TICKS_PER_SECOND = 90_000
_TICK = Fraction(1, TICKS_PER_SECOND)
# A forward step larger than this between two segments is a gap to close, not a timeline.
MAX_GAP = TICKS_PER_SECOND
# Consecutive segments overlap slightly at their edges (audio of the next segment can start a
# few ms before the last video frame of the previous one ends). A larger overlap is a backward
# step of the clock.
MAX_OVERLAP = TICKS_PER_SECOND // 2
# Sample entry names in MP4 (HEVC must be hvc1, not hev1, for Apple players).
_MP4_TAGS = {"h264": "avc1", "hevc": "hvc1", "av1": "av01", "libdav1d": "av01", "aac": "mp4a"}
# Fragments of a streamed export: at video keyframes, but not shorter than this.
MIN_FRAGMENT_US = 1_000_000
# Audio-only streamed exports have no keyframes worth cutting at (every AAC frame is one).
AUDIO_FRAGMENT_US = 2_000_000


@dataclass(frozen=True, slots=True)
class ExportInfo:
    duration: float  # seconds of the output
    size: int  # bytes written
    video: bool
    audio: bool


class ExportError(Exception):
    """The export cannot be made; the message says why (no media in range, unreadable input...)."""


def export_mp4(
    segments: Sequence[Path],
    out: BinaryIO | Path,
    *,
    start: float | None = None,
    end: float | None = None,
) -> ExportInfo:
    """Write a complete MP4 with its index (moov) before the media (mdat), so players seek at once.

    FFmpeg's faststart pass rereads the finished file by name, so a file object gets the MP4 via a
    temporary file (a Path is written in place: the caller gives a temporary name and renames it).
    """
    if isinstance(out, Path):
        return _export(segments, str(out), {"movflags": "+faststart"}, start, end, out)
    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        path = Path(tmp) / "export.mp4"
        info = _export(segments, str(path), {"movflags": "+faststart"}, start, end, path)
        with path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return info


def stream_mp4(
    segments: Sequence[Path],
    write: Callable[[bytes], None],
    *,
    start: float | None = None,
    end: float | None = None,
) -> ExportInfo:
    """Write a fragmented MP4 through ``write`` while it is produced; memory stays bounded.

    The init segment (ftyp + moov without samples) comes after the first fragment is cut
    (delay_moov), because only then does the muxer know the edit list and the AAC configuration;
    fragments follow at keyframes, and an mfra index at the end lets players seek.
    """
    sink = _CallbackSink(write)
    return _export(segments, sink, None, start, end, None)


# -- reading segments ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    """A segment and its extent on its own clock, in 90 kHz ticks; opened when it is read."""

    path: Path
    # The extent of the video (audio when there is none): the track segments are cut by, whose
    # first frame is where a clip may begin and whose continuity defines the timeline. Audio of
    # a segment starts and ends a few ms away from it and simply follows.
    first: int  # presentation time of the first frame
    end: int  # presentation end of the last frame
    container: av.container.InputContainer | None = None

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def _ticks(value: int | None, time_base: Fraction | None) -> int | None:
    if value is None or time_base is None:
        return None
    return round(value * time_base * TICKS_PER_SECOND)


def _scaled(value: int, num: int, den: int) -> int:
    """``round(value * num / den)`` in integers (halves to even, as round() of a Fraction)."""
    q, r = divmod(value * num, den)
    return q + (2 * r > den or (2 * r == den and q % 2 == 1))


def _fmp4_bytes(path: Path) -> bytes:
    init = init_segment_for(path)
    if init is None:
        raise ExportError(f"fMP4 segment {path} has no init segment beside it")
    return init.read_bytes() + path.read_bytes()


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


def _open_segment(path: Path) -> _Segment:
    """Open a segment; FFmpeg has read its first packets and the end of the file by then."""
    fmp4 = path.suffix == ".m4s"
    try:
        if fmp4:
            data = _fmp4_bytes(path)
            extents = _fmp4_extents(data)
            container = av.open(io.BytesIO(data), format="mp4")
        else:
            container = av.open(str(path), format="mpegts")
    except (OSError, av.FFmpegError) as exc:
        raise ExportError(f"cannot read segment {path}: {error_text(exc)}") from exc
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
        raise ExportError(f"segment {path} holds no audio or video")
    return _Segment(path, *extent, container)


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


def _ts_video_extent(path: Path, frame: int) -> tuple[int, int] | None:
    """The video extent of a TS segment from its PES headers (first frame's PTS; latest PTS of its
    last frames plus one frame), as FFmpeg measures it but without opening the file: a few hundred
    KB read. None when no video PES is found there."""
    try:
        with path.open("rb") as file:
            head = file.read(_HEAD_BYTES)
            size = file.seek(0, io.SEEK_END)
            tail_at = max(0, size - _TAIL_BYTES)
            tail_at -= tail_at % _TS_PACKET
            file.seek(tail_at)
            tail = file.read()
            lasts = _video_pts(tail)
            if len(lasts) < _TAIL_FRAMES and tail_at > 0:
                # Too few frames to be sure the latest presentation time is among them.
                file.seek(0)
                lasts = _video_pts(file.read())
    except OSError as exc:
        raise ExportError(f"cannot read segment {path}: {error_text(exc)}") from exc
    firsts = _video_pts(head, 1)
    if not firsts or not lasts:
        return None
    first, last = firsts[0], max(lasts)
    if last < first:
        last += _PTS_WRAP  # the 33-bit clock wrapped within the segment
    return first, last + frame


def _quick_open(segment: _Segment) -> None:
    """Open a segment placed from its PES headers, without probing its streams."""
    try:
        container = av.open(str(segment.path), format="mpegts", options=_QUICK_TS_OPTIONS)
    except (OSError, av.FFmpegError) as exc:
        raise ExportError(f"cannot read segment {segment.path}: {error_text(exc)}") from exc
    segment.container = container


def _placed(paths: Sequence[Path]) -> Iterator[tuple[_Segment, int]]:
    """Place segments in order; yield each with the shift that puts it on the broadcast timeline.

    The first segment is opened (its streams are the output's templates); later TS segments with
    video are placed from their PES headers and opened only when read (``container`` is None
    until then). The caller closes what it receives. ``segment time + shift`` is broadcast time.
    """
    shift = 0
    previous: _Segment | None = None
    frame = 0  # one video frame in ticks; 0 when segments must be opened to be placed
    for path in paths:
        segment = None
        if frame and path.suffix == ".ts":
            extent = _ts_video_extent(path, frame)
            if extent is not None:
                segment = _Segment(path, *extent)
        if segment is None:
            segment = _open_segment(path)
            if previous is None and path.suffix == ".ts":
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


# -- writing ------------------------------------------------------------------------------------


class _CallbackSink:
    """A write-only file object: without seek/tell, FFmpeg knows it cannot go back."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self.size = 0

    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        self._write(chunk)
        self.size += len(chunk)
        return len(chunk)


@dataclass(slots=True)
class _Track:
    stream: av.stream.Stream
    adts: BitStreamFilterContext | None  # AAC from TS carries ADTS headers; MP4 wants raw frames
    last_dts: int | None = None  # output ticks, to keep decode times strictly increasing
    end: int = 0  # latest presentation end written, output ticks
    hidden: int = 0  # frames past the end of a clip, kept as references


class _Writer:
    """Shifts, trims and muxes packets of consecutive segments into one output."""

    def __init__(
        self,
        target: str | _CallbackSink,
        options: dict[str, str] | None,
        start: int,
        end: int | None,
    ) -> None:
        self._target = target
        self._options = options
        self._start = start
        self._end = end
        self._output: av.container.OutputContainer | None = None
        self._tracks: dict[str, _Track] = {}
        # Video of a clip: packets since the last keyframe at or before ``start``, held until
        # it is clear no later keyframe still precedes ``start``.
        self._preroll: list[av.Packet] | None = [] if start > 0 else None

    def _open(self, segment: _Segment) -> None:
        streams = {s.type: s for s in segment.container.streams if s.type in ("video", "audio")}
        if isinstance(self._target, str):
            options = self._options or {}
        elif "video" in streams:
            options = {
                "movflags": "+frag_keyframe+empty_moov+delay_moov+default_base_moof",
                "min_frag_duration": str(MIN_FRAGMENT_US),
            }
        else:
            options = {
                "movflags": "+empty_moov+delay_moov+default_base_moof",
                "frag_duration": str(AUDIO_FRAGMENT_US),
            }
        output = av.open(self._target, mode="w", format="mp4", options=options)
        for kind, template in streams.items():
            # AV1 templates carry the decoder (libdav1d), which names no encoder: reuse it.
            opaque = True if template.codec_context.name in ("av1", "libdav1d") else None
            stream = output.add_stream_from_template(template, opaque=opaque)
            adts = None
            if kind == "audio":
                # Also hands the AAC configuration (from the first ADTS header) to the muxer.
                adts = BitStreamFilterContext("aac_adtstoasc", template, stream)
            # The filter copied the TS stream type as codec tag; MP4 wants its own.
            stream.codec_context.codec_tag = _MP4_TAGS.get(template.codec_context.name, "")
            self._tracks[kind] = _Track(stream, adts)
        self._output = output

    def copy(self, segment: _Segment, shift: int) -> None:
        if segment.container is None:
            if self._output is None:
                # The output's streams are made from this one: its parameters must be probed.
                segment.container = _open_segment(segment.path).container
            else:
                _quick_open(segment)
        container = segment.container
        assert container is not None
        if self._output is None:
            self._open(segment)
        offset = shift - self._start
        end = None if self._end is None else self._end - self._start
        # Per input stream: its kind and, unless it counts in ticks already, its time base (fMP4
        # audio counts in samples) as integers, so that packets are converted without Fractions.
        scales: dict[int, tuple[str, int, int] | None] = {}
        streams = []
        for stream in container.streams:
            if stream.type not in self._tracks:
                continue
            streams.append(stream)
            base = stream.time_base
            scales[stream.index] = (
                None
                if base is None or base == _TICK
                else (stream.type, base.numerator * TICKS_PER_SECOND, base.denominator)
            )
        kinds = {s.index: s.type for s in streams}
        durations = {"video": 0, "audio": 0}  # the last known, for packets that lack one
        try:
            for packet in container.demux(streams):
                dts = packet.dts
                pts = packet.pts
                if dts is None or pts is None:
                    continue  # the demuxer's end-of-stream marker
                index = packet.stream_index
                kind = kinds[index]
                duration = packet.duration
                scale = scales[index]
                if scale is not None:
                    _, num, den = scale
                    dts = _scaled(dts, num, den)
                    pts = _scaled(pts, num, den)
                    duration = _scaled(duration, num, den) if duration else 0
                    packet.time_base = _TICK
                    packet.duration = duration
                if duration:
                    durations[kind] = duration
                elif durations[kind]:
                    packet.duration = durations[kind]
                packet.dts = dts + offset
                packet.pts = pts + offset
                if kind == "video":
                    self._video(packet, end)
                else:
                    self._audio(packet, end)
        except av.FFmpegError as exc:
            raise ExportError(f"cannot read segment {segment.path}: {error_text(exc)}") from exc

    def _video(self, packet: av.Packet, end: int | None) -> None:
        if end is not None and packet.dts >= end:
            return
        if self._preroll is not None:
            if packet.is_keyframe and packet.pts <= 0:
                self._preroll.clear()  # a later keyframe still at or before start
            elif not packet.is_keyframe and not self._preroll and packet.dts < 0:
                return  # no keyframe yet: nothing could decode this
            elif packet.is_keyframe or packet.dts >= 0:
                self._flush_preroll()  # everything from here on is needed
                self._mux("video", packet, end)
                return
            self._preroll.append(packet)
            return
        self._mux("video", packet, end)

    def _flush_preroll(self) -> None:
        held, self._preroll = self._preroll or [], None
        for packet in held:
            self._mux("video", packet, None)

    def _audio(self, packet: av.Packet, end: int | None) -> None:
        if packet.pts + (packet.duration or 0) <= 0:
            return  # entirely before start
        if end is not None and packet.pts >= end:
            return
        self._mux("audio", packet, end)

    def _mux(self, kind: str, packet: av.Packet, end: int | None) -> None:
        assert self._output is not None
        track = self._tracks[kind]
        if track.last_dts is not None and packet.dts <= track.last_dts:
            return  # overlap left at a segment junction: keep decode times increasing
        if kind == "video" and end is not None and packet.pts + (packet.duration or 0) > end:
            if packet.pts >= end:
                # A reference frame shown after the end: decoded, but outside the edit. One tick,
                # not zero: the muxer would replace a zero duration with a whole frame.
                # Distinct times keep the presentation order unambiguous.
                packet.pts = max(end + track.hidden, packet.dts)
                packet.duration = 1
                track.hidden += 1
            else:
                packet.duration = end - packet.pts  # the last frame is shown until the end
        track.last_dts = packet.dts
        track.end = max(track.end, packet.pts + (packet.duration or 0))
        packet.stream = track.stream
        if track.adts is None:
            self._output.mux_one(packet)
            return
        for raw in track.adts.filter(packet):
            raw.stream = track.stream
            self._output.mux_one(raw)

    def close(self) -> tuple[float, bool, bool]:
        """Finish the file; returns (duration s, video, audio). Raises if nothing was written."""
        if self._preroll and any(p.pts + (p.duration or 0) > 0 for p in self._preroll):
            self._flush_preroll()  # the input ended before a frame decoded after start
        video = self._tracks.get("video")
        audio = self._tracks.get("audio")
        wrote = any(t.last_dts is not None for t in self._tracks.values())
        if self._output is not None:
            try:
                self._output.close()
            except av.FFmpegError as exc:
                if wrote:
                    raise ExportError(f"cannot finish the MP4: {error_text(exc)}") from exc
        if not wrote:
            raise ExportError("no media in the requested range")
        ends = [t.end for t in (video, audio) if t is not None and t.last_dts is not None]
        duration = max(ends)
        if self._end is not None:
            duration = min(duration, self._end - self._start) if audio is None else duration
        return (
            duration / TICKS_PER_SECOND,
            video is not None and video.last_dts is not None,
            audio is not None and audio.last_dts is not None,
        )


def _export(
    segments: Sequence[Path],
    target: str | _CallbackSink,
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
    writer = _Writer(target, options, start_ticks, end_ticks)
    held: tuple[_Segment, int] | None = None  # the latest segment beginning at or before start
    broadcast_end = 0
    try:
        for segment, shift in _placed(segments):
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
                writer.copy(*held)
                held[0].close()
                held = None
            if end_ticks is not None and begins >= end_ticks:
                segment.close()
                break
            writer.copy(segment, shift)
            segment.close()
        if held is not None:
            writer.copy(*held)
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
