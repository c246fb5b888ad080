"""A real encoder's FLV tags through the whole stream pipeline (timeline, segmenter, PyAV muxer,
disk-writer thread, playlists), with the timestamp accidents encoders and networks produce."""

from __future__ import annotations

from pathlib import Path

from periscope_ingest.live.edge import MEMORY_SEGMENTS
from periscope_ingest.storage.layout import DataLayout
from tests.e2e.hls_check import FRAME_90K, analyse_segment, parse_media_playlist, video_duration
from tests.flv_file import read_tags
from tests.live.pipeline_rig import CHANNEL, feed_all_and_finish, make_pipeline

SECONDS = 8  # of the source_flv fixture (tests/conftest.py)
WRAP = 2**32


async def run(tmp_path: Path, tags, **hls) -> tuple[DataLayout, list[tuple[object, bytes]]]:
    pipeline, layout = make_pipeline(tmp_path, **hls)
    await feed_all_and_finish(pipeline, tags)
    playlist = parse_media_playlist(layout.live_playlist(CHANNEL).read_text())
    assert playlist.ended
    segments = [(s, (layout.channel_dir(CHANNEL) / s.uri).read_bytes()) for s in playlist.segments]
    return layout, segments


def check_valid(segments, expected_seconds: float) -> None:
    total = sum(s.duration for s, _ in segments)
    assert abs(total - expected_seconds) <= 0.05, [s.duration for s, _ in segments]
    last_dts = None
    for listed, data in segments:
        media = analyse_segment(data)
        assert media.video[0][2], "segment must start with a keyframe"
        assert abs(listed.duration * 90_000 - video_duration(media)) <= FRAME_90K
        for dts, pts, _ in media.video:
            assert pts >= dts
            assert last_dts is None or dts > last_dts
            last_dts = dts


async def test_plain_stream(tmp_path: Path, source_flv: Path) -> None:
    _, segments = await run(tmp_path, read_tags(source_flv))
    check_valid(segments, SECONDS)
    assert [round(s.duration, 3) for s, _ in segments] == [2.0, 2.0, 2.0, 2.0]
    assert not any(s.discontinuity for s, _ in segments)


async def test_32_bit_timestamp_wrap_is_seamless(tmp_path: Path, source_flv: Path) -> None:
    shifted = [(t, (ts + WRAP - 3000) % WRAP, body) for t, ts, body in read_tags(source_flv)]
    assert any(ts > WRAP - 3000 for _, ts, _ in shifted) and any(ts < 3000 for _, ts, _ in shifted)
    _, segments = await run(tmp_path, shifted)
    check_valid(segments, SECONDS)
    assert not any(s.discontinuity for s, _ in segments)


async def test_encoder_clock_restart_is_a_discontinuity(tmp_path: Path, source_flv: Path) -> None:
    # At 4 s the encoder's clock goes back to 0 (it restarted, or a relay switched sources).
    jumped = [(t, ts if ts < 4000 else ts - 4000, body) for t, ts, body in read_tags(source_flv)]
    _, segments = await run(tmp_path, jumped)
    check_valid(segments, SECONDS)
    assert [s.discontinuity for s, _ in segments] == [False, False, True, False]


async def test_large_forward_gap_is_a_discontinuity(tmp_path: Path, source_flv: Path) -> None:
    gapped = [(t, ts if ts < 4000 else ts + 60_000, body) for t, ts, body in read_tags(source_flv)]
    _, segments = await run(tmp_path, gapped)
    # The gap is not played out as 60 s of nothing.
    check_valid(segments, SECONDS)
    assert [s.discontinuity for s, _ in segments] == [False, False, True, False]


async def test_live_window_slides_but_old_segments_stay(tmp_path: Path, source_flv: Path) -> None:
    layout, segments = await run(tmp_path, read_tags(source_flv), window=2, segment_duration=1.0)
    # 2 s GOPs with a 1 s target: cuts stay on keyframes, TARGETDURATION follows the first GOP.
    text = layout.live_playlist(CHANNEL).read_text()
    assert "#EXT-X-TARGETDURATION:2\n" in text
    assert "#EXT-X-MEDIA-SEQUENCE:1\n" in text  # 3 x target = 6 s kept: 3 of 4 segments
    assert len(segments) == 3
    assert (layout.channel_dir(CHANNEL) / segments[0][0].uri.replace("1.ts", "0.ts")).is_file()


async def test_a_watched_stream_keeps_its_newest_segments_in_memory(
    tmp_path: Path, source_flv: Path
) -> None:
    watched, layout = make_pipeline(tmp_path / "watched", segment_duration=1.0)
    watched.edge.watched()
    await feed_all_and_finish(watched, read_tags(source_flv))
    files = layout.channel_dir(CHANNEL) / watched.broadcast_id
    names = sorted(p.name for p in files.glob("*.ts"))
    assert len(names) == 4
    kept = [name for name in names if watched.edge.media(name) is not None]
    assert kept == names[-MEMORY_SEGMENTS:]  # bounded: older segments are served from disk
    for name in kept:
        assert watched.edge.media(name) == (files / name).read_bytes()

    unwatched, _ = make_pipeline(tmp_path / "unwatched", segment_duration=1.0)
    await feed_all_and_finish(unwatched, read_tags(source_flv))
    assert all(unwatched.edge.media(name) is None for name in names)
