"""Timeline: 32-bit RTMP timestamps of all tracks onto one strictly increasing ms timeline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.timeline import Placed, Timeline, rebase_pts

WRAP = 1 << 32


def feed(timeline: Timeline, samples: list[tuple[str, int]]) -> list[tuple[int, bool]]:
    return [
        (placed.dts, placed.discontinuity)
        for placed in (timeline.place(track, ts) for track, ts in samples)
    ]


def interleaved(start: int, stop: int) -> list[tuple[str, int]]:
    """Video every 40 ms and audio 10 ms after each video frame, encoder time base."""
    samples: list[tuple[str, int]] = []
    for t in range(start, stop, 40):
        samples += [("video", t), ("audio", t + 10)]
    return samples


def test_simple_increasing_from_origin() -> None:
    timeline = Timeline()
    assert timeline.place("video", 1000) == Placed(0, False)
    assert timeline.place("video", 1033) == Placed(33, False)
    assert timeline.place("audio", 1040) == Placed(40, False)
    assert timeline.place("video", 1066) == Placed(66, False)


def test_32_bit_wrap_stays_continuous() -> None:
    timeline = Timeline()
    assert feed(timeline, [("video", 4294967000), ("video", 4294967200), ("video", 200)]) == [
        (0, False),
        (200, False),
        (496, False),
    ]
    # A track that first appears after the wrap is placed in the same time base.
    assert timeline.place("audio", 250) == Placed(546, False)
    # And one whose first sample is from just before the wrap, too.
    assert timeline.place("data", 4294967290) == Placed(290, False)


def test_wrap_on_one_track_while_the_other_has_not_wrapped_yet() -> None:
    timeline = Timeline()
    timeline.place("video", WRAP - 100)
    timeline.place("audio", WRAP - 90)
    assert timeline.place("video", 20) == Placed(120, False)
    assert timeline.place("audio", WRAP - 50) == Placed(50, False)
    assert timeline.place("audio", 5) == Placed(105, False)


def test_gstreamer_clamped_duplicate_dts_zero() -> None:
    timeline = Timeline()
    assert feed(timeline, [("video", 0), ("video", 0), ("video", 33), ("video", 66)]) == [
        (0, False),
        (1, False),
        (33, False),
        (66, False),
    ]


def test_audio_starting_20_ms_before_video_keeps_sync() -> None:
    timeline = Timeline()
    assert timeline.place("video", 1000) == Placed(0, False)
    # Slightly negative on purpose: clamping would shift audio against video.
    assert timeline.place("audio", 980) == Placed(-20, False)
    assert timeline.place("audio", 1003) == Placed(3, False)
    assert timeline.place("video", 1033) == Placed(33, False)


def test_audio_first_defines_the_origin() -> None:
    timeline = Timeline()
    assert timeline.place("audio", 980) == Placed(0, False)
    assert timeline.place("video", 1000) == Placed(20, False)


def test_late_first_audio_behind_video_keeps_sync() -> None:
    # Encoders with a deep video queue: 1.5 s of video before the first audio.
    timeline = Timeline()
    feed(timeline, [("video", t) for t in range(0, 1540, 40)])
    assert timeline.place("audio", 0) == Placed(0, False)
    assert timeline.place("audio", 21) == Placed(21, False)


def test_small_jitter_is_absorbed() -> None:
    timeline = Timeline()
    samples = [("audio", 10000), ("audio", 10023), ("audio", 10046), ("audio", 10045)]
    assert feed(timeline, samples) == [(0, False), (23, False), (46, False), (47, False)]
    assert timeline.place("audio", 10070) == Placed(70, False)
    # Up to backwards_tolerance_ms behind is still "jitter", not a jump.
    assert timeline.place("audio", 10070 - 1000) == Placed(71, False)
    assert timeline.place("audio", 10093) == Placed(93, False)


def test_backwards_beyond_tolerance_is_a_jump() -> None:
    timeline = Timeline()
    feed(timeline, [("audio", 5000), ("audio", 6500)])
    assert timeline.place("audio", 5499) == Placed(1501, True)
    assert timeline.place("audio", 5522) == Placed(1524, False)


def test_encoder_restart_both_tracks_jump() -> None:
    timeline = Timeline()
    before = feed(timeline, interleaved(0, 60000))
    assert not any(disc for _, disc in before)
    assert before[-2:] == [(59960, False), (59970, False)]
    # The encoder restarts its clock: video first, then audio, both back at 0.
    assert timeline.place("video", 0) == Placed(59971, True)
    assert timeline.place("audio", 10) == Placed(59981, False)  # follows, one cut only
    after = feed(timeline, interleaved(40, 400))
    assert after[:2] == [(60011, False), (60021, False)]
    assert not any(disc for _, disc in after)
    assert after[-2:] == [(60331, False), (60341, False)]


def test_encoder_restart_with_audio_still_in_the_old_time_base() -> None:
    timeline = Timeline()
    feed(timeline, interleaved(0, 60000))  # last: video 59960, audio 59970
    assert timeline.place("video", 0) == Placed(59971, True)
    # Audio already queued before the restart still carries old timestamps.
    assert timeline.place("audio", 59993) == Placed(59993, False)
    assert timeline.place("audio", 60016) == Placed(60016, False)
    assert timeline.place("video", 40) == Placed(60011, False)
    # Now audio jumps too: it adopts the new offset (59971) without a second cut; it
    # lands 22 ms behind its last output, so it is nudged to stay strictly increasing.
    assert timeline.place("audio", 23) == Placed(60017, False)
    assert timeline.place("audio", 46) == Placed(60018, False)
    assert timeline.place("audio", 70) == Placed(60041, False)
    assert timeline.place("video", 80) == Placed(60051, False)


def test_audio_jumps_first_video_follows() -> None:
    timeline = Timeline()
    feed(timeline, interleaved(0, 20000))  # last: video 19960, audio 19970
    assert timeline.place("audio", 5) == Placed(19971, True)
    assert timeline.place("video", 0) == Placed(19966, False)  # A/V offset kept across the jump
    assert timeline.place("video", 40) == Placed(20006, False)


def test_forward_gap_of_60_seconds_is_a_discontinuity() -> None:
    timeline = Timeline()
    feed(timeline, interleaved(0, 4000))  # last: video 3960, audio 3970
    assert timeline.place("video", 64000) == Placed(3971, True)
    assert timeline.place("audio", 64010) == Placed(3981, False)
    assert timeline.place("video", 64040) == Placed(4011, False)
    # A gap shorter than max_gap_ms is kept as it is (e.g. a stalled encoder).
    assert timeline.place("video", 64040 + 9000) == Placed(13011, False)


def test_custom_limits() -> None:
    timeline = Timeline(max_gap_ms=500, backwards_tolerance_ms=10)
    feed(timeline, [("video", 0), ("video", 40)])
    assert timeline.place("video", 30) == Placed(41, False)  # exactly 10 ms behind
    assert timeline.place("video", 28) == Placed(42, True)  # 13 ms behind: a jump
    assert timeline.place("video", 500) == Placed(514, False)  # 472 ms forward: kept
    assert timeline.place("video", 1200) == Placed(515, True)  # 700 ms forward: a jump


def test_new_track_on_a_clock_of_its_own_starts_next_to_the_others() -> None:
    timeline = Timeline()
    feed(timeline, interleaved(0, 400))
    assert timeline.place("data", 3_000_000) == Placed(371, False)
    assert timeline.place("data", 3_000_040) == Placed(411, False)
    assert timeline.place("video", 400) == Placed(400, False)


def test_invalid_arguments() -> None:
    timeline = Timeline()
    with pytest.raises(ValueError, match="outside"):
        timeline.place("video", -1)
    with pytest.raises(ValueError, match="outside"):
        timeline.place("video", WRAP)
    with pytest.raises(ValueError, match="max_gap_ms"):
        Timeline(max_gap_ms=0)
    with pytest.raises(ValueError, match="backwards_tolerance_ms"):
        Timeline(backwards_tolerance_ms=-1)


@pytest.mark.parametrize(
    ("dts", "offset", "pts"),
    [(100, 33, 133), (100, 0, 100), (100, -33, 100), (0, -8388608, 0), (-20, 40, 20)],
)
def test_rebase_pts(dts: int, offset: int, pts: int) -> None:
    assert rebase_pts(dts, offset) == pts


_TRACKS = st.sampled_from(["video", "audio", "data"])
_TIMESTAMPS = st.integers(min_value=0, max_value=WRAP - 1)


@given(st.lists(st.tuples(_TRACKS, _TIMESTAMPS), max_size=200))
def test_dts_strictly_increasing_per_track_for_any_input(samples: list[tuple[str, int]]) -> None:
    timeline = Timeline()
    last: dict[str, int] = {}
    for track, ts in samples:
        placed = timeline.place(track, ts)
        if track in last:
            assert placed.dts > last[track]
        last[track] = placed.dts


@given(
    st.integers(min_value=0, max_value=WRAP - 1),
    st.lists(st.tuples(_TRACKS, st.integers(min_value=0, max_value=200)), max_size=200),
)
def test_well_behaved_input_is_only_shifted(start: int, steps: list[tuple[str, int]]) -> None:
    # One shared clock that advances by small steps (wrapping freely): every
    # sample lands exactly at its distance from the first one, no discontinuity.
    timeline = Timeline()
    assert timeline.place("video", start) == Placed(0, False)
    clock = 0
    last = {"video": 0}
    for track, step in steps:
        clock += step
        placed = timeline.place(track, (start + clock) % WRAP)
        expected = max(clock, last[track] + 1) if track in last else clock
        assert placed == Placed(expected, False)
        last[track] = placed.dts


def test_a_lone_audio_timestamp_ahead_does_not_desynchronise_the_tracks() -> None:
    # Found by hypothesis (tests/live/test_broken_timelines.py): the audio's return took the
    # jump's new offset while the video kept its own, 1.5 s apart for the rest of the publish.
    timeline = Timeline()
    feed(timeline, [("video", 0), ("audio", 0), ("video", 34), ("audio", 46), ("video", 67)])
    assert timeline.place("audio", 2202) == Placed(2202, False)  # a glitch 2.1 s ahead
    assert timeline.place("video", 714) == Placed(714, False)  # a 0.65 s gap: kept as time
    # The audio back: after the bogus one (a track only ever increases), a jump.
    assert timeline.place("audio", 724) == Placed(2203, True)
    # The video takes the same step (1479 ms): 10 ms apart as sent, not 1.5 s.
    assert timeline.place("video", 748) == Placed(748 + 1479, False)
    assert timeline.place("audio", 745) == Placed(745 + 1479, False)
