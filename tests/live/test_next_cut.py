"""Read pacing stops around the keyframe that closes a segment (live/next_cut.py).

A real encoder's FLV tags (2 s GOP, B-frames, AAC) through the whole pipeline, with a 50 ms read
interval; after each tag, what the session would be told: pace the next read or not.
"""

from __future__ import annotations

from pathlib import Path

from tests.flv_file import read_tags
from tests.live.pipeline_rig import AUDIO_TAG, VIDEO_TAG, feed, make_pipeline

SECONDS = 9  # of the source_flv fixture (tests/conftest.py)
READ_INTERVAL_MS = 50


async def test_reads_are_unpaced_only_around_the_expected_cut(
    tmp_path: Path, source_flv: Path
) -> None:
    pipeline, _ = make_pipeline(
        tmp_path, read_interval_s=READ_INTERVAL_MS / 1000, segment_duration=2
    )
    seen = []  # (FLV timestamp ms, a video keyframe, unpaced after it, packets not handed over)
    for tag in read_tags(source_flv):
        tag_type, timestamp, body = tag
        if tag_type not in (VIDEO_TAG, AUDIO_TAG):
            continue  # media tags only: each is a read the session could pace
        feed(pipeline, tag)
        keyframe = tag_type == VIDEO_TAG and body[0] >> 4 == 1 and body[1] == 1  # not the header
        batch = len(pipeline._worker._batch)
        seen.append((timestamp, keyframe, pipeline.next_cut.due_soon(), batch))
    await pipeline.finish()

    keyframes = [t for t, key, *_ in seen if key]
    assert len(keyframes) >= 4, keyframes
    # From the second cut on, a GOP after the last: the frame read just before each keyframe
    # leaves the connection unpaced, so the keyframe is read the moment it arrives, and the
    # segment thread got the packets as the window before it opened: what is left to mux when
    # the segment closes is that read interval's few frames, which go with the closing command.
    for cut in keyframes[2:]:
        *_, (_, _, unpaced, batch) = [s for s in seen if s[0] < cut and not s[1]]
        assert unpaced, f"paced before the keyframe at {cut} ms"
        # 50 ms of 30 fps video and 48 kHz AAC: four packets, five with B-frame reordering.
        assert batch <= 5, f"{batch} packets held back before the keyframe at {cut} ms"
        (at_cut,) = [s for s in seen if s[0] == cut and s[1]]
        assert at_cut[3] == 1, f"the keyframe at {cut} ms is not the only packet held"
        # One hand-over to the segment thread as the window opens, not one per packet in it
        # (each a wake-up of the thread): after the packets of the window, the batch is empty
        # once at most.
        window = [s for s in seen if cut - 2 * READ_INTERVAL_MS <= s[0] < cut and s[2]]
        assert len(window) >= 3, window
        assert sum(1 for s in window if s[3] == 0) <= 1, window
    # Elsewhere paced: nothing unpaced further than a read interval (and a frame) from a cut.
    for timestamp, _, unpaced, _ in seen:
        near = min(abs(timestamp - cut) for cut in keyframes)
        if near > READ_INTERVAL_MS + 40:
            assert not unpaced, timestamp
    assert sum(unpaced for _, _, unpaced, _ in seen) < 0.15 * len(seen)
