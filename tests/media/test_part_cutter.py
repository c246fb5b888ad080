"""PartCutter: LL-HLS part boundaries, pure. Parts never exceed the target and add up exactly to
their segment, with and without B-frames, and across gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.packets import MediaPacket
from periscope_ingest.media.segmenter import PartCutter, position_ms

FRAME = 3003  # 29.97 fps in 90 kHz ticks


def video(pts: int, dts: int, key: bool = False) -> MediaPacket:
    return MediaPacket("video", dts, pts, key, b"x", FRAME)


def run_gop(frames: list[MediaPacket], cutter: PartCutter) -> tuple[list, int]:
    cutter.open_segment(frames[0])
    cuts = [c for f in frames[1:] if (c := cutter.place(f)) is not None]
    end = max(f.pts for f in frames) + FRAME
    last, duration = cutter.close_segment(end)
    return [*cuts, last], duration


def test_parts_without_b_frames_are_whole_frames_up_to_the_target() -> None:
    frames = [video(i * FRAME, i * FRAME, i == 0) for i in range(60)]
    parts, duration = run_gop(frames, PartCutter(0.5, has_video=True))
    assert sum(p.duration_ms for p in parts) == duration == position_ms(60 * FRAME)
    assert all(p.duration_ms <= 500 for p in parts)
    assert [p.duration_ms for p in parts[:3]] == [467, 467, 467]  # 14 frames: 15 would be 500.5
    assert parts[0].independent and not parts[1].independent


def test_b_frames_end_a_part_where_its_shown_frames_end() -> None:
    # Decode order I0 P3 B1 B2 P6 B4 B5 ...: the part before P(n) holds every frame shown before.
    order = [0]
    for base in range(3, 60, 3):
        order += [base, base - 2, base - 1]
    frames = [video(p * FRAME, (i - 1) * FRAME, p == 0) for i, p in enumerate(order)]
    parts, duration = run_gop(frames, PartCutter(0.5, has_video=True))
    assert sum(p.duration_ms for p in parts) == duration
    position = 0
    cutter = PartCutter(0.5, has_video=True)
    cutter.open_segment(frames[0])
    shown: list[int] = [frames[0].pts]
    for frame in frames[1:]:
        cut = cutter.place(frame)
        if cut is not None:
            # Exactly the frames shown so far are in the closed part.
            assert position + cut.duration_ms == position_ms(max(shown) + FRAME)
            position += cut.duration_ms
        shown.append(frame.pts)


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=120))
def test_gaps_never_make_a_part_too_long(gaps: list[int]) -> None:
    cutter = PartCutter(0.3, has_video=False)
    pts = 0
    packets = []
    for gap in gaps:
        packets.append(MediaPacket("audio", pts, pts, True, b"a", 1920))
        pts += gap * 900
    parts, duration = run_gop(packets, cutter)
    assert all(0 < p.duration_ms <= 300 for p in parts)
    assert sum(p.duration_ms for p in parts) == duration


def test_audio_ends_parts_when_the_video_stops() -> None:
    # 1 s of video, then 2 s of audio alone: parts stay within the target and add up to the
    # segment, which lasts as long as its audio.
    aac = 1920  # 1024 samples at 48 kHz
    cutter = PartCutter(0.5, has_video=True)
    frames = [video(i * FRAME, i * FRAME, i == 0) for i in range(30)]
    cutter.open_segment(frames[0])
    cuts = []
    for n in range(round(3 * 90_000 / aac)):
        while frames[1:] and frames[1].pts <= n * aac:
            if (cut := cutter.place(frames.pop(1))) is not None:
                cuts.append(cut)
        packet = MediaPacket("audio", n * aac, n * aac, True, b"a", aac)
        if (cut := cutter.place(packet)) is not None:
            cuts.append(cut)
    end = round(3 * 90_000 / aac) * aac
    last, duration = cutter.close_segment(end)
    parts = [*cuts, last]
    assert duration == position_ms(end)
    assert sum(p.duration_ms for p in parts) == duration
    assert all(p.duration_ms <= 500 for p in parts), parts
    assert parts[0].independent and not any(p.independent for p in parts[1:])


@given(st.lists(st.integers(0, 4000), min_size=1, max_size=6), st.integers(1, 4))
def test_a_segments_parts_never_add_up_to_more_than_its_limit(gaps: list[int], target_s: int):
    """Gaps in the media carried over segment cuts: each segment's parts (and its EXTINF) stay
    within the longest duration its target allows, however the gaps fall."""
    cutter = PartCutter(0.5, has_video=True)
    limit = target_s * 1000 + 499
    pts = 0
    for gap in gaps:
        frames = [video(pts + i * 3000, pts + i * 3000, i == 0) for i in range(target_s * 30)]
        cutter.open_segment(frames[0], limit_ms=limit)
        parts = []
        for i, packet in enumerate(frames[1:], 1):
            if i == len(frames) // 2:  # a hole in the middle of the segment
                packet = video(packet.pts + gap * 90, packet.dts + gap * 90)
            part = cutter.place(packet)
            if part is not None:
                parts.append(part.duration_ms)
        pts = frames[-1].pts + gap * 90 + 3000
        last, duration = cutter.close_segment(pts)
        parts.append(last.duration_ms)
        assert sum(parts) == duration <= limit, (parts, gaps)
        assert all(0 < p <= 500 for p in parts), parts


def test_a_keyframe_inside_a_segment_starts_an_independent_part() -> None:
    # A 1 s GOP in a 2 s segment, with B-frames (decode order I0 P3 B1 B2 ...): the keyframe at
    # frame 30 comes two frames after a part boundary would otherwise be, yet starts its own
    # part, flagged independent; the part before it is short rather than holding it.
    order = [0]
    for base in range(3, 28, 3):
        order += [base, base - 2, base - 1]
    order += [29, 28]  # the frame before a closed GOP's keyframe is a reference frame
    for base in range(30, 60, 3):
        order += [base] if base == 30 else [base, base - 2, base - 1]
    keys = {0, 30}
    frames = [video(p * FRAME, (i - 1) * FRAME, p in keys) for i, p in enumerate(order)]
    parts, duration = run_gop(frames, PartCutter(0.5, has_video=True))
    assert sum(p.duration_ms for p in parts) == duration
    assert all(p.duration_ms <= 500 for p in parts)
    starts = [sum(p.duration_ms for p in parts[:i]) for i in range(len(parts))]
    independent = [start for start, p in zip(starts, parts, strict=True) if p.independent]
    assert independent == [0, position_ms(30 * FRAME)]
