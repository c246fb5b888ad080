"""make_poster on real recorded segments (MPEG-TS and fMP4, cut by our own muxers).

Every source frame has its own flat brightness (export_fixtures.frame_shade), so the poster's mean
luma tells which frame it shows: the first keyframe of the segment it was made from.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest

from periscope_ingest.media.muxer import Fmp4SegmentWriter, StreamTemplates
from periscope_ingest.media.poster import PosterError, make_poster, poster_size
from periscope_ingest.storage.layout import init_segment_for, init_segment_name, segment_name
from tests.media import export_fixtures
from tests.media.export_fixtures import (
    FPS,
    SEGMENT_TICKS,
    _packets,
    frame_shade,
    write_segments,
)

SECONDS = 6  # three 2 s segments, keyframes at frames 0, 60, 120


def encode_flv(path: Path, width: int, height: int, seconds: int = SECONDS) -> None:
    """export_fixtures.encode_flv at any picture size (ultrafast: only the pictures matter)."""
    export_fixtures.encode_flv(path, seconds, width, height, preset="ultrafast")


def write_fmp4_segments(flv_path: Path, out_dir: Path) -> list[Path]:
    """The same cuts as export_fixtures.write_segments, as fMP4 fragments with one init segment."""
    out_dir.mkdir(parents=True, exist_ok=True)
    avcc, asc, packets = _packets(flv_path, True, True)
    templates = StreamTemplates(avcc, asc)
    writer = Fmp4SegmentWriter(templates)
    (out_dir / init_segment_name(0)).write_bytes(writer.init_segment())
    paths: list[Path] = []
    segment_start = None
    for packet in packets:
        if packet.keyframe and (
            segment_start is None or packet.pts - segment_start >= SEGMENT_TICKS
        ):
            if segment_start is not None:
                paths.append(out_dir / segment_name(len(paths), "fmp4"))
                paths[-1].write_bytes(writer.cut())
            segment_start = packet.pts
        if segment_start is not None:
            writer.write(packet)
    paths.append(out_dir / segment_name(len(paths), "fmp4"))
    paths[-1].write_bytes(writer.cut())
    templates.close()
    return paths


def decode_jpeg(data: bytes) -> av.VideoFrame:
    assert data[:2] == b"\xff\xd8", "a JPEG starts with SOI"
    assert data[-2:] == b"\xff\xd9", "a JPEG ends with EOI"
    with av.open(io.BytesIO(data), format="image2pipe") as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
        return next(container.decode(video=0))


def mean_luma(frame: av.VideoFrame) -> float:
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    total = sum(sum(data[row * stride : row * stride + frame.width]) for row in range(frame.height))
    return total / (frame.width * frame.height)


def full_range(shade: int) -> float:
    """The source's limited-range luma as a JPEG (full range) shows it."""
    return (shade - 16) * 255 / 219


@pytest.fixture(scope="module")
def sd_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sd") / "input.flv"
    encode_flv(path, 640, 360)
    return path


@pytest.fixture(scope="module")
def hd_flv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hd") / "input.flv"
    encode_flv(path, 1280, 720)
    return path


@pytest.fixture(scope="module")
def ts_segments(sd_flv: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_segments(sd_flv, tmp_path_factory.mktemp("ts"))


@pytest.fixture(scope="module")
def fmp4_segments(hd_flv: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_fmp4_segments(hd_flv, tmp_path_factory.mktemp("fmp4"))


def test_ts_poster_is_a_jpeg_of_the_stream_size(ts_segments: list[Path]) -> None:
    frame = decode_jpeg(make_poster(ts_segments[0], None))
    assert (frame.width, frame.height) == (640, 360)


def test_poster_shows_the_segments_first_keyframe(ts_segments: list[Path]) -> None:
    assert len(ts_segments) == 3
    lumas = []
    for index, segment in enumerate(ts_segments):
        luma = mean_luma(decode_jpeg(make_poster(segment, None)))
        expected = full_range(frame_shade(index * 2 * FPS))
        assert abs(luma - expected) < 4, f"segment {index}: luma {luma:.1f}, expected {expected}"
        lumas.append(luma)
    assert len({round(v) for v in lumas}) == 3, "each segment's poster is its own picture"


def test_large_stream_is_scaled_to_max_width(hd_flv: Path, tmp_path: Path) -> None:
    segments = write_segments(hd_flv, tmp_path)
    frame = decode_jpeg(make_poster(segments[1], None, max_width=640))
    assert (frame.width, frame.height) == (640, 360)
    assert abs(mean_luma(frame) - full_range(frame_shade(2 * FPS))) < 4


def test_fmp4_poster_uses_the_init_segment(fmp4_segments: list[Path]) -> None:
    assert len(fmp4_segments) == 3
    segment = fmp4_segments[2]
    init = init_segment_for(segment)
    assert init is not None
    frame = decode_jpeg(make_poster(segment, init, max_width=1280))
    assert (frame.width, frame.height) == (1280, 720)
    assert abs(mean_luma(frame) - full_range(frame_shade(4 * FPS))) < 4


def test_fmp4_without_init_segment_is_refused(fmp4_segments: list[Path]) -> None:
    with pytest.raises(PosterError, match="init segment"):
        make_poster(fmp4_segments[0], None)


def test_audio_only_segment_has_no_poster(sd_flv: Path, tmp_path: Path) -> None:
    segments = write_segments(sd_flv, tmp_path, video=False)
    with pytest.raises(PosterError, match="no video"):
        make_poster(segments[0], None)


def test_unreadable_segment(tmp_path: Path) -> None:
    missing = tmp_path / "000000.ts"
    with pytest.raises(PosterError):
        make_poster(missing, None)
    garbage = tmp_path / "000001.ts"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(PosterError):
        make_poster(garbage, None)


@pytest.mark.parametrize(
    ("size", "max_width", "expected"),
    [
        ((640, 360), 640, (640, 360)),
        ((320, 180), 640, (320, 180)),
        ((1280, 720), 640, (640, 360)),
        ((1920, 1080), 640, (640, 360)),
        ((1080, 1920), 640, (640, 1138)),  # portrait: the width is what is bounded
        ((853, 480), 640, (640, 360)),
        ((641, 361), 640, (640, 360)),
        ((321, 181), 640, (320, 180)),  # odd sizes rounded down to even
    ],
)
def test_poster_size(size: tuple[int, int], max_width: int, expected: tuple[int, int]) -> None:
    assert poster_size(*size, max_width) == expected
