"""AudioSpecificConfig parsing: hand-built configs and FFmpeg's AAC encoder output."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.aac import AacConfig, parse_asc
from periscope_ingest.media.avc import CodecConfigError


def bits(*fields: tuple[int, int]) -> bytes:
    """Pack (width, value) fields MSB first, zero-padded to whole bytes."""
    value = 0
    width = 0
    for n, v in fields:
        value = (value << n) | v
        width += n
    pad = -width % 8
    return (value << pad).to_bytes((width + pad) // 8, "big")


GA_PLAIN = (3, 0)  # frameLengthFlag, dependsOnCoreCoder, extensionFlag all 0


def test_lc_48000_stereo() -> None:
    config = parse_asc(b"\x11\x90")
    assert config == AacConfig(
        asc=b"\x11\x90", object_type=2, sample_rate=48000, channels=2, samples_per_frame=1024
    )
    assert config.codecs == "mp4a.40.2"


def test_lc_44100_stereo() -> None:
    config = parse_asc(b"\x12\x10")
    assert (config.object_type, config.sample_rate, config.channels) == (2, 44100, 2)
    assert config.samples_per_frame == 1024


def test_lc_22050_mono() -> None:
    asc = bits((5, 2), (4, 7), (4, 1), GA_PLAIN)
    assert asc == b"\x13\x88"
    config = parse_asc(asc)
    assert (config.object_type, config.sample_rate, config.channels) == (2, 22050, 1)


def test_explicit_24_bit_frequency() -> None:
    asc = bits((5, 2), (4, 15), (24, 37800), (4, 2), GA_PLAIN)
    config = parse_asc(asc)
    assert (config.sample_rate, config.channels, config.object_type) == (37800, 2, 2)


def test_object_type_escape() -> None:
    # 31 escapes to 32 + 6 bits: 42 = USAC. Not a GASpecificConfig type: 1024 assumed.
    asc = bits((5, 31), (6, 10), (4, 3), (4, 2))
    config = parse_asc(asc)
    assert (config.object_type, config.sample_rate, config.channels) == (42, 48000, 2)
    assert config.samples_per_frame == 1024
    assert config.codecs == "mp4a.40.42"


def test_frame_length_flag_means_960_samples() -> None:
    asc = bits((5, 2), (4, 3), (4, 2), (1, 1), (2, 0))
    assert asc == b"\x11\x94"
    assert parse_asc(asc).samples_per_frame == 960


def test_channel_configuration_zero_is_reported_as_zero() -> None:
    # channelConfiguration 0: the layout is in a program_config_element we do not parse.
    asc = bits((5, 2), (4, 3), (4, 0), GA_PLAIN, (32, 0x12345678))
    assert parse_asc(asc).channels == 0


def test_depends_on_core_coder_skips_the_delay() -> None:
    asc = bits((5, 2), (4, 4), (4, 6), (1, 0), (1, 1), (14, 0x3FFF), (1, 0))
    config = parse_asc(asc)
    assert (config.sample_rate, config.channels, config.samples_per_frame) == (44100, 6, 1024)


def test_he_aac_explicit_reports_the_sbr_rate() -> None:
    # SBR object type 5, core 24 kHz stereo, extension 48 kHz, core AAC-LC.
    asc = bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 2), GA_PLAIN)
    config = parse_asc(asc)
    assert config == AacConfig(
        asc=asc, object_type=5, sample_rate=48000, channels=2, samples_per_frame=2048
    )
    assert config.codecs == "mp4a.40.5"


def test_he_aac_v2_explicit() -> None:
    # PS object type 29: mono core at 22050 Hz, SBR at 44100 Hz.
    asc = bits((5, 29), (4, 7), (4, 1), (4, 4), (5, 2), GA_PLAIN)
    config = parse_asc(asc)
    assert (config.object_type, config.sample_rate, config.channels) == (29, 44100, 1)
    assert config.samples_per_frame == 2048
    assert config.codecs == "mp4a.40.29"


def test_he_aac_explicit_with_960_sample_frames() -> None:
    asc = bits((5, 5), (4, 6), (4, 2), (4, 3), (5, 2), (1, 1), (2, 0))
    assert parse_asc(asc).samples_per_frame == 1920


def test_he_aac_implicit_sync_extension() -> None:
    # Backward-compatible signalling: AAC-LC at 24 kHz, then 0x2b7, SBR, present, 48 kHz.
    asc = bits((5, 2), (4, 6), (4, 2), GA_PLAIN, (11, 0x2B7), (5, 5), (1, 1), (4, 3))
    config = parse_asc(asc)
    assert (config.object_type, config.sample_rate, config.samples_per_frame) == (2, 48000, 2048)
    assert config.codecs == "mp4a.40.2"


def test_ffmpeg_style_explicit_no_sbr_extension() -> None:
    # FFmpeg's native encoder appends "0x2b7, SBR, sbrPresentFlag = 0".
    config = parse_asc(b"\x11\x90\x56\xe5\x00")
    assert (config.object_type, config.sample_rate, config.samples_per_frame) == (2, 48000, 1024)


def test_pyav_aac_encoder_48k_stereo() -> None:
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48000)
        stream.layout = "stereo"
        for i in range(2):
            frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = 48000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        extradata = stream.codec_context.extradata
    config = parse_asc(extradata)
    assert config.asc == extradata
    assert (config.object_type, config.sample_rate, config.channels) == (2, 48000, 2)
    assert config.samples_per_frame == 1024
    assert config.codecs == "mp4a.40.2"


@pytest.mark.parametrize(
    ("asc", "message"),
    [
        (b"", "empty"),
        (b"\x11", "truncated"),
        (bits((5, 0), (4, 3), (4, 2), GA_PLAIN), "null object"),
        (bits((5, 2), (4, 13), (4, 2), GA_PLAIN), "samplingFrequencyIndex 13 is reserved"),
        (bits((5, 2), (4, 15), (24, 0), (4, 2), GA_PLAIN), "explicit sampling frequency is 0"),
        (bits((5, 2), (4, 15), (8, 1)), "truncated"),
        (bits((5, 5), (4, 6), (4, 2)), "truncated"),
        (bits((5, 31), (3, 1)), "truncated"),
    ],
)
def test_malformed_asc_raises(asc: bytes, message: str) -> None:
    with pytest.raises(CodecConfigError, match=message):
        parse_asc(asc)


@given(st.binary(max_size=16))
def test_arbitrary_asc_only_raises_codec_config_error(data: bytes) -> None:
    try:
        config = parse_asc(data)
    except CodecConfigError:
        return
    assert config.sample_rate > 0
    assert config.samples_per_frame in (960, 1024, 1920, 2048)
    assert 0 <= config.channels <= 15
