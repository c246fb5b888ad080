"""fMP4 and LL-HLS through the whole stream pipeline, in process: parts, blocking waits (200
waiters, no polling), delta updates, and the fMP4 recording exported as MP4."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.segment_commands import PlaylistUpdate
from periscope_ingest.media.export import export_mp4
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import init_segments
from periscope_ingest.storage.recordings import recording_segments
from tests.e2e.hls_check import check_part_durations
from tests.flv_file import read_tags
from tests.live.pipeline_rig import feed, make_pipeline

SECONDS = 16  # of the source_flv fixture (tests/conftest.py)
LL = {"segment_format": "fmp4", "low_latency": True, "part_duration": 0.5}


@pytest.fixture(scope="module")
def tags(source_flv: Path) -> list:
    return list(read_tags(source_flv))


def record_updates(pipeline: StreamPipeline) -> list[PlaylistUpdate]:
    """Every playlist the worker publishes, in order (as the loop receives them)."""
    updates: list[PlaylistUpdate] = []
    original = pipeline.edge.publish

    def spy(update: PlaylistUpdate) -> None:
        updates.append(update)
        original(update)

    pipeline.edge.publish = spy  # type: ignore[method-assign]
    return updates


def lists(text: str, msn: int, part: int) -> bool:
    media_sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    counts: dict[int, int] = {}
    sequence = media_sequence
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            counts[sequence] = counts.get(sequence, 0) + 1
        elif line and not line.startswith("#"):
            sequence += 1
    return sequence > msn or counts.get(msn, 0) > part


async def test_200_waiters_wake_exactly_when_their_part_is_listed(tmp_path: Path, tags) -> None:
    pipeline, _ = make_pipeline(tmp_path, **LL)
    assert not pipeline.edge.has(1, 2)
    seen: list[tuple[bool, str]] = []

    async def waiter() -> None:
        assert await pipeline.edge.wait_for(1, 2, timeout=60)
        text = pipeline.edge.playlist.text
        seen.append((lists(text, 1, 2), text))

    waiters = [asyncio.ensure_future(waiter()) for _ in range(200)]
    await asyncio.sleep(0)
    updates = record_updates(pipeline)
    for tag in tags:
        feed(pipeline, tag)
        await asyncio.sleep(0)
    await pipeline.finish()
    await asyncio.gather(*waiters)
    assert len(seen) == 200 and all(listed for listed, _ in seen)
    # Every waiter saw the first playlist that lists the part, or a later one (never an earlier).
    first = next(i for i, u in enumerate(updates) if lists(u.text, 1, 2))
    earlier = {u.text for u in updates[:first]}
    assert not any(text in earlier for _, text in seen)


def apply_skip(delta: str, full_before: str) -> str:
    """What a client builds from a delta update and its previous copy of the playlist."""
    skipped = int(re.search(r"#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)", delta).group(1))
    old_sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", full_before).group(1))
    new_sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", delta).group(1))
    blocks: list[list[str]] = [[]]
    for line in full_before.split("#EXT-X-MAP:")[1].splitlines()[1:]:
        if line.startswith("#EXT-X-PART:"):
            continue  # parts of old segments are not merged
        blocks[-1].append(line)
        if line and not line.startswith("#"):
            blocks.append([])
    start = new_sequence - old_sequence
    merged = [line for block in blocks[start : start + skipped] for line in block]
    head, _, rest = delta.partition(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}\n")
    return head.replace("#EXT-X-VERSION:9", "#EXT-X-VERSION:6") + "\n".join(merged) + "\n" + rest


async def test_delta_updates_equal_the_full_playlist(tmp_path: Path, tags) -> None:
    pipeline, layout = make_pipeline(tmp_path, window=12, **LL)
    updates = record_updates(pipeline)
    for tag in tags:
        feed(pipeline, tag)
    await pipeline.finish()
    deltas = [u for u in updates if u.delta is not None and "#EXT-X-SKIP" in u.delta]
    assert deltas, "a 16 s stream with a 12-segment window must allow skipping"
    for update in deltas:
        previous = updates[updates.index(update) - 1].text
        assert "#EXT-X-VERSION:9" in update.delta and "CAN-SKIP-UNTIL=12.000" in update.delta
        strip = lambda text: [x for x in text.splitlines() if not x.startswith("#EXT-X-PART:")]  # noqa: E731
        assert strip(apply_skip(update.delta, previous)) == strip(update.text)

    # Parts of every segment still listed add up exactly to its EXTINF.
    text = layout.live_playlist("chan").read_text()
    sums: list[int] = []
    current = 0
    for line in text.splitlines():
        if m := re.match(r"#EXT-X-PART:DURATION=(\d+)\.(\d+)", line):
            current += int(m.group(1)) * 1000 + int(m.group(2))
        elif m := re.match(r"#EXTINF:(\d+)\.(\d+),", line):
            extinf = int(m.group(1)) * 1000 + int(m.group(2))
            assert current in (0, extinf)
            sums.append(current)
            current = 0
    assert any(sums)


async def test_fmp4_recording_is_mapped_and_exports(tmp_path: Path, tags) -> None:
    pipeline, layout = make_pipeline(tmp_path, segment_format="fmp4")
    for tag in tags:
        feed(pipeline, tag)
    await pipeline.finish()
    recording = layout.recording_playlist("chan", pipeline.broadcast_id).read_text()
    assert "#EXT-X-VERSION:6" in recording and '#EXT-X-MAP:URI="init-000000.mp4"' in recording
    assert "#EXT-X-PART" not in layout.live_playlist("chan").read_text()
    record = Catalog(layout.catalog_path).get(pipeline.broadcast_id)
    segments = recording_segments(layout, record)
    assert segments and all(p.suffix == ".m4s" for p in segments)
    info = export_mp4(segments, tmp_path / "out.mp4", inits=init_segments(segments))
    assert info.video and info.audio and abs(info.duration - SECONDS) < 0.1


async def test_part_hold_back_setting_reaches_the_live_playlist(tmp_path: Path, tags) -> None:
    hls = {**LL, "part_duration": 0.25, "part_hold_back": 0.5}
    pipeline, _layout = make_pipeline(tmp_path, **hls)
    updates = record_updates(pipeline)
    for tag in tags[: len(tags) // 4]:
        feed(pipeline, tag)
    await pipeline.finish()
    texts = [u.text for u in updates]
    # 30 fps with two B-frames: parts can end every 100 ms, so 0.25 s is snapped up to three
    # steps (and the ms the timestamps' rounding may add), and PART-HOLD-BACK keeps its two
    # part targets of that.
    assert texts and all(check_part_durations(text) == 304 for text in texts)
    assert all("PART-HOLD-BACK=0.608," in text for text in texts)
    # Unset, it stays three part targets (0.5 s snapped up to five steps).
    (tmp_path / "default").mkdir()
    pipeline, _layout = make_pipeline(tmp_path / "default", **LL)
    updates = record_updates(pipeline)
    for tag in tags[: len(tags) // 4]:
        feed(pipeline, tag)
    await pipeline.finish()
    assert updates and check_part_durations(updates[-1].text) == 506
    assert "PART-HOLD-BACK=1.518," in updates[-1].text
