"""PyAV remuxing of our packets into MPEG-TS segment files. No decoding, no encoding.

Calls here block (file writes, interleaving): run them in a worker thread, never on the event loop.

PyAV gives no clean way to describe a copied stream from scratch (``add_stream("h264")`` opens an
encoder and produced broken files), so output streams are templated from a tiny in-memory FLV that
holds only the two sequence headers: the FLV demuxer turns those into streams carrying the right
extradata. The muxer then converts AVCC to Annex B and adds ADTS headers by itself.
HEVC and AV1 records go into the same tiny FLV as Enhanced RTMP sequence-start tags
(0x90 | PacketTypeSequenceStart, then the FourCC and the record); FFmpeg 8.1's FLV demuxer
turns those into hevc/av1 streams whose extradata is the record, byte for byte.

Fragmented MP4 (CMAF-style, for HLS with EXT-X-MAP and LL-HLS parts) is split in two:
FFmpeg writes the init segment (ftyp + moov: the sample entries, hvcC/av1C/esds boxes, the
brands), and `Fmp4SegmentWriter` writes each fragment (moof + mdat) itself. The mov muxer only
emits a fragment when the *next* packet arrives or on av_write_frame(NULL) with frag_custom,
and PyAV 18 exposes neither a flush call nor av_write_frame; a fresh container per fragment
writes tfdt 0 whatever movflags say. Writing moof/mdat here instead makes a fragment available
the moment the caller asks, with the exact tfdt, in well under a millisecond.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from fractions import Fraction
from pathlib import Path

import av

from periscope_ingest.media.aac import parse_asc
from periscope_ingest.media.av1 import filter_sample_obus, parse_av1c
from periscope_ingest.media.avc import parse_avcc
from periscope_ingest.media.hevc import parse_hvcc
from periscope_ingest.media.packets import TICKS_PER_SECOND, MediaPacket

_TIME_BASE = Fraction(1, TICKS_PER_SECOND)
# Timestamps can be slightly negative at the start of a stream (audio before the first video
# frame) and B-frames put DTS before PTS. Shift everything by a constant so the muxer never sees
# a negative value: it would otherwise shift each segment on its own and break continuity.
TIMESTAMP_OFFSET = 10 * TICKS_PER_SECOND


def _flv_tag(tag_type: int, body: bytes) -> bytes:
    header = bytes([tag_type]) + len(body).to_bytes(3, "big") + bytes(7)
    return header + body + struct.pack(">I", 11 + len(body))


# Video FourCCs StreamTemplates accepts: legacy AVC, Enhanced RTMP HEVC and AV1.
VIDEO_CODECS = frozenset({"avc1", "hvc1", "av01"})
# Enhanced RTMP video tag header: IsExHeader | FrameType key (1 << 4) | PacketTypeSequenceStart.
_EX_SEQUENCE_START = 0x80 | 0x10 | 0x00


def _sequence_header_flv(avcc: bytes | None, asc: bytes | None, video_codec: str = "avc1") -> bytes:
    flags = (4 if asc is not None else 0) | (1 if avcc is not None else 0)
    flv = b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + bytes(4)
    if avcc is not None:
        if video_codec == "avc1":
            flv += _flv_tag(9, b"\x17\x00\x00\x00\x00" + avcc)
        else:
            flv += _flv_tag(9, bytes([_EX_SEQUENCE_START]) + video_codec.encode() + avcc)
    if asc is not None:
        flv += _flv_tag(8, b"\xaf\x00" + asc)
    return flv


class StreamTemplates:
    """Input streams to template output streams from; one per publish, reused for every segment.

    `avcc` is the video decoder configuration record: an avcC by default, or the hvcC / av1C
    record when `video_codec` is "hvc1" / "av01" (the Enhanced RTMP FourCC).
    """

    def __init__(self, avcc: bytes | None, asc: bytes | None, *, video_codec: str = "avc1") -> None:
        if avcc is None and asc is None:
            raise ValueError("a stream needs at least one track")
        if video_codec not in VIDEO_CODECS:
            raise ValueError(f"video codec {video_codec!r} is not one of {sorted(VIDEO_CODECS)}")
        self.video_codec = video_codec
        self.video_record = avcc
        self.asc = asc
        flv = _sequence_header_flv(avcc, asc, video_codec)
        # An open FLV demuxer holds 2 MiB of zeroed (so resident) context, for the whole publish
        # (#17). Output streams copy only a template's codec parameters and time base: those are
        # copied onto streams of a never-written output container (~75 KiB), the demuxer closed.
        with av.open(io.BytesIO(flv), format="flv") as source:
            streams = {s.type: s for s in source.streams}
            video = streams.get("video") if avcc is not None else None
            audio = streams.get("audio") if asc is not None else None
            if (avcc is not None and video is None) or (asc is not None and audio is None):
                raise ValueError("FFmpeg did not accept the sequence headers")
            # Matroska takes every codec we carry (H.264, HEVC, AV1, AAC).
            self._container = av.open(io.BytesIO(), mode="w", format="matroska")
            self.video = _add_stream(self._container, video) if video is not None else None
            self.audio = (
                self._container.add_stream_from_template(audio) if audio is not None else None
            )

    def close(self) -> None:
        self._container.close()


def _add_stream(
    output: av.container.OutputContainer, template: av.stream.Stream
) -> av.stream.Stream:
    # PyAV builds a new codec object from the template decoder's name unless told to reuse it
    # (opaque=True); for AV1 the decoder is "libdav1d", which names no encoder, so the default
    # path fails. Reusing the decoder object is fine: a remuxer only uses the codec parameters.
    opaque = True if template.codec_context.codec.id == _av1_codec_id() else None
    return output.add_stream_from_template(template, opaque=opaque)


@functools.cache
def _av1_codec_id() -> int:
    return av.codec.Codec("av1", "r").id


class PacketRefused(Exception):
    """The muxer would not take one packet (e.g. a timestamp that does not increase); the
    segment is still good without it."""


class TsSegmentMuxer:
    """Writes one MPEG-TS segment file; open a new one for each segment."""

    def __init__(self, templates: StreamTemplates, path: Path) -> None:
        if templates.video_codec == "av01":
            # FFmpeg 8.1 writes AV1 as stream type 0x06 (private data) that even its own demuxer
            # does not read back as video, and HLS only knows AV1 in fMP4.
            raise ValueError("AV1 cannot be muxed into MPEG-TS; use Fmp4SegmentWriter")
        # FFmpeg writes the file itself: a Python file object would call back into Python for
        # every buffer flushed (a quarter of the muxing time). Its file: protocol gives each
        # output a 256 KiB buffer, resident once a segment passed 256 KiB (#17); pipe: on our
        # descriptor writes the same bytes through 32 KiB (a dozen writes a second at 3 Mb/s)
        # once told not to flush after every packet: FFmpeg does that by default on outputs
        # it cannot seek, one write(2) per audio and video packet, each a GIL hand-over.
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            self._output = av.open(
                f"pipe:{self._fd}",
                mode="w",
                format="mpegts",
                container_options={"flush_packets": "0"},
            )
            self._video = (
                self._output.add_stream_from_template(templates.video) if templates.video else None
            )
            self._audio = (
                self._output.add_stream_from_template(templates.audio) if templates.audio else None
            )
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, packet: MediaPacket) -> None:
        stream = self._video if packet.track == "video" else self._audio
        if stream is None:
            return
        out = av.Packet(packet.data)
        out.stream = stream
        out.time_base = _TIME_BASE
        out.dts = packet.dts + TIMESTAMP_OFFSET
        out.pts = packet.pts + TIMESTAMP_OFFSET
        out.duration = packet.duration
        out.is_keyframe = packet.keyframe
        try:
            self._output.mux(out)
        except av.error.FFmpegError as exc:
            raise PacketRefused(f"{packet.track} packet at dts {packet.dts}: {exc}") from exc

    def close(self) -> int:
        """Flush and close; returns the file size. The descriptor is closed once, whatever."""
        try:
            self._output.close()
        finally:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)
        return self._path.stat().st_size


# --- fragmented MP4 -----------------------------------------------------------------------------

# The init segment: an empty moov with mvex (fragmented), tfhd default-base-is-moof, CMAF brands
# (iso6, cmfc). frag_custom + skip_trailer keep FFmpeg from ever writing a fragment or an mfra.
_INIT_MOVFLAGS = "empty_moov+default_base_moof+frag_custom+cmaf+skip_trailer"

# tfhd flags: default-base-is-moof (data offsets count from the moof's first byte).
_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
# trun flags: data-offset, sample-duration, sample-size, sample-flags (+ composition offsets).
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400
_TRUN_CTS_OFFSETS = 0x000800
# Sample flags (14496-12 8.8.3.1): sample_depends_on = 2 for sync samples (and every audio
# sample); sample_depends_on = 1 plus sample_is_non_sync_sample for the rest.
_SYNC_SAMPLE = 0x02000000
_NON_SYNC_SAMPLE = 0x01010000


class _Collector:
    """A write-only file object PyAV can mux into; keeps what was written."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _child_boxes(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The direct children of a box body: type -> (body start, end); first of each type."""
    found: dict[bytes, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if size < 8 or pos + size > end:
            raise ValueError(f"init segment box {kind!r} at byte {pos} has a bad size {size}")
        found.setdefault(kind, (pos + 8, pos + size))
        pos += size
    return found


def _traks(init: bytes) -> list[tuple[int, int, bytes]]:
    """(track_ID, timescale, handler type) of every trak in an init segment's moov."""
    top = _child_boxes(init, 0, len(init))
    moov_start, moov_end = top[b"moov"]
    tracks = []
    pos = moov_start
    while pos + 8 <= moov_end:
        size = int.from_bytes(init[pos : pos + 4], "big")
        if init[pos + 4 : pos + 8] == b"trak":
            trak = _child_boxes(init, pos + 8, pos + size)
            tkhd = trak[b"tkhd"][0]
            version = init[tkhd]
            track_id = int.from_bytes(init[tkhd + (20 if version else 12) :][:4], "big")
            mdia = _child_boxes(init, *trak[b"mdia"])
            mdhd = mdia[b"mdhd"][0]
            version = init[mdhd]
            timescale = int.from_bytes(init[mdhd + (20 if version else 12) :][:4], "big")
            handler = init[mdia[b"hdlr"][0] + 8 :][:4]
            tracks.append((track_id, timescale, handler))
        pos += size
    return tracks


class _FragmentTrack:
    """Samples of one track waiting for the next cut, in the track's own timescale."""

    __slots__ = (
        "cts",
        "data",
        "decode_times",
        "durations",
        "flags",
        "last_duration",
        "sizes",
        "timescale",
        "track_id",
    )

    def __init__(self, track_id: int, timescale: int) -> None:
        self.track_id = track_id
        self.timescale = timescale
        self.last_duration = 0
        self.decode_times: list[int] = []
        self.durations: list[int] = []  # of the previous samples; the last one is pending
        self.sizes: list[int] = []
        self.flags: list[int] = []
        self.cts: list[int] = []
        self.data: list[bytes] = []

    def time(self, ticks: int) -> int:
        """90 kHz ticks on our timeline -> this track's timescale (round half up)."""
        return ((ticks + TIMESTAMP_OFFSET) * self.timescale * 2 + TICKS_PER_SECOND) // (
            2 * TICKS_PER_SECOND
        )


class Fmp4SegmentWriter:
    """Fragmented MP4 for one stream layout: an init segment, then moof+mdat fragments on demand.

    `write` buffers packets (no I/O, microseconds); `cut` returns one fragment holding every
    packet written since the previous cut: one moof with a traf per track that has samples, then
    one mdat. Call `cut` at any frame boundary: before writing the first packet of a new LL-HLS
    part, and before the keyframe that starts a new segment. A segment file is the concatenation
    of its parts' fragments; each fragment decodes after `init_segment()`.

    Timing: tfdt is the first sample's DTS plus `TIMESTAMP_OFFSET` (the same constant shift the
    TS muxer applies), in the track's timescale (90 kHz video, the sample rate for audio). Sample
    durations are DTS differences; the last sample of a track in a fragment takes its packet's
    own duration (exact for audio, the timeline's estimate for video), falling back to the
    previous sample's duration when that is 0.
    """

    def __init__(self, templates: StreamTemplates, *, sequence_number: int = 1) -> None:
        if sequence_number < 1:
            raise ValueError(f"fragment sequence numbers start at 1, got {sequence_number}")
        self._sequence_number = sequence_number
        self._is_av1 = templates.video_codec == "av01"
        self._init = _init_segment(templates)
        by_handler = {handler: (track_id, ts) for track_id, ts, handler in _traks(self._init)}
        self._video = _FragmentTrack(*by_handler[b"vide"]) if templates.video else None
        self._audio = _FragmentTrack(*by_handler[b"soun"]) if templates.audio else None

    def init_segment(self) -> bytes:
        """ftyp + moov: what EXT-X-MAP points at. The same bytes on every call."""
        return self._init

    @property
    def sequence_number(self) -> int:
        """The mfhd sequence number the next fragment will carry."""
        return self._sequence_number

    @property
    def pending(self) -> bool:
        """Whether `cut` would return a non-empty fragment."""
        return any(t is not None and t.data for t in (self._video, self._audio))

    def write(self, packet: MediaPacket) -> None:
        track = self._video if packet.track == "video" else self._audio
        if track is None:
            return
        data = packet.data
        if self._is_av1 and track is self._video:
            data = filter_sample_obus(data)
        dts = track.time(packet.dts)
        if track.decode_times:
            duration = dts - track.decode_times[-1]
            if duration < 0:
                raise ValueError(
                    f"{packet.track} DTS went backwards ({packet.dts} after a later sample)"
                )
            track.durations.append(duration)
            track.last_duration = duration
        track.decode_times.append(dts)
        pending = track.time(packet.dts + packet.duration) - dts
        if pending > 0:
            track.last_duration = pending
        track.sizes.append(len(data))
        key = packet.keyframe or track is self._audio
        track.flags.append(_SYNC_SAMPLE if key else _NON_SYNC_SAMPLE)
        track.cts.append(track.time(packet.pts) - dts)
        track.data.append(data)

    def cut(self) -> bytes:
        """moof + mdat for everything written since the last cut; b"" when nothing was."""
        tracks = [t for t in (self._video, self._audio) if t is not None and t.data]
        if not tracks:
            return b""
        # Box sizes are known up front, so the data offsets can be written in one pass.
        trun_sizes = [
            20 + len(t.data) * (16 if t is self._video else 12) for t in tracks
        ]  # header 8 + version/flags 4 + count 4 + offset 4, then per-sample fields
        moof_size = 8 + 16 + sum(8 + 16 + 20 + trun for trun in trun_sizes)
        offset = moof_size + 8  # past the mdat header
        trafs = []
        for track, trun_size in zip(tracks, trun_sizes, strict=True):
            trafs.append(self._traf(track, offset, trun_size))
            offset += sum(track.sizes)
        moof = _box(b"moof", _box(b"mfhd", struct.pack(">II", 0, self._sequence_number)), *trafs)
        assert len(moof) == moof_size
        payload = [chunk for t in tracks for chunk in t.data]
        mdat_size = 8 + sum(map(len, payload))
        self._sequence_number += 1
        for track in tracks:
            self._reset(track)
        return b"".join([moof, struct.pack(">I", mdat_size), b"mdat", *payload])

    def _traf(self, track: _FragmentTrack, data_offset: int, trun_size: int) -> bytes:
        video = track is self._video
        durations = [*track.durations, track.last_duration]
        count = len(track.data)
        if video:
            fields = [
                value
                for i in range(count)
                for value in (durations[i], track.sizes[i], track.flags[i], track.cts[i])
            ]
            samples = struct.pack(">" + "IIIi" * count, *fields)
            trun_head = struct.pack(
                ">B3sIi",
                1,
                (_TRUN_FLAGS | _TRUN_CTS_OFFSETS).to_bytes(3, "big"),
                count,
                data_offset,
            )
        else:
            fields = [
                value
                for i in range(count)
                for value in (durations[i], track.sizes[i], track.flags[i])
            ]
            samples = struct.pack(">" + "III" * count, *fields)
            trun_head = struct.pack(">B3sIi", 0, _TRUN_FLAGS.to_bytes(3, "big"), count, data_offset)
        trun = _box(b"trun", trun_head, samples)
        assert len(trun) == trun_size
        return _box(
            b"traf",
            _box(b"tfhd", struct.pack(">II", _TFHD_DEFAULT_BASE_IS_MOOF, track.track_id)),
            _box(b"tfdt", struct.pack(">IQ", 1 << 24, track.decode_times[0])),
            trun,
        )

    @staticmethod
    def _reset(track: _FragmentTrack) -> None:
        track.decode_times.clear()
        track.durations.clear()
        track.sizes.clear()
        track.flags.clear()
        track.cts.clear()
        track.data.clear()


def _init_segment(templates: StreamTemplates) -> bytes:
    """ftyp + moov from FFmpeg's mov muxer, with the facts the FLV probe cannot give it."""
    collector = _Collector()
    output = av.open(collector, mode="w", format="mp4", options={"movflags": _INIT_MOVFLAGS})
    try:
        if templates.video is not None:
            video = _add_stream(output, templates.video)
            record = templates.video_record or b""
            if templates.video_codec == "hvc1":
                config = parse_hvcc(record)
                # Apple players play HEVC only from hvc1 sample entries; FFmpeg defaults to hev1.
                video.codec_tag = "hvc1"
            elif templates.video_codec == "av01":
                config = parse_av1c(record)
            else:
                config = parse_avcc(record)
            # The FLV probe reports width 0; tkhd and the sample entry need the real size.
            video.width = config.width
            video.height = config.height
            video.time_base = _TIME_BASE
        if templates.audio is not None:
            audio = output.add_stream_from_template(templates.audio)
            # The FLV probe says 44100 Hz whatever the AAC config says; the audio timescale is
            # the sample rate, so it must be the real one.
            audio.codec_context.sample_rate = parse_asc(templates.asc or b"").sample_rate
            audio.time_base = Fraction(1, audio.codec_context.sample_rate)
        output.start_encoding()
        return b"".join(collector.chunks)
    finally:
        output.close()
