"""FLV tag bodies (RTMP audio/video payloads): legacy, Enhanced RTMP v1/v2, malformed input."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.avc import CodecConfigError
from periscope_ingest.media.flv import (
    AudioFrame,
    AudioSequenceStart,
    FlvError,
    Unsupported,
    VideoFrame,
    VideoSequenceEnd,
    VideoSequenceStart,
    parse_audio,
    parse_video,
)

# avcC of a 640x360 baseline x264 stream (SPS with frame cropping 368 -> 360).
AVCC_640x360 = (
    b"\x01B\xc0\x1e\xff\xe1\x00\x18gB\xc0\x1e\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04"
    b"\x00\x00\x03\x00\xc8<X\xba\x80\x01\x00\x04h\xce\x0f\xc8"
)
HVCC = b"\x01\x01\x60\x00\x00\x00\x90\x00\x00\x00\x00\x00\x3c\xf0\x00\xfc\xfd\xf8\xf8\x00\x00\x0f"
AV1C = b"\x81\x00\x0c\x00"
NALS = b"\x00\x00\x00\x05\x65\x88\x84\x00\x10"


def si24(value: int) -> bytes:
    return value.to_bytes(3, "big", signed=True)


def ui24(value: int) -> bytes:
    return value.to_bytes(3, "big")


# --- legacy video ------------------------------------------------------------------


def test_empty_payloads_give_nothing() -> None:
    assert parse_video(b"") == []
    assert parse_audio(b"") == []


def test_legacy_avc_sequence_header() -> None:
    [item] = parse_video(b"\x17\x00\x00\x00\x00" + AVCC_640x360)
    assert isinstance(item, VideoSequenceStart)
    assert (item.codec, item.track_id, item.record) == ("avc1", 0, AVCC_640x360)
    assert item.config is not None
    assert (item.config.width, item.config.height) == (640, 360)
    assert item.config.codecs == "avc1.42c01e"


def test_legacy_avc_keyframe_with_positive_composition_time() -> None:
    assert parse_video(b"\x17\x01" + si24(80) + NALS) == [
        VideoFrame(codec="avc1", track_id=0, keyframe=True, composition_offset=80, data=NALS)
    ]


def test_legacy_avc_inter_frame_with_negative_composition_time() -> None:
    [item] = parse_video(b"\x27\x01\xff\xff\xdf" + NALS)
    assert item == VideoFrame("avc1", 0, False, -33, NALS)


@pytest.mark.parametrize(
    ("first", "keyframe"), [(0x17, True), (0x27, False), (0x37, False), (0x47, True)]
)
def test_legacy_frame_types(first: int, keyframe: bool) -> None:
    [item] = parse_video(bytes([first, 1]) + si24(0) + NALS)
    assert isinstance(item, VideoFrame)
    assert item.keyframe is keyframe


def test_legacy_avc_end_of_sequence() -> None:
    assert parse_video(b"\x17\x02\x00\x00\x00") == [VideoSequenceEnd("avc1", 0)]
    assert parse_video(b"\x17\x02") == [VideoSequenceEnd("avc1", 0)]


def test_legacy_avc_frame_without_data_is_kept_as_sent() -> None:
    assert parse_video(b"\x27\x01\x00\x00\x00") == [VideoFrame("avc1", 0, False, 0, b"")]


def test_legacy_video_info_frame_is_unsupported() -> None:
    assert parse_video(b"\x57\x00") == [
        Unsupported("video", "avc1", "video info/command frame (frame type 5)")
    ]


@pytest.mark.parametrize(
    ("first", "codec"),
    [
        (0x22, "sorenson-h263"),
        (0x14, "vp6"),
        (0x15, "vp6-alpha"),
        (0x13, "screen-video"),
        (0x1F, "codec-id-15"),
    ],
)
def test_legacy_unsupported_video_codecs(first: int, codec: str) -> None:
    [item] = parse_video(bytes([first]) + b"\x00\x01\x02")
    assert isinstance(item, Unsupported)
    assert (item.kind, item.codec) == ("video", codec)
    assert f"codec id {first & 0x0F}" in item.detail


def test_legacy_hevc_codec_id_12() -> None:
    [start] = parse_video(b"\x1c\x00\x00\x00\x00" + HVCC)
    assert start == VideoSequenceStart("hvc1", 0, None, HVCC)
    [frame] = parse_video(b"\x2c\x01" + si24(-40) + NALS)
    assert frame == VideoFrame("hvc1", 0, False, -40, NALS)


def test_legacy_undefined_avc_packet_type() -> None:
    [item] = parse_video(b"\x17\x05\x00\x00\x00")
    assert isinstance(item, Unsupported)
    assert "AVCPacketType 5" in item.detail


# --- legacy audio ------------------------------------------------------------------


def test_legacy_aac_sequence_header_and_raw() -> None:
    [start] = parse_audio(b"\xaf\x00\x11\x90")
    assert isinstance(start, AudioSequenceStart)
    assert (start.codec, start.track_id, start.record) == ("mp4a", 0, b"\x11\x90")
    assert start.config is not None
    # The FLV flags say 44.1 kHz; the ASC says 48 kHz and wins.
    assert (start.config.sample_rate, start.config.channels) == (48000, 2)
    assert parse_audio(b"\xaf\x01\x21\x10\x04") == [AudioFrame("mp4a", 0, b"\x21\x10\x04")]


def test_legacy_aac_undefined_packet_type() -> None:
    [item] = parse_audio(b"\xaf\x02\x00")
    assert isinstance(item, Unsupported)
    assert item.codec == "mp4a"


@pytest.mark.parametrize(
    ("first", "codec"),
    [
        (0x2F, "mp3"),
        (0xB6, "speex"),
        (0x3E, "pcm-le"),
        (0x0E, "pcm"),
        (0x6E, "nellymoser"),
        (0x72, "g711-alaw"),
        (0x82, "g711-mulaw"),
        (0xE2, "mp3-8k"),
        (0xC2, "sound-format-12"),
    ],
)
def test_legacy_unsupported_audio(first: int, codec: str) -> None:
    [item] = parse_audio(bytes([first]) + b"\xff\xfb")
    assert isinstance(item, Unsupported)
    assert (item.kind, item.codec) == ("audio", codec)
    assert f"SoundFormat {first >> 4}" in item.detail


def test_legacy_aac_bad_asc_raises_codec_config_error() -> None:
    with pytest.raises(CodecConfigError):
        parse_audio(b"\xaf\x00")


# --- enhanced video ------------------------------------------------------------------


def test_enhanced_hevc_packets() -> None:
    assert parse_video(b"\x90hvc1" + HVCC) == [VideoSequenceStart("hvc1", 0, None, HVCC)]
    assert parse_video(b"\x91hvc1" + si24(80) + NALS) == [VideoFrame("hvc1", 0, True, 80, NALS)]
    assert parse_video(b"\xa1hvc1" + si24(-20) + NALS) == [VideoFrame("hvc1", 0, False, -20, NALS)]
    assert parse_video(b"\xa3hvc1" + NALS) == [VideoFrame("hvc1", 0, False, 0, NALS)]
    assert parse_video(b"\x92hvc1") == [VideoSequenceEnd("hvc1", 0)]


def test_enhanced_metadata_is_unsupported() -> None:
    amf = b"\x02\x00\tcolorInfo\x03\x00\x00\x09"
    for first in (0x94, 0xD4):  # FFmpeg sends it with frame type 5 (command)
        [item] = parse_video(bytes([first]) + b"hvc1" + amf)
        assert isinstance(item, Unsupported)
        assert (item.kind, item.codec) == ("video", "hvc1")
        assert "Metadata" in item.detail


def test_enhanced_av1_and_vp9_have_no_composition_time() -> None:
    assert parse_video(b"\x90av01" + AV1C) == [VideoSequenceStart("av01", 0, None, AV1C)]
    assert parse_video(b"\x91av01\x12\x00\x0a\x0b") == [
        VideoFrame("av01", 0, True, 0, b"\x12\x00\x0a\x0b")
    ]
    assert parse_video(b"\xa3av01\x12\x00") == [VideoFrame("av01", 0, False, 0, b"\x12\x00")]
    assert parse_video(b"\x92av01") == [VideoSequenceEnd("av01", 0)]
    assert parse_video(b"\xa1vp09\x86\x00\x40") == [
        VideoFrame("vp09", 0, False, 0, b"\x86\x00\x40")
    ]


def test_enhanced_avc_sequence_start_is_parsed() -> None:
    [item] = parse_video(b"\x90avc1" + AVCC_640x360)
    assert isinstance(item, VideoSequenceStart)
    assert item.config is not None
    assert (item.config.width, item.config.height) == (640, 360)
    assert parse_video(b"\xa1avc1\xff\xff\xdf" + NALS) == [VideoFrame("avc1", 0, False, -33, NALS)]


def test_enhanced_command_frame_and_other_packets_are_unsupported() -> None:
    [command] = parse_video(b"\xd0\x01")  # frame type 5, no FourCC, VideoCommand byte
    assert isinstance(command, Unsupported)
    assert "command" in command.detail
    [ts_start] = parse_video(b"\x95av01\x00")
    assert isinstance(ts_start, Unsupported)
    assert "MPEG2TSSequenceStart" in ts_start.detail
    [unknown] = parse_video(b"\x91vp08\x00\x00")
    assert isinstance(unknown, Unsupported)
    assert unknown.codec == "vp08"
    [reserved] = parse_video(b"\x98hvc1")
    assert isinstance(reserved, Unsupported)


def test_modex_timestamp_offset_nano_wraps_coded_frames() -> None:
    # ModEx: size 3 (UI8 2 + 1), TimestampOffsetNano 500000 ns, then type byte 0x01.
    payload = b"\x97\x02" + ui24(500_000) + b"\x01hvc1" + si24(40) + NALS
    assert parse_video(payload) == [VideoFrame("hvc1", 0, True, 40, NALS)]


def test_modex_with_16_bit_size_and_chained() -> None:
    big = b"\x00" * 300
    payload = (
        b"\xa7\xff" + (len(big) - 1).to_bytes(2, "big") + big + b"\x07"  # then another ModEx
        b"\x00\x00\x03hvc1" + NALS  # size 1, one byte, next type CodedFramesX
    )
    assert parse_video(payload) == [VideoFrame("hvc1", 0, False, 0, NALS)]


def test_multitrack_one_track() -> None:
    payload = b"\x96\x01avc1\x02" + si24(33) + NALS
    assert parse_video(payload) == [VideoFrame("avc1", 2, True, 33, NALS)]


def test_multitrack_many_tracks() -> None:
    body0 = NALS
    body1 = b"\x00\x00\x00\x01\x02"
    payload = (
        b"\x96\x13hvc1" + b"\x00" + ui24(len(body0)) + body0 + b"\x01" + ui24(len(body1)) + body1
    )
    assert parse_video(payload) == [
        VideoFrame("hvc1", 0, True, 0, body0),
        VideoFrame("hvc1", 1, True, 0, body1),
    ]


def test_multitrack_many_tracks_with_composition_time_inside_each_track() -> None:
    track = si24(-10) + NALS
    payload = b"\xa6\x11avc1\x05" + ui24(len(track)) + track
    assert parse_video(payload) == [VideoFrame("avc1", 5, False, -10, NALS)]


def test_multitrack_many_tracks_many_codecs() -> None:
    payload = (
        b"\x96\x20"
        + b"avc1\x00" + ui24(len(AVCC_640x360)) + AVCC_640x360
        + b"hvc1\x01" + ui24(len(HVCC)) + HVCC
        + b"vp08\x02" + ui24(2) + b"\x01\x02"
    )  # fmt: skip
    avc, hevc, vp8 = parse_video(payload)
    assert isinstance(avc, VideoSequenceStart)
    assert (avc.codec, avc.track_id, avc.record) == ("avc1", 0, AVCC_640x360)
    assert avc.config is not None and avc.config.height == 360
    assert hevc == VideoSequenceStart("hvc1", 1, None, HVCC)
    assert isinstance(vp8, Unsupported)
    assert "track 2" in vp8.detail


def test_modex_before_multitrack() -> None:
    payload = b"\x97\x00\x00\x06\x01hvc1\x03" + si24(0) + NALS
    assert parse_video(payload) == [VideoFrame("hvc1", 3, True, 0, NALS)]


# --- enhanced audio ------------------------------------------------------------------


def test_enhanced_audio_mp4a() -> None:
    [start] = parse_audio(b"\x90mp4a\x11\x90")
    assert isinstance(start, AudioSequenceStart)
    assert (start.codec, start.track_id, start.record) == ("mp4a", 0, b"\x11\x90")
    assert start.config is not None and start.config.sample_rate == 48000
    assert parse_audio(b"\x91mp4a\x21\x10") == [AudioFrame("mp4a", 0, b"\x21\x10")]


def test_enhanced_audio_opus() -> None:
    head = b"OpusHead\x01\x028\x01\x80\xbb\x00\x00\x00\x00\x00"
    assert parse_audio(b"\x90Opus" + head) == [AudioSequenceStart("Opus", 0, None, head)]
    assert parse_audio(b"\x91Opus\xfc\xff\xfe") == [AudioFrame("Opus", 0, b"\xfc\xff\xfe")]


def test_enhanced_audio_end_and_multichannel_config_give_nothing() -> None:
    assert parse_audio(b"\x92mp4a") == []
    assert parse_audio(b"\x94Opus\x02\x02\x00\x01") == []


def test_enhanced_audio_unknown_fourcc_and_packet_type() -> None:
    [item] = parse_audio(b"\x91vorb\x00")
    assert isinstance(item, Unsupported)
    assert (item.kind, item.codec) == ("audio", "vorb")
    [item] = parse_audio(b"\x93mp4a\x00")
    assert isinstance(item, Unsupported)


def test_enhanced_audio_multitrack() -> None:
    assert parse_audio(b"\x95\x01mp4a\x01\x21\x10") == [AudioFrame("mp4a", 1, b"\x21\x10")]
    payload = b"\x95\x21" + b"mp4a\x00" + ui24(2) + b"\x21\x10" + b"Opus\x01" + ui24(1) + b"\xfc"
    assert parse_audio(payload) == [
        AudioFrame("mp4a", 0, b"\x21\x10"),
        AudioFrame("Opus", 1, b"\xfc"),
    ]
    payload = b"\x95\x10mp4a" + b"\x01" + ui24(2) + b"\x11\x90" + b"\x02" + ui24(2) + b"\x12\x10"
    first, second = parse_audio(payload)
    assert isinstance(first, AudioSequenceStart) and isinstance(second, AudioSequenceStart)
    assert first.config is not None and first.config.sample_rate == 48000
    assert second.config is not None and second.config.sample_rate == 44100
    assert (first.track_id, second.track_id) == (1, 2)


def test_enhanced_audio_modex() -> None:
    payload = b"\x97\x02" + ui24(1234) + b"\x01Opus\xfc"
    assert parse_audio(payload) == [AudioFrame("Opus", 0, b"\xfc")]


# --- malformed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x17", "header truncated"),
        (b"\x17\x00\x00", "header truncated"),
        (b"\x27\x01\x00", "SI24 composition time truncated at byte 2"),
        (b"\x91hv", "FourCC truncated at byte 1"),
        (b"\x91hvc1\x00", "SI24 composition time truncated"),
        (b"\x96", "multitrack header truncated"),
        (b"\x96\x31hvc1\x00", "multitrack type 3 is not defined"),
        (b"\x96\x06hvc1\x00", "nests packet type 6"),
        (b"\x96\x01hvc1", "OneTrack track id truncated"),
        (b"\x96\x13hvc1\x00" + ui24(100) + NALS, "size 100 at byte 7 overflows"),
        (b"\x96\x13hvc1\x00\x00", "track #0 id and size truncated"),
        (b"\x96\x13hvc1", "carries no track"),
        (b"\x96\x23hvc", "track #0: FourCC truncated"),
        (b"\x97", "ModEx size truncated"),
        (b"\x97\x05\x00\x00", "ModEx data truncated"),
        (b"\x97\xff\x00", "ModEx extended size truncated"),
    ],
)
def test_malformed_video_raises(payload: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_video(payload)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xaf", "legacy AAC audio tag header truncated"),
        (b"\x91Op", "FourCC truncated"),
        (b"\x95", "multitrack header truncated"),
        (b"\x95\x11mp4a\x00" + ui24(5) + b"\x00", "overflows"),
        (b"\x97\x02\x00", "ModEx data truncated"),
    ],
)
def test_malformed_audio_raises(payload: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_audio(payload)


def test_malformed_avcc_inside_a_tag_raises_codec_config_error() -> None:
    with pytest.raises(CodecConfigError):
        parse_video(b"\x17\x00\x00\x00\x00\x00\x00\x00\x01\x67")


_VIDEO_FIRST_BYTES = st.sampled_from([0x17, 0x27, 0x1C, 0x57, 0x90, 0x91, 0xA3, 0x96, 0x97, 0xD4])
_AUDIO_FIRST_BYTES = st.sampled_from([0xAF, 0x2F, 0x90, 0x91, 0x95, 0x97])
_FOURCCS = st.sampled_from([b"avc1", b"hvc1", b"av01", b"vp09", b"mp4a", b"Opus", b"xxxx"])


def _only_lists_or_specific_errors(parse: Callable[[bytes], list[Any]], payload: bytes) -> None:
    try:
        result = parse(payload)
    except (FlvError, CodecConfigError):
        return
    assert isinstance(result, list)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_give_lists_or_specific_errors(payload: bytes) -> None:
    _only_lists_or_specific_errors(parse_video, payload)
    _only_lists_or_specific_errors(parse_audio, payload)


@given(_VIDEO_FIRST_BYTES, st.binary(max_size=2), _FOURCCS, st.binary(max_size=40))
def test_structured_video_noise(first: int, mid: bytes, fourcc: bytes, rest: bytes) -> None:
    _only_lists_or_specific_errors(parse_video, bytes([first]) + mid + fourcc + rest)


@given(_AUDIO_FIRST_BYTES, st.binary(max_size=2), _FOURCCS, st.binary(max_size=40))
def test_structured_audio_noise(first: int, mid: bytes, fourcc: bytes, rest: bytes) -> None:
    _only_lists_or_specific_errors(parse_audio, bytes([first]) + mid + fourcc + rest)


# --- real encoder output via PyAV's FLV muxer -----------------------------------------------


def _flv_bodies(data: bytes, tag_type: int) -> list[bytes]:
    pos = int.from_bytes(data[5:9], "big") + 4
    bodies = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if data[pos] == tag_type:
            bodies.append(data[pos + 11 : pos + 11 + size])
        pos += 11 + size + 4
    return bodies


def test_ffmpeg_enhanced_flv_hevc() -> None:
    av = pytest.importorskip("av")
    if "libx265" not in av.codecs_available:
        pytest.skip("no libx265")
    rng = random.Random(7)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        stream = out.add_stream("libx265", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"preset": "ultrafast", "x265-params": "log-level=none"}
        for i in range(6):
            frame = av.VideoFrame(320, 240, "yuv420p")
            for plane in frame.planes:
                plane.update(rng.randbytes(plane.buffer_size))
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    items = [item for body in _flv_bodies(buf.getvalue(), 9) for item in parse_video(body)]
    assert isinstance(items[0], VideoSequenceStart)
    assert items[0].codec == "hvc1" and items[0].record[0] == 1  # hvcC configurationVersion
    frames = [item for item in items if isinstance(item, VideoFrame)]
    assert len(frames) == 6
    assert frames[0].keyframe and not any(f.keyframe for f in frames[1:])
    assert all(f.codec == "hvc1" and f.track_id == 0 for f in frames)
    assert any(f.composition_offset > 0 for f in frames)  # B-frames reorder
    assert any(f.composition_offset == 0 for f in frames)  # sent as CodedFramesX
    # The colorInfo Metadata packet FFmpeg sends is reported, not dropped silently.
    assert any(isinstance(item, Unsupported) and "Metadata" in item.detail for item in items)


def test_ffmpeg_enhanced_flv_opus() -> None:
    av = pytest.importorskip("av")
    if "libopus" not in av.codecs_available:
        pytest.skip("no libopus")
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "stereo"
        for i in range(3):
            frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = 48000
            frame.pts = i * 960
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    items = [item for body in _flv_bodies(buf.getvalue(), 8) for item in parse_audio(body)]
    assert isinstance(items[0], AudioSequenceStart)
    assert items[0].codec == "Opus" and items[0].record.startswith(b"OpusHead")
    assert all(isinstance(item, AudioFrame) and item.codec == "Opus" for item in items[1:])
    assert len(items) >= 4
