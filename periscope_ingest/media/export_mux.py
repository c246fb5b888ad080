"""The writing half of an export: shifts, trims and muxes packets of placed segments into MP4.

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

from collections.abc import Callable
from dataclasses import dataclass

import av
from av.bitstream import BitStreamFilterContext

from periscope_ingest.media.errors import error_text
from periscope_ingest.media.export_read import TICK, TICKS_PER_SECOND, ExportError, ExportSegment

# Sample entry names in MP4 (HEVC must be hvc1, not hev1, for Apple players).
_MP4_TAGS = {"h264": "avc1", "hevc": "hvc1", "av1": "av01", "libdav1d": "av01", "aac": "mp4a"}
# Fragments of a streamed export: at video keyframes, but not shorter than this.
MIN_FRAGMENT_US = 1_000_000
# Audio-only streamed exports have no keyframes worth cutting at (every AAC frame is one).
AUDIO_FRAGMENT_US = 2_000_000


def _scaled(value: int, num: int, den: int) -> int:
    """``round(value * num / den)`` in integers (halves to even, as round() of a Fraction)."""
    q, r = divmod(value * num, den)
    return q + (2 * r > den or (2 * r == den and q % 2 == 1))


class CallbackSink:
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


class Writer:
    """Shifts, trims and muxes packets of consecutive segments into one output."""

    def __init__(
        self,
        target: str | CallbackSink,
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

    def _open(self, segment: ExportSegment) -> None:
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

    @property
    def started(self) -> bool:
        """Whether the output exists; until then the next segment's streams must be probed, as
        the output's streams are made from them (export_read.ensure_open)."""
        return self._output is not None

    def copy(self, segment: ExportSegment, shift: int) -> None:
        """Mux the packets of an opened segment, shifted by ``shift`` onto the broadcast
        timeline and trimmed to the clip."""
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
                if base is None or base == TICK
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
                    packet.time_base = TICK
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
            raise ExportError(f"cannot read segment {segment.source}: {error_text(exc)}") from exc

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
