"""avcC / SPS parsing against real x264 output (via PyAV) and hand-built bitstreams."""

from __future__ import annotations

import io
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.avc import (
    AvcConfig,
    CodecConfigError,
    parse_avcc,
    parse_sps,
    unescape_rbsp,
)

av = pytest.importorskip("av")


# --- helpers -------------------------------------------------------------------


class BitWriter:
    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> BitWriter:
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        length = code.bit_length()
        return self.u(length - 1, 0).u(length, code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert emulation prevention bytes (the inverse of unescape_rbsp)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def make_avcc(sps: bytes, pps: bytes, length_size: int = 4) -> bytes:
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFC | (length_size - 1), 0xE1])
        + len(sps).to_bytes(2, "big")
        + sps
        + b"\x01"
        + len(pps).to_bytes(2, "big")
        + pps
    )


def flv_file_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(tag type, timestamp, body) for every tag of an FLV file."""
    assert data[:3] == b"FLV"
    pos = int.from_bytes(data[5:9], "big") + 4
    tags = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        tags.append((data[pos], timestamp, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


def x264_flv(width: int, height: int, options: dict[str, str], rate: Fraction | int) -> bytes:
    """Encode a few noise frames with libx264 into an in-memory FLV file."""
    rng = random.Random(width * height)
    buf = io.BytesIO()
    with av.open(buf, "w", format="flv") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", **options}
        for i in range(3):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(rng.randbytes(plane.buffer_size))
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def x264_headers(width: int, height: int, pix_fmt: str, options: dict[str, str]) -> list[bytes]:
    """SPS and PPS NAL units from libx264's global header (Annex B extradata)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25)
    ctx.flags |= av.codec.context.Flags.global_header
    ctx.options = options
    ctx.open()
    nals = [nal.rstrip(b"\x00") for nal in ctx.extradata.split(b"\x00\x00\x01")]
    return [nal for nal in nals if nal]


# --- real encoder output ----------------------------------------------------------

X264_CASES = [
    # width, height, options, rate, profile_idc, constraint byte, level, codecs, frame rate
    (640, 360, {"profile": "baseline", "level": "3.0"}, 25, 66, 0xC0, 30, "avc1.42c01e", 25.0),
    (
        1280,
        720,
        {"profile": "main", "level": "3.1"},
        Fraction(30000, 1001),
        77,
        0x40,
        31,
        "avc1.4d401f",
        30000 / 1001,
    ),
    (1920, 1080, {"profile": "high", "level": "4.2"}, 50, 100, 0x00, 42, "avc1.64002a", 50.0),
]


@pytest.mark.parametrize(
    ("width", "height", "options", "rate", "profile", "constraints", "level", "codecs", "fps"),
    X264_CASES,
)
def test_x264_sequence_header_via_flv(
    width: int,
    height: int,
    options: dict[str, str],
    rate: Fraction | int,
    profile: int,
    constraints: int,
    level: int,
    codecs: str,
    fps: float,
) -> None:
    tags = flv_file_tags(x264_flv(width, height, options, rate))
    video = [body for kind, _, body in tags if kind == 9]
    assert video[0][:2] == b"\x17\x00"  # legacy AVC sequence header
    config = parse_avcc(video[0][5:])
    assert (config.width, config.height) == (width, height)
    assert config.profile_idc == profile
    assert config.constraint_flags == constraints
    assert config.level_idc == level
    assert config.codecs == codecs
    assert config.nal_length_size == 4
    assert config.frame_rate == pytest.approx(fps)
    assert config.avcc == video[0][5:]

    # Oracle: FFmpeg's decoder agrees about the display size.
    ctx = av.CodecContext.create("h264", "r")
    ctx.extradata = config.avcc
    frames = []
    for body in video[1:]:
        if body[1] == 1:  # NALU packets only, not the end-of-sequence tag
            frames += ctx.decode(av.Packet(body[5:]))
    frames += ctx.decode(None)
    assert frames
    assert (frames[0].width, frames[0].height) == (width, height)


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options", "profile", "chroma", "depth"),
    [
        (1920, 1080, "yuv420p", {"x264-params": "interlaced=1"}, 100, 1, 8),  # field coding crop
        (640, 360, "yuv444p", {}, 244, 3, 8),  # 4:4:4: crop unit x is 1
        (640, 360, "yuv422p", {}, 122, 2, 8),  # 4:2:2: crop unit y is 1
        (640, 360, "yuv420p10le", {}, 110, 1, 10),
        (854, 480, "yuv420p", {"profile": "main"}, 77, 1, 8),  # odd crop on the right
    ],
)
def test_x264_sps_variants(
    width: int,
    height: int,
    pix_fmt: str,
    options: dict[str, str],
    profile: int,
    chroma: int,
    depth: int,
) -> None:
    try:
        nals = x264_headers(width, height, pix_fmt, options)
    except (av.error.FFmpegError, ValueError) as exc:  # pragma: no cover - build without it
        pytest.skip(f"libx264 cannot encode {pix_fmt}: {exc}")
    sps = next(nal for nal in nals if nal[0] & 0x1F == 7)
    pps = next(nal for nal in nals if nal[0] & 0x1F == 8)
    parsed = parse_sps(sps)
    assert (parsed.width, parsed.height) == (width, height)
    assert parsed.profile_idc == profile
    assert parsed.chroma_format_idc == chroma
    assert parsed.bit_depth_luma == depth
    assert parsed.frame_rate == 25.0
    config = parse_avcc(make_avcc(sps, pps))
    assert (config.width, config.height, config.profile_idc) == (width, height, profile)


# --- hand-built SPS ----------------------------------------------------------------


def build_sps(
    *,
    profile_idc: int = 100,
    constraint_flags: int = 0,
    level_idc: int = 31,
    width_mbs: int = 80,
    height_map_units: int = 45,
    frame_mbs_only: bool = True,
    crop: tuple[int, int, int, int] | None = None,
    scaling_lists: bool = False,
    poc_type: int = 0,
    timing: tuple[int, int] | None = None,
    extended_sar: bool = False,
) -> bytes:
    w = BitWriter()
    w.u(8, profile_idc).u(8, constraint_flags).u(8, level_idc).ue(0)
    if profile_idc in (100, 110, 122, 244):
        w.ue(1).ue(0).ue(0).u(1, 0)  # 4:2:0, 8 bit, no bypass
        w.u(1, 1 if scaling_lists else 0)
        if scaling_lists:
            for i in range(8):
                w.u(1, 1 if i in (0, 3, 6) else 0)
                if i == 0:
                    # nextScale reaches 0 after two deltas: the list ends early.
                    w.se(5).se(-13)
                elif i in (3, 6):
                    # A full list of 16 or 64 deltas.
                    deltas = [5, -3, 7] + [0] * ((16 if i < 6 else 64) - 3)
                    for d in deltas:
                        w.se(d)
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(-2).se(3).ue(2).se(1).se(-1)
    w.ue(4).u(1, 0)  # max_num_ref_frames, gaps
    w.ue(width_mbs - 1).ue(height_map_units - 1)
    w.u(1, 1 if frame_mbs_only else 0)
    if not frame_mbs_only:
        w.u(1, 0)
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, 1 if crop else 0)
    if crop:
        for value in crop:
            w.ue(value)
    w.u(1, 1)  # vui_parameters_present_flag
    w.u(1, 1)  # aspect_ratio_info_present_flag
    if extended_sar:
        w.u(8, 255).u(16, 4).u(16, 3)
    else:
        w.u(8, 1)
    w.u(1, 0)  # overscan
    w.u(1, 1).u(3, 5).u(1, 0).u(1, 1).u(8, 1).u(8, 1).u(8, 1)  # video signal + colour
    w.u(1, 0)  # chroma loc
    w.u(1, 1 if timing else 0)
    if timing:
        w.u(32, timing[0]).u(32, timing[1]).u(1, 1)
    w.u(1, 0).u(1, 0).u(1, 0).u(1, 0)  # hrd, vcl hrd, pic struct, bitstream restriction
    return b"\x67" + escape_rbsp(w.rbsp())


def test_hand_built_avcc_with_cropping_scaling_lists_and_timing() -> None:
    sps = build_sps(
        width_mbs=120,
        height_map_units=68,
        crop=(0, 0, 0, 4),  # 1088 -> 1080 (crop unit 2 for 4:2:0)
        scaling_lists=True,
        timing=(1, 60),
    )
    assert b"\x00\x00\x03" in sps  # num_units_in_tick = 1 needs emulation prevention
    config = parse_avcc(make_avcc(sps, b"\x68\xeb\xe3\xcb\x22\xc0", length_size=2))
    assert config == AvcConfig(
        avcc=config.avcc,
        width=1920,
        height=1080,
        profile_idc=100,
        constraint_flags=0,
        level_idc=31,
        nal_length_size=2,
        frame_rate=30.0,
    )
    assert config.codecs == "avc1.64001f"


def test_hand_built_sps_poc_type_1_field_coding_and_extended_sar() -> None:
    sps = build_sps(
        profile_idc=77,
        constraint_flags=0x40,
        level_idc=40,
        width_mbs=45,
        height_map_units=18,  # 18 map units * 2 fields * 16 = 576
        frame_mbs_only=False,
        crop=(1, 2, 0, 1),  # x: 2*(1+2) = 6 px; y: 2*2*1 = 4 lines
        poc_type=1,
        timing=(1, 50),
        extended_sar=True,
    )
    parsed = parse_sps(sps)
    assert (parsed.width, parsed.height) == (720 - 6, 576 - 4)
    assert parsed.frame_rate == 25.0
    assert parsed.profile_idc == 77
    assert parsed.constraint_flags == 0x40


def test_no_timing_info_gives_no_frame_rate() -> None:
    assert parse_sps(build_sps(timing=None)).frame_rate is None


def test_truncated_vui_keeps_the_size() -> None:
    sps = build_sps(timing=(1, 60))
    parsed = parse_sps(sps[:-6])  # cut inside the timing info
    assert (parsed.width, parsed.height, parsed.frame_rate) == (1280, 720, None)


def test_codecs_string_is_lowercase_hex() -> None:
    config = parse_avcc(make_avcc(build_sps(profile_idc=100, level_idc=0x2A), b"\x68\xce"))
    assert config.codecs == "avc1.64002a"


def test_unescape_rbsp() -> None:
    assert (
        unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03\x00\x00\x03")
        == b"\x00\x00\x01\x00\x00\x00\x00"
    )
    assert unescape_rbsp(b"\x01\x03\x00\x03") == b"\x01\x03\x00\x03"
    assert unescape_rbsp(b"\x00\x00\x03\x00\x00\x03\x03") == b"\x00\x00\x00\x00\x03"


# --- malformed ----------------------------------------------------------------------

GOOD_SPS = build_sps()
GOOD_AVCC = make_avcc(GOOD_SPS, b"\x68\xce\x3c\x80")


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"", "too short"),
        (b"\x01\x64\x00\x1f", "too short"),
        (b"\x00\x00\x00\x01\x67\x64\x00\x1f" + GOOD_SPS, "configurationVersion is 0"),
        (GOOD_AVCC[:4] + b"\xfe" + GOOD_AVCC[5:], "3-byte NAL lengths"),
        (GOOD_AVCC[:5] + b"\xe0" + GOOD_AVCC[6:], "no SPS"),
        (GOOD_AVCC[:6] + b"\x00", "SPS #0 length"),
        (GOOD_AVCC[:6] + b"\x00\x00" + GOOD_AVCC[8:], "SPS #0 is empty"),
        (GOOD_AVCC[:10], "exceeds the record"),
        (GOOD_AVCC[: 8 + len(GOOD_SPS)], "before numOfPictureParameterSets"),
        (GOOD_AVCC[:-2], "PPS #0 length 4"),
        (make_avcc(b"\x68\xce\x3c\x80", b"\x68"), "expected SPS"),
        (make_avcc(b"\xe7" + GOOD_SPS[1:], b"\x68"), "forbidden_zero_bit"),
        (make_avcc(GOOD_SPS[:6], b"\x68"), "SPS truncated"),
        (make_avcc(b"\x67\x64\x00\x1f\x00\x00\x00\x00\x00\x01", b"\x68"), "exp-Golomb"),
    ],
)
def test_malformed_avcc_raises(record: bytes, message: str) -> None:
    with pytest.raises(CodecConfigError, match=message):
        parse_avcc(record)


def test_parse_sps_empty() -> None:
    with pytest.raises(CodecConfigError, match="empty"):
        parse_sps(b"")


def test_cropping_everything_away_is_an_error() -> None:
    with pytest.raises(CodecConfigError, match="leaves no picture"):
        parse_sps(build_sps(width_mbs=1, height_map_units=1, crop=(4, 4, 0, 0)))


@given(st.binary(max_size=64))
def test_arbitrary_avcc_only_raises_codec_config_error(data: bytes) -> None:
    try:
        config = parse_avcc(data)
    except CodecConfigError:
        return
    assert config.width > 0 and config.height > 0


@given(st.binary(max_size=40))
def test_arbitrary_sps_only_raises_codec_config_error(data: bytes) -> None:
    try:
        sps = parse_sps(b"\x67" + data)
    except CodecConfigError:
        return
    assert sps.width > 0 and sps.height > 0
