"""Fmp4SegmentWriter and StreamTemplates with H.264, HEVC and AV1 from real PyAV encoders.

The streams are encoded here (libx264, libx265, libsvtav1 + AAC) into an in-memory FLV, read back
tag by tag with our own FLV parser and turned into MediaPackets the way the live pipeline does.
"""

from __future__ import annotations

import io
import math
import statistics
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import av
import pytest

from periscope_ingest.media.flv import (
    AudioFrame,
    AudioSequenceStart,
    VideoFrame,
    VideoSequenceStart,
    parse_audio,
    parse_video,
)
from periscope_ingest.media.muxer import (
    TIMESTAMP_OFFSET,
    Fmp4SegmentWriter,
    StreamTemplates,
    TsSegmentMuxer,
)
from periscope_ingest.media.packets import MediaPacket

AUDIO_RATE = 48_000
FPS = 30


# --- encoding real streams -----------------------------------------------------------------


@dataclass
class EncodedStream:
    video_codec: str = ""
    video_record: bytes | None = None
    asc: bytes | None = None
    packets: list[MediaPacket] = field(default_factory=list)

    def templates(self, *, audio: bool = True) -> StreamTemplates:
        asc = self.asc if audio else None
        return StreamTemplates(self.video_record, asc, video_codec=self.video_codec)


def _video_frame(width: int, height: int, index: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for k, plane in enumerate(frame.planes):
        row = bytes(((x * 3 + index * 7 + k * 50) & 0xFF) for x in range(plane.line_size))
        plane.update(row * plane.height)
    frame.pts = index
    return frame


def _audio_frame(index: int) -> av.AudioFrame:
    frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
    tone = [
        0.2 * math.sin(2 * math.pi * 440 * (index * 1024 + i) / AUDIO_RATE) for i in range(1024)
    ]
    data = struct.pack("<1024f", *tone)
    for plane in frame.planes:
        plane.update(data)
    frame.sample_rate = AUDIO_RATE
    frame.pts = index * 1024
    return frame


def encode_flv(
    codec: str,
    width: int,
    height: int,
    seconds: float,
    *,
    gop: int = FPS,
    audio: bool = True,
    options: dict[str, str] | None = None,
) -> bytes:
    """An FLV file (Enhanced RTMP for HEVC/AV1, as FFmpeg 8.1 writes it) encoded in memory."""
    buffer = io.BytesIO()
    output = av.open(buffer, "w", format="flv")
    video = output.add_stream(codec, rate=FPS)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.gop_size = gop
    if options:
        video.options = options
    sound = None
    if audio:
        sound = output.add_stream("aac", rate=AUDIO_RATE)
        sound.layout = "stereo"
    audio_frames = int(seconds * AUDIO_RATE / 1024)
    written = 0
    for i in range(int(seconds * FPS)):
        output.mux(video.encode(_video_frame(width, height, i)))
        while (
            sound is not None
            and written < audio_frames
            and written * 1024 * FPS <= (i + 1) * AUDIO_RATE
        ):
            output.mux(sound.encode(_audio_frame(written)))
            written += 1
    output.mux(video.encode(None))
    if sound is not None:
        output.mux(sound.encode(None))
    output.close()
    return buffer.getvalue()


def flv_tags(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    pos = int.from_bytes(data[5:9], "big") + 4
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ms = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        yield data[pos] & 0x1F, ms, data[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


@cache
def encoded(codec: str, width: int = 640, height: int = 360, seconds: float = 3.0) -> EncodedStream:
    """Encode once per parameter set (x265/SVT-AV1 are slow) and parse it like the live path."""
    flv = encode_flv(codec, width, height, seconds)
    stream = EncodedStream()
    video: list[tuple[int, int, bool, bytes]] = []
    audio: list[tuple[int, bytes]] = []
    for tag_type, ms, body in flv_tags(flv):
        if tag_type == 9:
            for item in parse_video(body):
                if isinstance(item, VideoSequenceStart):
                    stream.video_codec, stream.video_record = item.codec, item.record
                elif isinstance(item, VideoFrame):
                    video.append((ms, ms + item.composition_offset, item.keyframe, item.data))
        elif tag_type == 8:
            for item in parse_audio(body):
                if isinstance(item, AudioSequenceStart):
                    stream.asc = item.record
                elif isinstance(item, AudioFrame):
                    audio.append((ms, item.data))
    packets = []
    for i, (dts, pts, key, data) in enumerate(video):
        duration = (video[i + 1][0] - dts) * 90 if i + 1 < len(video) else 90_000 // FPS
        packets.append(MediaPacket("video", dts * 90, pts * 90, key, data, duration))
    audio_ticks = 1024 * 90_000 // AUDIO_RATE
    for i, (_ms, data) in enumerate(audio):
        start = audio[0][0] * 90 + i * audio_ticks  # from the sample count, like the timeline
        packets.append(MediaPacket("audio", start, start, False, data, audio_ticks))
    packets.sort(key=lambda p: (p.dts, p.track != "video"))
    stream.packets = packets
    return stream


# --- reading fMP4 back ---------------------------------------------------------------------


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, body start, end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    found = []
    while start < end:
        size = int.from_bytes(data[start : start + 4], "big")
        assert size >= 8, f"bad box size {size} at {start}"
        found.append((data[start + 4 : start + 8], start + 8, start + size))
        start += size
    assert start == end, "boxes overrun their container"
    return found


@dataclass
class TrafInfo:
    track_id: int
    decode_time: int
    durations: list[int]
    sizes: list[int]


def fragment_info(fragment: bytes) -> tuple[int, list[TrafInfo]]:
    """The mfhd sequence number and, per traf, tfdt and the trun samples."""
    top = boxes(fragment)
    assert [kind for kind, *_ in top] == [b"moof", b"mdat"]
    _, moof_start, moof_end = top[0]
    sequence = 0
    trafs = []
    for kind, start, end in boxes(fragment, moof_start, moof_end):
        if kind == b"mfhd":
            sequence = int.from_bytes(fragment[start + 4 : start + 8], "big")
            continue
        assert kind == b"traf"
        info = TrafInfo(0, 0, [], [])
        for child, body, child_end in boxes(fragment, start, end):
            if child == b"tfhd":
                info.track_id = int.from_bytes(fragment[body + 4 : body + 8], "big")
            elif child == b"tfdt":
                assert fragment[body] == 1
                info.decode_time = int.from_bytes(fragment[body + 4 : body + 12], "big")
            elif child == b"trun":
                flags = int.from_bytes(fragment[body + 1 : body + 4], "big")
                count = int.from_bytes(fragment[body + 4 : body + 8], "big")
                stride = 16 if flags & 0x800 else 12
                for i in range(count):
                    sample = body + 12 + i * stride
                    info.durations.append(int.from_bytes(fragment[sample : sample + 4], "big"))
                    info.sizes.append(int.from_bytes(fragment[sample + 4 : sample + 8], "big"))
                assert body + 12 + count * stride == child_end
        trafs.append(info)
    mdat_size = top[1][2] - top[1][1]
    assert sum(sum(t.sizes) for t in trafs) == mdat_size
    return sequence, trafs


def decode_all(data: bytes) -> tuple[dict[str, int], list[tuple[str, int, int]]]:
    """Demux and decode an fMP4 byte string; returns frames per track and (track, dts, pts)."""
    frames = {"video": 0, "audio": 0}
    timestamps = []
    with av.open(io.BytesIO(data), format="mp4") as container:
        for packet in container.demux():
            if packet.dts is None:
                for _frame in packet.decode():  # flush
                    frames[packet.stream.type] += 1
                continue
            scale = packet.time_base * 90_000
            timestamps.append(
                (packet.stream.type, round(packet.dts * scale), round(packet.pts * scale))
            )
            frames[packet.stream.type] += len(packet.decode())
    return frames, timestamps


def write_parts(
    stream: EncodedStream, writer: Fmp4SegmentWriter, part_ms: int = 333
) -> list[bytes]:
    """Cut like an LL-HLS worker: before each keyframe and whenever a part reached part_ms."""
    fragments = []
    part_start: int | None = None
    for packet in stream.packets:
        if packet.track == "video":
            due = part_start is not None and packet.pts - part_start >= part_ms * 90
            if part_start is not None and (packet.keyframe or due):
                fragments.append(writer.cut())
                part_start = None
            if part_start is None:
                part_start = packet.pts
        writer.write(packet)
    fragments.append(writer.cut())
    return [f for f in fragments if f]


CODECS = ["libx264", "libx265", "libsvtav1"]
FOURCC = {"libx264": "avc1", "libx265": "hvc1", "libsvtav1": "av01"}


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_templates_carry_the_record_as_extradata(codec: str) -> None:
    stream = encoded(codec)
    assert stream.video_codec == FOURCC[codec]
    templates = stream.templates()
    try:
        assert templates.video is not None and templates.audio is not None
        assert templates.video.codec_context.extradata == stream.video_record
        assert templates.audio.codec_context.extradata == stream.asc
    finally:
        templates.close()


def test_templates_reject_unknown_codecs() -> None:
    with pytest.raises(ValueError, match="vp09"):
        StreamTemplates(b"\x01", None, video_codec="vp09")


@pytest.mark.parametrize("codec", CODECS)
def test_init_segment_is_cmaf_and_describes_the_streams(codec: str) -> None:
    stream = encoded(codec)
    templates = stream.templates()
    try:
        init = Fmp4SegmentWriter(templates).init_segment()
    finally:
        templates.close()
    top = boxes(init)
    assert [kind for kind, *_ in top] == [b"ftyp", b"moov"]
    ftyp = init[top[0][1] : top[0][2]]
    brands = {ftyp[i : i + 4] for i in range(8, len(ftyp), 4)}
    assert b"cmfc" in brands and b"iso6" in brands
    assert b"mvex" in init and b"trex" in init
    assert FOURCC[codec].encode() in init  # the sample entry: hvc1 (not hev1) for HEVC
    with av.open(io.BytesIO(init), format="mp4") as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (640, 360)
        assert video.codec_tag == FOURCC[codec]
        assert container.streams.audio[0].codec_context.sample_rate == AUDIO_RATE
        assert container.streams.audio[0].time_base.denominator == AUDIO_RATE


@pytest.mark.parametrize("codec", CODECS)
def test_fragments_decode_after_the_init_segment_with_exact_timestamps(codec: str) -> None:
    stream = encoded(codec)
    templates = stream.templates()
    try:
        writer = Fmp4SegmentWriter(templates)
        init = writer.init_segment()
        fragments = write_parts(stream, writer)
    finally:
        templates.close()
    assert len(fragments) >= 9  # 3 s at ~1/3 s per part
    frames, timestamps = decode_all(init + b"".join(fragments))
    videos = [p for p in stream.packets if p.track == "video"]
    audios = [p for p in stream.packets if p.track == "audio"]
    assert frames == {"video": len(videos), "audio": len(audios)}
    expected = sorted(
        (p.track, p.dts + TIMESTAMP_OFFSET, p.pts + TIMESTAMP_OFFSET) for p in stream.packets
    )
    assert sorted(timestamps) == expected


@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_each_fragment_has_the_right_tfdt_sequence_and_durations(codec: str) -> None:
    stream = encoded(codec)
    templates = stream.templates()
    try:
        writer = Fmp4SegmentWriter(templates, sequence_number=7)
        packets: list[list[MediaPacket]] = [[]]
        fragments = []
        for packet in stream.packets:
            if packet.track == "video" and packet.keyframe and packets[-1]:
                fragments.append(writer.cut())
                packets.append([])
            writer.write(packet)
            packets[-1].append(packet)
        fragments.append(writer.cut())
    finally:
        templates.close()
    assert stream.packets[0].track == "video" and stream.packets[0].keyframe
    assert len(fragments) == sum(p.keyframe for p in stream.packets) >= 3
    next_video_dts = [next(p.dts for p in group if p.track == "video") for group in packets[1:]] + [
        None
    ]
    for number, (fragment, group, following) in enumerate(
        zip(fragments, packets, next_video_dts, strict=True), start=7
    ):
        sequence, trafs = fragment_info(fragment)
        assert sequence == number
        video, audio = trafs  # video is track 1, audio track 2
        assert (video.track_id, audio.track_id) == (1, 2)
        group_video = [p for p in group if p.track == "video"]
        group_audio = [p for p in group if p.track == "audio"]
        assert video.decode_time == group_video[0].dts + TIMESTAMP_OFFSET  # 90 kHz timescale
        assert audio.decode_time == (group_audio[0].dts + TIMESTAMP_OFFSET) * AUDIO_RATE // 90_000
        assert video.sizes == [len(p.data) for p in group_video]
        assert audio.durations == [1024] * len(group_audio)
        if following is not None:
            assert sum(video.durations) == following - group_video[0].dts
        else:
            assert video.durations[-1] == 3000


def test_cut_is_fast_and_empty_cut_is_empty() -> None:
    stream = encoded("libx264")
    templates = stream.templates()
    try:
        writer = Fmp4SegmentWriter(templates)
        assert writer.cut() == b""
        timings = []
        for i, packet in enumerate(stream.packets):
            writer.write(packet)
            if i % 12 == 11:
                start = time.perf_counter()
                assert writer.cut()
                timings.append(time.perf_counter() - start)
        assert not writer.pending or writer.cut()
        assert writer.cut() == b""
    finally:
        templates.close()
    assert statistics.median(timings) < 0.005  # measured ~0.02 ms


def test_video_only_and_audio_only_layouts() -> None:
    stream = encoded("libx264")
    for video, audio in ((stream.video_record, None), (None, stream.asc)):
        templates = StreamTemplates(video, audio)
        try:
            writer = Fmp4SegmentWriter(templates)
            init = writer.init_segment()
            for packet in stream.packets:
                writer.write(packet)
            frames, _ = decode_all(init + writer.cut())
        finally:
            templates.close()
        wanted_video = sum(p.track == "video" for p in stream.packets) if video else 0
        wanted_audio = sum(p.track == "audio" for p in stream.packets) if audio else 0
        assert frames == {"video": wanted_video, "audio": wanted_audio}


def test_av1_samples_lose_their_temporal_delimiters() -> None:
    stream = encoded("libsvtav1")
    first = next(p for p in stream.packets if p.track == "video")
    assert first.data[0] >> 3 & 0x0F == 2  # Enhanced RTMP forwards the temporal delimiter
    templates = stream.templates(audio=False)
    try:
        writer = Fmp4SegmentWriter(templates)
        writer.write(first)
        _, [traf] = fragment_info(writer.cut())
    finally:
        templates.close()
    assert traf.sizes == [len(first.data) - 2]


# --- MPEG-TS with the new codecs -----------------------------------------------------------


def _pmt_stream_types(data: bytes) -> list[int]:
    pmt_pid = None
    for pos in range(0, len(data), 188):
        packet = data[pos : pos + 188]
        pid = (packet[1] & 0x1F) << 8 | packet[2]
        section = packet[5 + packet[4] :]
        if pid == 0:
            pmt_pid = (section[10] & 0x1F) << 8 | section[11]
        elif pid == pmt_pid:
            end = 3 + ((section[1] & 0x0F) << 8 | section[2]) - 4
            pos = 12 + ((section[10] & 0x0F) << 8 | section[11])
            types = []
            while pos < end:
                types.append(section[pos])
                pos += 5 + ((section[pos + 3] & 0x0F) << 8 | section[pos + 4])
            return types
    raise AssertionError("no PMT")


def test_hevc_in_mpegts_is_annex_b_with_stream_type_0x24(tmp_path: Path) -> None:
    stream = encoded("libx265")
    templates = stream.templates()
    path = tmp_path / "000000.ts"
    try:
        muxer = TsSegmentMuxer(templates, path)
        for packet in stream.packets:
            muxer.write(packet)
        muxer.close()
    finally:
        templates.close()
    data = path.read_bytes()
    assert _pmt_stream_types(data) == [0x24, 0x0F]  # HEVC, AAC (ADTS)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        assert video.codec_context.name == "hevc"
        frames = sum(len(p.decode()) for p in container.demux(video))
    assert frames >= sum(p.track == "video" for p in stream.packets) - 3  # decoder delay


def test_av1_is_refused_by_the_ts_muxer(tmp_path: Path) -> None:
    templates = encoded("libsvtav1").templates()
    try:
        with pytest.raises(ValueError, match="AV1"):
            TsSegmentMuxer(templates, tmp_path / "x.ts")
    finally:
        templates.close()
