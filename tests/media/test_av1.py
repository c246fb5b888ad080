"""av1C / AV1 sequence header parsing against real libsvtav1 output and edge cases."""

from __future__ import annotations

import contextlib
import io

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.av1 import (
    Av1ConfigError,
    Av1SequenceHeader,
    filter_sample_obus,
    parse_av1c,
)
from periscope_ingest.media.avc import CodecConfigError
from tests.media.test_fmp4 import encode_flv, flv_tags


def svt_stream(width: int, height: int, options: dict[str, str] | None = None) -> bytes:
    return encode_flv("libsvtav1", width, height, 0.1, audio=False, options=options)


def av1c_of(flv: bytes) -> bytes:
    body = next(body for tag_type, _ms, body in flv_tags(flv) if tag_type == 9)
    assert body[0] == 0x90 and body[1:5] == b"av01"
    return body[5:]


@pytest.mark.parametrize(
    ("width", "height", "codecs"),
    [(640, 360, "av01.0.01M.08"), (1280, 720, "av01.0.05M.08"), (1920, 1080, "av01.0.08M.08")],
)
def test_svtav1_records(width: int, height: int, codecs: str) -> None:
    flv = svt_stream(width, height)
    record = av1c_of(flv)
    config = parse_av1c(record)
    assert (config.width, config.height) == (width, height)
    assert config.codecs == codecs
    # The record's own copy of profile/level/tier agrees with the sequence header.
    assert config.codecs.startswith(f"av01.{record[1] >> 5}.{record[1] & 0x1F:02d}")
    assert config.frame_rate is None  # SVT-AV1 writes no timing info
    assert config.record == record
    with av.open(io.BytesIO(flv), format="flv") as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (width, height)


def test_colour_description_gives_the_long_form() -> None:
    options = {
        "svtav1-params": "color-primaries=9:transfer-characteristics=16:matrix-coefficients=9"
    }
    config = parse_av1c(av1c_of(svt_stream(352, 288, options)))
    assert config.codecs == "av01.0.00M.08.0.110.09.16.09.0"


def header(**changes: object) -> Av1SequenceHeader:
    fields: dict[str, object] = dict(
        profile=0, level=8, tier=0, bit_depth=8, monochrome=False, subsampling_x=1,
        subsampling_y=1, chroma_sample_position=0, color_primaries=2,
        transfer_characteristics=2, matrix_coefficients=2, full_range=False, width=1920,
        height=1080, frame_rate=None,
    )  # fmt: skip
    fields.update(changes)
    return Av1SequenceHeader(**fields)  # type: ignore[arg-type]


def test_codecs_string_rules() -> None:
    assert header().codecs == "av01.0.08M.08"
    assert header(color_primaries=1, transfer_characteristics=1, matrix_coefficients=1).codecs == (
        "av01.0.08M.08"
    )
    assert header(tier=1, level=12, bit_depth=10).codecs == "av01.0.12H.10"
    assert header(full_range=True).codecs == "av01.0.08M.08.0.110.02.02.02.1"
    assert header(profile=1, subsampling_x=0, subsampling_y=0).codecs == (
        "av01.1.08M.08.0.000.02.02.02.0"
    )


def test_malformed_records() -> None:
    with pytest.raises(Av1ConfigError, match="too short"):
        parse_av1c(b"\x81\x00")
    with pytest.raises(Av1ConfigError, match="0x81"):
        parse_av1c(b"\x12\x00\x0a\x0b\x00\x00\x00")
    with pytest.raises(Av1ConfigError, match="no sequence header"):
        parse_av1c(b"\x81\x00\x0c\x00")  # legal record, but nothing to read the size from
    real = av1c_of(svt_stream(640, 360))
    with pytest.raises(Av1ConfigError):
        parse_av1c(real[:-3])  # the OBU claims more bytes than remain
    with pytest.raises(Av1ConfigError, match="truncated"):
        parse_av1c(real[:5] + bytes([3]) + real[6:9])  # sequence header cut short
    assert issubclass(Av1ConfigError, CodecConfigError)


def test_filter_sample_obus() -> None:
    td = b"\x12\x00"
    padding = b"\x7a\x02\xff\xff"
    frame = b"\x32\x03abc"
    assert filter_sample_obus(td + frame + padding) == frame
    unchanged = frame + frame
    assert filter_sample_obus(unchanged) is unchanged
    broken = b"\x12\x05ab"
    assert filter_sample_obus(broken) is broken


@given(st.binary(max_size=64))
def test_garbage_raises_only_config_errors(data: bytes) -> None:
    with contextlib.suppress(Av1ConfigError):
        parse_av1c(b"\x81\x00\x0c\x00" + data)
