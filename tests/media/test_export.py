"""MP4 export of real recorded segments, checked with FFmpeg's own tools and PyAV."""

from __future__ import annotations

import io
import itertools
import json
import struct
import subprocess
from pathlib import Path

import av
import pytest

from periscope_ingest.media import export_mux, export_read
from periscope_ingest.media.export import ExportError, export_mp4, stream_mp4
from tests.media.export_fixtures import FPS, SECONDS, encode_flv, frame_shade, write_segments

pytestmark = pytest.mark.e2e  # ffprobe and ffmpeg check the exports

FRAME = 1 / FPS


@pytest.fixture(scope="module")
def flv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flv") / "input.flv"
    encode_flv(path)
    return path


@pytest.fixture(scope="module")
def segments(flv_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_segments(flv_path, tmp_path_factory.mktemp("av"))


def top_level_boxes(data: bytes) -> list[str]:
    boxes, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        assert size >= 8, f"bad box size at {pos}"
        boxes.append(kind.decode("latin-1"))
        pos += size
    assert pos == len(data), "boxes must cover the file exactly"
    return boxes


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
         str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout)


def decode_errors(path: Path) -> str:
    """Decode every frame of every stream; FFmpeg's complaints, empty when clean."""
    result = subprocess.run(
        # Frames keep the file's own times: hidden frames past a clip's end are 1/90000 s apart.
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-fps_mode", "passthrough",
         "-enc_time_base", "-1", "-f", "null", "-"],
        capture_output=True, text=True,
    )  # fmt: skip
    return result.stderr + ("" if result.returncode == 0 else f"exit {result.returncode}")


def streams_by_type(probe: dict) -> dict[str, dict]:
    return {s["codec_type"]: s for s in probe["streams"]}


def input_video_frames(paths: list[Path]) -> int:
    count = 0
    for path in paths:
        with av.open(str(path)) as container:
            count += sum(1 for p in container.demux(video=0) if p.size)
    return count


def first_shown_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as container:
        return next(container.decode(video=0))


# -- complete MP4 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_mp4(segments: list[Path], tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("out") / "full.mp4"
    return path, export_mp4(segments, path)


def test_export_is_faststart_and_complete(full_mp4, segments: list[Path]) -> None:
    path, info = full_mp4
    data = path.read_bytes()
    boxes = top_level_boxes(data)
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    assert "moof" not in boxes
    assert info.size == len(data)
    assert info.video and info.audio
    assert abs(info.duration - SECONDS) <= 0.1
    assert decode_errors(path) == ""
    probe = ffprobe(path)
    streams = streams_by_type(probe)
    assert streams["video"]["codec_tag_string"] == "avc1"
    assert streams["audio"]["codec_tag_string"] == "mp4a"
    assert abs(float(probe["format"]["duration"]) - SECONDS) <= 0.1
    starts = [float(s["start_time"]) for s in streams.values()]
    assert all(abs(s) <= FRAME for s in starts), starts
    assert int(streams["video"]["nb_frames"]) == input_video_frames(segments)
    assert first_shown_frame(path).pts == 0


def test_export_to_a_file_object(segments: list[Path]) -> None:
    buffer = io.BytesIO()
    info = export_mp4(segments[:2], buffer, end=3.0)
    data = buffer.getvalue()
    assert info.size == len(data)
    boxes = top_level_boxes(data)
    assert boxes.index("moov") < boxes.index("mdat")


# -- streamed fragmented MP4 --------------------------------------------------------------------


def test_stream_is_progressive_fragmented_and_indexed(
    segments: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, object]] = []
    real_open = export_read._open_segment

    def recording_open(path: Path, init: Path | None = None):
        events.append(("open", path.name))
        return real_open(path, init)

    monkeypatch.setattr(export_read, "_open_segment", recording_open)
    real_quick_open = export_read._quick_open

    def recording_quick_open(segment) -> None:
        events.append(("open", segment.source.name))
        real_quick_open(segment)

    monkeypatch.setattr(export_read, "_quick_open", recording_quick_open)
    chunks: list[bytes] = []

    def write(chunk: bytes) -> None:
        events.append(("write", len(chunk)))
        chunks.append(chunk)

    info = stream_mp4(segments, write)
    first_write = next(i for i, (kind, _) in enumerate(events) if kind == "write")
    last_open = events.index(("open", segments[-1].name))
    assert first_write < last_open, "the first bytes must leave before the last segment is read"
    data = b"".join(chunks)
    assert info.size == len(data)
    boxes = top_level_boxes(data)
    assert boxes[:2] == ["ftyp", "moov"]
    assert boxes.count("moof") >= SECONDS // 2 - 1  # fragments at the 2 s keyframes
    assert boxes[-1] == "mfra", "an index at the end lets players seek"
    path = tmp_path / "stream.mp4"
    path.write_bytes(data)
    assert decode_errors(path) == ""
    probe = ffprobe(path)
    assert abs(float(probe["format"]["duration"]) - SECONDS) <= 0.1
    assert abs(info.duration - SECONDS) <= 0.1


# -- clips --------------------------------------------------------------------------------------


def test_clip_is_exact_to_a_frame(segments: list[Path], tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    info = export_mp4(segments, path, start=5.2, end=10.7)
    assert abs(info.duration - 5.5) <= FRAME
    assert decode_errors(path) == ""
    probe = ffprobe(path)
    assert abs(float(probe["format"]["duration"]) - 5.5) <= FRAME
    streams = streams_by_type(probe)
    for stream in streams.values():
        assert abs(float(stream["duration"]) - 5.5) <= FRAME, stream["codec_type"]
        assert abs(float(stream["start_time"])) <= FRAME, stream["codec_type"]
    # The edit list hides the frames from the keyframe at 4 s: the first one shown is 5.2 s.
    frame = first_shown_frame(path)
    assert frame.pts == 0
    plane = frame.planes[0]
    data = bytes(plane)
    rows = [data[y * plane.line_size :][: plane.width] for y in range(plane.height)]
    luma = sum(map(sum, rows)) / (plane.width * plane.height)
    assert abs(luma - frame_shade(round(5.2 * FPS))) < 2, luma
    # 165 frames inside the edit. FFmpeg also outputs the references kept past the end (their
    # times are clamped to the end): players honouring the edit list do not show them.
    with av.open(str(path)) as container:
        times = [frame.time for frame in container.decode(video=0)]
    assert sum(1 for t in times if t < 5.5 - 1e-6) == round(5.5 * FPS)
    assert all(t < 5.5 + 0.001 for t in times)


def test_clip_reads_only_overlapping_segments(
    segments: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied: list[Path] = []
    real_copy = export_mux.Writer.copy

    def recording_copy(self, segment, shift):
        copied.append(segment.source.path)
        return real_copy(self, segment, shift)

    monkeypatch.setattr(export_mux.Writer, "copy", recording_copy)
    export_mp4(segments, tmp_path / "clip.mp4", start=5.2, end=10.7)
    assert copied == segments[2:6]  # 4-6 s (keyframe at 4 s) ... 10-12 s


# -- other inputs -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["audio", "video"])
def test_single_track_inputs(
    kind: str, flv_path: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    paths = write_segments(
        flv_path, tmp_path_factory.mktemp(kind), video=kind == "video", audio=kind == "audio"
    )
    for name, make in [("full", export_mp4), ("stream", None)]:
        path = tmp_path / f"{name}.mp4"
        if make is None:
            with path.open("wb") as file:
                info = stream_mp4(paths, file.write)
        else:
            info = make(paths, path)
        assert (info.video, info.audio) == (kind == "video", kind == "audio")
        assert decode_errors(path) == ""
        probe = ffprobe(path)
        assert [s["codec_type"] for s in probe["streams"]] == [kind]
        assert abs(float(probe["format"]["duration"]) - SECONDS) <= 0.1, name


@pytest.mark.parametrize("jump", [-8 * 90_000, 60 * 90_000], ids=["backwards", "forward-gap"])
def test_discontinuity_is_rebased(
    jump: int, flv_path: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    paths = write_segments(flv_path, tmp_path_factory.mktemp("jump"), jump_at=5, jump_ticks=jump)
    path = tmp_path / "jump.mp4"
    info = export_mp4(paths, path)
    assert abs(info.duration - SECONDS) <= 0.1
    assert decode_errors(path) == ""
    assert abs(float(ffprobe(path)["format"]["duration"]) - SECONDS) <= 0.1
    with av.open(str(path)) as container:
        for stream in container.streams:
            times = [p.dts * stream.time_base for p in container.demux(stream) if p.size]
            steps = [b - a for a, b in itertools.pairwise(times)]
            container.seek(0)
            assert min(steps) > 0, "timestamps must keep increasing"
            assert max(steps) <= 2 * FRAME, f"no gap in {stream.type}: {max(steps)}"


# -- errors -------------------------------------------------------------------------------------


def test_errors(segments: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    with pytest.raises(ExportError, match="no segments"):
        export_mp4([], out)
    with pytest.raises(ExportError, match="not before"):
        export_mp4(segments, out, start=5, end=5)
    with pytest.raises(ExportError, match="beyond"):
        export_mp4(segments, out, start=25, end=30)
    with pytest.raises(ExportError, match="beyond"):
        stream_mp4(segments, lambda _: None, start=25)
    broken = tmp_path / "broken.ts"
    broken.write_bytes(b"not a transport stream" * 100)
    with pytest.raises(ExportError, match=r"broken\.ts"):
        export_mp4([broken], out)
