"""PartCutter: LL-HLS part boundaries, pure. Parts never exceed the target and add up exactly to
their segment, with and without B-frames, and across gaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.media.packets import MediaPacket
from periscope_ingest.media.part_cutter import PartCut, PartCutter, position_ms

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
    assert all(0 < p.duration_ms <= cutter.target_ms for p in parts)
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
        assert all(0 < p <= cutter.target_ms for p in parts), parts


def gop_order(start: int, length: int) -> list[int]:
    """A closed GOP with two B-frames in decode order (I0 P3 B1 B2 ...): its last frames are a
    shorter run, so that the frame before the next keyframe is a reference frame."""
    order = [start]
    shown = start + 1
    while shown < start + length:
        reference = min(shown + 2, start + length - 1)
        order += [reference, *range(shown, reference)]
        shown = reference + 1
    return order


def independent_starts(first_gop: int) -> tuple[list[int], list[PartCut], int]:
    order = gop_order(0, first_gop) + gop_order(first_gop, 60 - first_gop)
    keys = {0, first_gop}
    frames = [video(p * FRAME, (i - 2) * FRAME, p in keys) for i, p in enumerate(order)]
    cutter = PartCutter(0.5, has_video=True)
    parts, duration = run_gop(frames, cutter)
    assert sum(p.duration_ms for p in parts) == duration
    assert all(p.duration_ms <= cutter.target_ms for p in parts)
    # 29.97 fps with two B-frames: 100.1 ms steps, 0.5 s parts of five steps.
    assert cutter.target_ms == 507
    starts = [sum(p.duration_ms for p in parts[:i]) for i in range(len(parts))]
    independent = [start for start, p in zip(starts, parts, strict=True) if p.independent]
    return independent, parts, cutter.target_ms


def test_a_keyframe_inside_a_segment_starts_an_independent_part() -> None:
    # A 1.4 s GOP in a 2 s segment: the keyframe at frame 42 comes when the part so far keeps
    # the 85 % rule; it starts its own part, flagged independent.
    independent, parts, target = independent_starts(42)
    assert independent == [0, position_ms(42 * FRAME)]
    assert all(p.duration_ms >= 0.85 * target for p in parts[1:-1] if not p.independent)


def test_a_keyframe_just_after_a_part_boundary_stays_inside_the_part() -> None:
    # A 1 s GOP: the keyframe at frame 30 comes two frames after a part began. Cut there, that
    # part would be 67 ms, far below 85 % of the target: the keyframe stays inside it.
    independent, parts, target = independent_starts(30)
    assert independent == [0]
    assert all(p.duration_ms >= 0.85 * target for p in parts[:-1])
