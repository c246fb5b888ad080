from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.packets import MediaPacket
from periscope_ingest.media.segmenter import Action, Segmenter

FRAME = 3000  # 30 fps in 90 kHz ticks
AUDIO = 1920  # 1024 samples at 48 kHz


def video(pts: int, key: bool = False, dts: int | None = None) -> MediaPacket:
    return MediaPacket("video", pts if dts is None else dts, pts, key, b"v", FRAME)


def audio(pts: int) -> MediaPacket:
    return MediaPacket("audio", pts, pts, True, b"a", AUDIO)


def cuts(segmenter: Segmenter, packets: list[MediaPacket]) -> list[tuple[int, int | None]]:
    """(pts of the packet a cut happened before, duration of the closed segment)."""
    out = []
    for packet in packets:
        decision = segmenter.place(packet)
        if decision.action is Action.CUT:
            out.append((packet.pts, decision.closed_duration))
    return out


def gop_stream(frames: int, gop: int) -> list[MediaPacket]:
    return [video(i * FRAME, key=i % gop == 0) for i in range(frames)]


def test_cuts_at_first_keyframe_at_or_after_target() -> None:
    seg = Segmenter(2.0, has_video=True)
    # 1 s GOPs: cut every second keyframe.
    result = cuts(seg, gop_stream(181, 30))
    assert result == [(0, None), (180000, 180000), (360000, 180000), (540000, 180000)]
    assert seg.target_duration_s == 2


def test_millisecond_jitter_does_not_double_a_segment() -> None:
    seg = Segmenter(2.0, has_video=True)
    # The second keyframe arrives 1 ms early (ms rounding in FLV): still cut there.
    packets = [video(0, True), video(FRAME), video(180000 - 90, True), video(180000 - 90 + FRAME)]
    assert cuts(seg, packets) == [(0, None), (179910, 179910)]


def test_target_duration_is_fixed_from_first_segment_with_long_gops() -> None:
    seg = Segmenter(2.0, has_video=True)
    # 8 s GOPs (x264's default keyint=250 is about that): TARGETDURATION 8.
    result = cuts(seg, gop_stream(30 * 17, 240))
    assert result[1] == (720000, 720000)
    assert seg.target_duration_s == 8


def test_forced_cut_keeps_extinf_within_target_duration() -> None:
    seg = Segmenter(2.0, has_video=True)
    # Two 2 s GOPs fix the target at 2, then the encoder stops sending keyframes.
    packets = [video(i * FRAME, key=i in (0, 60, 120)) for i in range(300)]
    decisions = [(p, seg.place(p)) for p in packets]
    closed = [d.closed_duration for _, d in decisions if d.closed_duration is not None]
    assert seg.target_duration_s == 2
    # Every closed segment rounds to at most 2 s (< 2.5 s).
    assert all(c < 225000 for c in closed), closed
    assert any(d.forced for _, d in decisions)


def test_cut_uses_pts_not_dts() -> None:
    # GStreamer-like: DTS lags PTS by a frame; the keyframe DTS distance is 1.967 s, PTS 2.000 s.
    seg = Segmenter(2.0, has_video=True)
    packets = [video(i * FRAME + FRAME, key=i % 60 == 0, dts=i * FRAME) for i in range(121)]
    assert [c[1] for c in cuts(seg, packets)] == [None, 180000, 180000]


def test_drops_everything_before_the_first_keyframe() -> None:
    seg = Segmenter(2.0, has_video=True)
    assert seg.place(audio(0)).action is Action.DROP
    assert seg.place(video(0)).action is Action.DROP
    assert seg.place(video(FRAME, True)).action is Action.CUT
    assert seg.place(audio(AUDIO)).action is Action.WRITE


def test_audio_keyframe_flags_never_cut_video() -> None:
    seg = Segmenter(2.0, has_video=True)
    seg.place(video(0, True))
    for i in range(1, 200):
        assert seg.place(audio(i * AUDIO)).action is Action.WRITE


def test_audio_only_cuts_on_audio_frames() -> None:
    seg = Segmenter(2.0, has_video=False)
    result = cuts(seg, [audio(i * AUDIO) for i in range(200)])
    assert [r[0] for r in result] == [0, 94 * AUDIO, 188 * AUDIO]
    assert result[1][1] == 94 * AUDIO  # 2.005 s: the first frame at or after 2 s
    assert seg.finish() == 12 * AUDIO


def test_discontinuity_cuts_at_next_keyframe_and_is_flagged() -> None:
    seg = Segmenter(2.0, has_video=True)
    seg.place(video(0, True))
    seg.place(video(FRAME))
    assert seg.place(video(2 * FRAME), discontinuity=True).action is Action.WRITE
    decision = seg.place(video(3 * FRAME, True))
    assert decision.action is Action.CUT and decision.discontinuity
    assert decision.closed_duration == 3 * FRAME
    assert not seg.place(video(63 * FRAME, True)).discontinuity  # the flag is not sticky


def test_finish_gives_last_segment_duration_to_end_of_last_frame() -> None:
    seg = Segmenter(2.0, has_video=True)
    cuts(seg, gop_stream(75, 60))
    assert seg.finish() == 15 * FRAME
    assert seg.finish() is None


@given(
    gop=st.integers(min_value=10, max_value=150),
    frames=st.integers(min_value=1, max_value=900),
    target=st.sampled_from([1.0, 2.0, 4.0, 6.0]),
)
def test_segments_tile_the_stream_and_start_with_keyframes(gop: int, frames: int, target: float):
    seg = Segmenter(target, has_video=True)
    packets = gop_stream(frames, gop)
    starts = []
    durations = []
    for p in packets:
        d = seg.place(p)
        if d.action is Action.CUT:
            starts.append(p.pts)
            if d.closed_duration is not None:
                durations.append(d.closed_duration)
            assert p.keyframe or d.forced
    last = seg.finish()
    assert last is not None
    durations.append(last)
    # Durations add up exactly to the stream's length: no gap, no overlap.
    assert sum(durations) == frames * FRAME
    assert starts[0] == 0
    td = seg.target_duration_s
    assert td is not None
    assert all((d + 45000) // 90000 <= td for d in durations), (durations, td)


def test_a_gap_never_makes_a_segment_longer_than_the_target_allows() -> None:
    """A clock that steps ahead by less than a jump (9 s here) leaves a gap: the segment before
    it ends with its media, and the next starts after a discontinuity."""
    seg = Segmenter(2.0, has_video=True)
    assert cuts(seg, gop_stream(120, 60))[-1] == (60 * FRAME, 60 * FRAME)  # target fixed: 2 s
    seg.place(video(120 * FRAME))
    after_gap = 121 * FRAME + 9 * 90_000
    decision = seg.place(video(after_gap, True))
    assert decision.action is Action.CUT and decision.discontinuity
    # Its 61 frames (from the keyframe at 60 to the end of frame 120), not the 9 s after them.
    assert decision.closed_duration == 61 * FRAME
    # A GOP that runs on past the target is cut before a reference frame, as always.
    decision = None
    for n in range(1, 120):
        decision = seg.place(video(after_gap + n * FRAME))
        if decision.action is Action.CUT:
            break
    assert decision is not None and decision.forced and not decision.discontinuity
    assert decision.closed_duration <= 2 * 90_000 + 45_000


def test_the_first_segment_is_cut_at_its_cap_when_no_keyframe_comes() -> None:
    # One keyframe, then none for 30 s (an encoder with an endless GOP): the first segment is
    # cut before the reference frame that would pass the cap, and TARGETDURATION follows it.
    seg = Segmenter(2.0, has_video=True, max_duration_s=5.0)
    result = cuts(seg, [video(i * FRAME, key=i == 0) for i in range(900)])
    assert result[1] == (150 * FRAME, 150 * FRAME)  # 5 s: frame 150 would end past the cap
    assert seg.target_duration_s == 5
    assert all(closed is None or closed <= 5.5 * 90_000 for _, closed in result), result


def test_the_default_cap_is_ten_target_durations() -> None:
    seg = Segmenter(1.0, has_video=True)
    result = cuts(seg, [video(i * FRAME, key=i == 0) for i in range(400)])
    assert result[1][1] is not None and 9.5 * 90_000 < result[1][1] <= 10 * 90_000
    assert seg.target_duration_s == 10


def b_frame_stream(frames: int, keyframes: set[int]) -> list[MediaPacket]:
    """Decode order I0 P3 B1 B2 P6 B4 B5 ...: PTS one frame ahead of DTS."""
    order = [0]
    for base in range(3, frames, 3):
        order += [base, base - 2, base - 1]
    return [video((n + 1) * FRAME, key=n in keyframes, dts=i * FRAME) for i, n in enumerate(order)]


def test_a_forced_cut_before_a_b_frame_run_is_no_discontinuity() -> None:
    # Keyframes every 2 s, then none: the forced cuts come before P-frames whose B-frames
    # arrive after them; that is not a hole in the media.
    seg = Segmenter(2.0, has_video=True)
    packets = b_frame_stream(600, {0, 60, 120})
    decisions = [seg.place(p) for p in packets]
    forced = [d for d in decisions if d.forced]
    assert len(forced) >= 5
    assert not any(d.discontinuity for d in decisions)
    assert all(d.closed_duration <= 2.5 * 90_000 for d in forced)
    # The segments tile the stream: nothing listed twice, nothing left out.
    closed = sum(d.closed_duration for d in decisions if d.closed_duration is not None)
    assert closed + seg.finish() == max(p.pts for p in packets) + FRAME - packets[0].pts


def test_audio_cuts_when_the_video_stops() -> None:
    # 3 s of video and audio, then 20 s of audio alone (a camera unplugged): the segments stay
    # within TARGETDURATION and together last as long as the audio.
    seg = Segmenter(2.0, has_video=True)
    audio_frames = round(23 * 90_000 / AUDIO)
    frames = [video(i * FRAME, key=i % 60 == 0) for i in range(90)]
    packets = []
    for n in range(audio_frames):
        while frames and frames[0].pts <= n * AUDIO:
            packets.append(frames.pop(0))
        packets.append(audio(n * AUDIO))
    decisions = [(p, seg.place(p)) for p in packets]
    closed = [d.closed_duration for _, d in decisions if d.closed_duration is not None]
    assert seg.target_duration_s == 2
    assert all(c < 2.5 * 90_000 for c in closed), closed
    assert any(p.track == "audio" and d.forced for p, d in decisions)
    assert not any(d.discontinuity for _, d in decisions)
    assert sum(closed) + seg.finish() == audio_frames * AUDIO


def test_a_hole_in_both_tracks_is_still_a_discontinuity_when_audio_comes_first() -> None:
    seg = Segmenter(2.0, has_video=True)
    cuts(seg, gop_stream(120, 60))  # target fixed at 2 s
    seg.place(audio(120 * FRAME))
    # Both clocks step 5 s ahead; the audio after the hole arrives before the video.
    decision = seg.place(audio(120 * FRAME + 5 * 90_000))
    assert decision.action is Action.CUT and decision.discontinuity
    assert decision.closed_duration == 60 * FRAME  # what its video holds, not the hole


def interleaved(seconds: int, audio_lead: int, gop: int = 60) -> list[MediaPacket]:
    """30 fps video with a keyframe every ``gop`` frames, and audio whose timestamps lead it by
    ``audio_lead`` ticks, sent in the order a real-time encoder sends them (by capture time)."""
    packets: list[tuple[int, MediaPacket]] = []
    for i in range(seconds * 30):
        packets.append((i * FRAME, video(i * FRAME, key=i % gop == 0)))
    for i in range(seconds * 90_000 // AUDIO):
        packets.append((i * AUDIO, audio(i * AUDIO + audio_lead)))
    return [packet for _, packet in sorted(packets, key=lambda p: (p[0], p[1].track))]


def test_audio_that_leads_a_running_video_does_not_cut_without_a_keyframe() -> None:
    """An encoder with an A/V offset (audio 1.5 s ahead, less than a segment's cap): every
    segment still starts with a keyframe, 2 s apart. (Before, the audio was taken for audio
    going on after the video stopped, and cut every segment before a non-key frame.)"""
    seg = Segmenter(2.0, has_video=True)
    decisions = [(packet, seg.place(packet)) for packet in interleaved(12, 135_000)]
    cut = [(p, d) for p, d in decisions if d.action is Action.CUT]
    assert [p.track for p, _ in cut] == ["video"] * 6
    assert all(p.keyframe and not d.forced and not d.discontinuity for p, d in cut)
    assert [d.closed_duration for _, d in cut] == [None] + [180_000] * 5
