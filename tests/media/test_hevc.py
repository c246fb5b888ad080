"""hvcC / HEVC SPS parsing against real libx265 output and hand-made edge cases."""

from __future__ import annotations

import contextlib
import io

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.avc import CodecConfigError
from periscope_ingest.media.hevc import HevcConfigError, ProfileTierLevel, parse_hvcc
from tests.media.test_fmp4 import encode_flv, flv_tags


def x265_record(width: int, height: int, options: dict[str, str] | None = None) -> bytes:
    """The hvcC FFmpeg 8.1 puts in the Enhanced RTMP sequence start tag."""
    flv = encode_flv("libx265", width, height, 0.1, audio=False, options=options)
    body = next(body for tag_type, _ms, body in flv_tags(flv) if tag_type == 9)
    assert body[0] == 0x90 and body[1:5] == b"hvc1"  # IsExHeader | key | SequenceStart
    return body[5:]


def hand_codecs(record: bytes) -> str:
    """The 14496-15 E.3 string computed from the record's own copy of the profile bytes."""
    space, tier, profile = record[1] >> 6, record[1] >> 5 & 1, record[1] & 0x1F
    compat = int.from_bytes(record[2:6], "big")
    reversed_compat = int(f"{compat:032b}"[::-1], 2)
    constraints = record[6:12].rstrip(b"\x00")
    level = record[12]
    text = f"hvc1.{'' if not space else 'ABC'[space - 1]}{profile}.{reversed_compat:X}"
    text += f".{'LH'[tier]}{level}"
    return text + "".join(f".{b:02X}" for b in constraints)


def decoded_size(record: bytes, width: int, height: int) -> tuple[int, int]:
    flv = encode_flv("libx265", width, height, 0.1, audio=False)
    with av.open(io.BytesIO(flv), format="flv") as container:
        frame = next(container.decode(video=0))
    return frame.width, frame.height


@pytest.mark.parametrize(
    ("width", "height", "codecs"),
    [
        (640, 360, "hvc1.1.6.L63.90"),  # 360 is not a multiple of 8: conformance window
        (1280, 720, "hvc1.1.6.L93.90"),
        (1920, 1080, "hvc1.1.6.L120.90"),  # coded as 1088 lines, cropped
        (322, 242, "hvc1.1.6.L60.90"),  # odd sizes in luma samples, still 4:2:0 cropping
    ],
)
def test_x265_records(width: int, height: int, codecs: str) -> None:
    record = x265_record(width, height)
    config = parse_hvcc(record)
    assert (config.width, config.height) == (width, height)
    assert config.codecs == codecs == hand_codecs(record)
    assert config.frame_rate == 30.0  # x265 writes VUI/VPS timing by default
    assert config.record == record
    assert config.nal_length_size == 4
    assert decoded_size(record, width, height) == (width, height)


def test_record_without_timing_has_no_frame_rate() -> None:
    config = parse_hvcc(x265_record(320, 240, {"x265-params": "vui-timing-info=0"}))
    assert (config.width, config.height, config.frame_rate) == (320, 240, None)


@pytest.mark.parametrize(
    ("ptl", "expected"),
    [
        (
            ProfileTierLevel(0, 0, 1, 0x60000000, bytes([0xB0, 0, 0, 0, 0, 0]), 93),
            "hvc1.1.6.L93.B0",
        ),
        (
            ProfileTierLevel(0, 0, 2, 0x20000000, bytes([0xB0, 0, 0, 0, 0, 0]), 120),
            "hvc1.2.4.L120.B0",
        ),
        (ProfileTierLevel(0, 1, 2, 0x20000000, bytes(6), 153), "hvc1.2.4.H153"),
        (
            ProfileTierLevel(1, 0, 4, 0x08000000, bytes([0x90, 0, 0x12, 0, 0, 0]), 90),
            "hvc1.A4.10.L90.90.00.12",
        ),
    ],
)
def test_codecs_string_rules(ptl: ProfileTierLevel, expected: str) -> None:
    assert ptl.codecs() == expected


def test_malformed_records() -> None:
    good = x265_record(640, 360)
    with pytest.raises(HevcConfigError, match="too short"):
        parse_hvcc(good[:22])
    with pytest.raises(HevcConfigError, match="configurationVersion"):
        parse_hvcc(b"\x00\x00\x00\x01" + good[4:])
    with pytest.raises(HevcConfigError, match="exceeds"):
        parse_hvcc(good[:40])
    no_arrays = good[:22] + b"\x00"
    with pytest.raises(HevcConfigError, match="no SPS"):
        parse_hvcc(no_arrays)
    three_byte_lengths = good[:21] + bytes([good[21] & 0xFC | 2]) + good[22:]
    with pytest.raises(HevcConfigError, match="3-byte"):
        parse_hvcc(three_byte_lengths)
    assert issubclass(HevcConfigError, CodecConfigError)
    assert issubclass(HevcConfigError, ValueError)


def test_truncated_sps_is_a_config_error() -> None:
    # One array holding one SPS cut after its profile_tier_level.
    sps = bytes([0x42, 0x01, 0x01]) + bytes([0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5D])
    record = bytes([1]) + bytes(20) + b"\x0f" + b"\x01" + b"\xa1\x00\x01"
    record += len(sps).to_bytes(2, "big") + sps
    with pytest.raises(HevcConfigError, match="truncated"):
        parse_hvcc(record)


@given(st.binary(max_size=200))
def test_garbage_raises_only_config_errors(data: bytes) -> None:
    with contextlib.suppress(HevcConfigError):
        parse_hvcc(data)


@given(st.integers(23, 400), st.integers(0, 255))
def test_corrupted_real_record_raises_only_config_errors(position: int, value: int) -> None:
    record = bytearray(_REAL)
    record[min(position, len(record) - 1)] = value
    with contextlib.suppress(HevcConfigError):
        parse_hvcc(bytes(record))


_REAL = x265_record(640, 360)
