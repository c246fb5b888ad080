"""LowLatencyPlaylist: LL-HLS parts, server control, preload hints and delta updates."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from periscope_ingest.media.llhls import (
    DELTA_PROTOCOL_VERSION,
    LowLatencyPlaylist,
    LowLatencySettings,
    Part,
    PartDurationMismatchError,
    PartTooLongError,
)
from periscope_ingest.media.playlist import (
    MAP_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    LivePlaylist,
    PlaylistError,
    PlaylistStateError,
    Segment,
)
from tests.media.playlist_helpers import listed_parts, starting_at

T0 = datetime(2026, 11, 25, 19, 10, 46, 123456, tzinfo=UTC)


def ll_playlist(window: int = 3, can_skip_until_ms: int | None = None) -> LowLatencyPlaylist:
    settings = LowLatencySettings(part_target_ms=500, can_skip_until_ms=can_skip_until_ms)
    return LowLatencyPlaylist(2, window, low_latency=settings, map_uri="k3x9/init.mp4")


def add_segment(playlist: LowLatencyPlaylist, sequence: int, parts: int = 4) -> None:
    for i in range(parts):
        playlist.add_part(Part(f"k3x9/{sequence:06d}.{i}.m4s", 500, independent=i == 0))
    at = T0 + timedelta(seconds=2 * sequence)
    playlist.append(Segment(sequence, f"k3x9/{sequence:06d}.m4s", 500 * parts, at))


GOLDEN_HEADER = """\
#EXTM3U
#EXT-X-VERSION:{version}
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.000,PART-HOLD-BACK=1.500,HOLD-BACK=6.000
#EXT-X-PART-INF:PART-TARGET=0.500
#EXT-X-MEDIA-SEQUENCE:{msn}
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="k3x9/init.mp4"
"""

GOLDEN_FULL = (
    GOLDEN_HEADER.format(version=6, msn=1)
    + """\
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:48.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000001.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000001.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000001.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000001.3.m4s"
#EXTINF:2.000,
k3x9/000001.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:50.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000002.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000002.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000002.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000002.3.m4s"
#EXTINF:2.000,
k3x9/000002.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:52.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000003.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000003.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000003.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000003.3.m4s"
#EXTINF:2.000,
k3x9/000003.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:54.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000004.0.m4s",INDEPENDENT=YES
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="k3x9/000004.1.m4s"
"""
)


def test_golden_full_playlist() -> None:
    playlist = ll_playlist()
    for sequence in range(4):
        add_segment(playlist, sequence)
    playlist.start_segment(T0 + timedelta(seconds=8))
    playlist.add_part(Part("k3x9/000004.0.m4s", 500, independent=True))
    playlist.set_preload_hint("k3x9/000004.1.m4s")
    assert playlist.render() == GOLDEN_FULL
    # Nothing lies 12 s before the end of a 6 s playlist: the "delta" is the full playlist.
    assert playlist.render(skip=True) == GOLDEN_FULL


GOLDEN_DELTA = (
    GOLDEN_HEADER.format(version=9, msn=0)
    + """\
#EXT-X-SKIP:SKIPPED-SEGMENTS=2
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:50.123Z
#EXTINF:2.000,
k3x9/000002.m4s
#EXT-X-DISCONTINUITY
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:52.123Z
#EXTINF:2.000,
k3x9/000003.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:54.123Z
#EXTINF:2.000,
k3x9/000004.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:56.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000005.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000005.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000005.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000005.3.m4s"
#EXTINF:2.000,
k3x9/000005.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:58.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000006.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000006.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000006.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000006.3.m4s"
#EXTINF:2.000,
k3x9/000006.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:11:00.123Z
#EXT-X-PART:DURATION=0.500,URI="k3x9/000007.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000007.1.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000007.2.m4s"
#EXT-X-PART:DURATION=0.500,URI="k3x9/000007.3.m4s"
#EXTINF:2.000,
k3x9/000007.m4s
#EXT-X-PART:DURATION=0.500,URI="k3x9/000008.0.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.500,URI="k3x9/000008.1.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="k3x9/000008.2.m4s"
"""
)


def test_golden_delta_update() -> None:
    playlist = ll_playlist(window=8, can_skip_until_ms=12_000)
    for sequence in range(8):
        for i in range(4):
            playlist.add_part(Part(f"k3x9/{sequence:06d}.{i}.m4s", 500, independent=i == 0))
        at = T0 + timedelta(seconds=2 * sequence)
        playlist.append(Segment(sequence, f"k3x9/{sequence:06d}.m4s", 2000, at, sequence == 3))
    playlist.add_part(Part("k3x9/000008.0.m4s", 500, independent=True))
    playlist.add_part(Part("k3x9/000008.1.m4s", 500))
    playlist.set_preload_hint("k3x9/000008.2.m4s")
    # Segments 0 and 1 end 14 s and 12 s before the end of the last complete segment.
    assert playlist.skippable_segments() == 2
    assert playlist.render(skip=True) == GOLDEN_DELTA
    assert apply_delta(playlist.render(), playlist.render(skip=True)) == playlist.render()


def test_versions() -> None:
    assert (PROTOCOL_VERSION, MAP_PROTOCOL_VERSION, DELTA_PROTOCOL_VERSION) == (3, 6, 9)
    live = LivePlaylist(2, 3)
    live.append(Segment(0, "a.ts", 2000, T0))
    assert "#EXT-X-VERSION:3\n" in live.render()
    assert "#EXT-X-PART" not in live.render() and "#EXT-X-MAP" not in live.render()
    playlist = ll_playlist(window=0)
    for sequence in range(7):
        add_segment(playlist, sequence)
    assert "#EXT-X-VERSION:6\n" in playlist.render()
    assert "#EXT-X-VERSION:9\n" in playlist.render(skip=True)
    no_skip = LowLatencyPlaylist(
        2, 0, low_latency=LowLatencySettings(part_target_ms=500, can_skip_until_ms=0)
    )
    add_segment(no_skip, 0)
    assert "CAN-SKIP-UNTIL" not in no_skip.render()
    assert no_skip.render(skip=True) == no_skip.render()


# --- a client applying delta updates --------------------------------------------------------


def split_playlist(text: str) -> tuple[list[str], int, int, list[list[str]], list[str]]:
    """(header lines, media sequence, skipped count, segment blocks, trailing lines)."""
    lines = text.split("\n")[:-1]
    end_of_header = next(i for i, line in enumerate(lines) if line.startswith("#EXT-X-MAP:"))
    header = lines[: end_of_header + 1]
    msn = next(int(x.split(":")[1]) for x in header if x.startswith("#EXT-X-MEDIA-SEQUENCE:"))
    rest = lines[end_of_header + 1 :]
    skipped = 0
    if rest and rest[0].startswith("#EXT-X-SKIP:SKIPPED-SEGMENTS="):
        skipped = int(rest.pop(0).split("=")[1])
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in rest:
        current.append(line)
        if not line.startswith("#"):
            blocks.append(current)
            current = []
    return header, msn, skipped, blocks, current


def apply_delta(previous_full: str, delta: str) -> str:
    """What a client does with a delta update: take the skipped segments from its last copy."""
    _old_header, old_msn, old_skipped, old_blocks, _ = split_playlist(previous_full)
    assert old_skipped == 0
    header, msn, skipped, blocks, tail = split_playlist(delta)
    start = msn - old_msn
    assert start >= 0 and start + skipped <= len(old_blocks), "client lacks skipped segments"
    merged = old_blocks[start : start + skipped] + blocks
    header = [
        f"#EXT-X-VERSION:{MAP_PROTOCOL_VERSION}" if h.startswith("#EXT-X-VERSION") else h
        for h in header
    ]
    return "\n".join(header + [line for block in merged for line in block] + tail) + "\n"


def test_long_run_delta_updates_reproduce_the_full_playlist() -> None:
    rng = random.Random(2026)
    settings = LowLatencySettings(part_target_ms=500)  # CAN-SKIP-UNTIL 12 s
    playlist = LowLatencyPlaylist(2, 12, low_latency=settings, map_uri="init.mp4")
    history: list[str] = []
    position_ms = 0
    skipped_seen = 0
    for sequence in range(400):
        discontinuity = rng.random() < 0.05
        at = T0 + timedelta(milliseconds=position_ms)
        if rng.random() < 0.5:
            playlist.start_segment(at, discontinuity)
        duration = rng.randint(700, 2400)
        # Part boundaries at rounded positions, like a cutter working on frame times.
        boundaries = [0]
        while duration - boundaries[-1] > 500:
            boundaries.append(boundaries[-1] + rng.randint(420, 500))
        boundaries.append(duration)
        for i, (a, b) in enumerate(itertools.pairwise(boundaries)):
            playlist.add_part(Part(f"{sequence}.{i}.m4s", b - a, independent=i == 0))
            playlist.set_preload_hint(f"{sequence}.{i + 1}.m4s")
            history.append(playlist.render())
            full, delta = history[-1], playlist.render(skip=True)
            skipped = split_playlist(delta)[2]
            skipped_seen = max(skipped_seen, skipped)
            # A client whose last copy is up to 3 reloads old can always merge.
            for back in (1, 2, 4):
                if len(history) >= back:
                    assert apply_delta(history[-back], delta) == full
        playlist.append(Segment(sequence, f"{sequence}.m4s", duration, at, discontinuity))
        position_ms += duration
        parts = listed_parts(playlist.render())
        for segment in playlist.segments:
            listed = parts[segment.uri]
            assert not listed or sum(ms for _, ms in listed) == segment.duration_ms
    assert skipped_seen >= 2
    assert playlist.discontinuity_sequence > 0  # discontinuities did slide out


def test_parts_are_listed_only_near_the_end() -> None:
    playlist = ll_playlist(window=10)
    for sequence in range(8):
        add_segment(playlist, sequence)
    # Target 2 s: segments ending less than 6 s before the end keep their parts.
    parts = listed_parts(playlist.render())
    assert [s.sequence for s in playlist.segments if parts[s.uri]] == [5, 6, 7]
    for i in range(4):  # 2 s more: segment 5 now ends 6 s before the end
        playlist.add_part(Part(f"8.{i}.m4s", 500, i == 0))
    parts = listed_parts(playlist.render())
    assert [s.sequence for s in playlist.segments if parts[s.uri]] == [6, 7]
    text = playlist.render()
    assert '"k3x9/000005.0.m4s"' not in text and '"8.3.m4s"' in text
    assert '"k3x9/000004.0.m4s"' not in text and '"k3x9/000006.0.m4s"' in text


def test_blocking_reload_positions() -> None:
    playlist = ll_playlist()
    add_segment(playlist, 0)
    playlist.add_part(Part("1.0.m4s", 500, True))
    # What web/live.py answers blocking reloads from: segment 0 complete, part 1.0 listed.
    assert playlist.next_sequence == 1
    assert playlist.pending_parts == (Part("1.0.m4s", 500, True),)


def test_end_drops_the_hint() -> None:
    playlist = ll_playlist()
    add_segment(playlist, 0)
    playlist.set_preload_hint("1.0.m4s")
    playlist.end()
    text = playlist.render()
    assert "PRELOAD-HINT" not in text and text.endswith("#EXT-X-ENDLIST\n")
    with pytest.raises(PlaylistStateError):
        playlist.add_part(Part("1.0.m4s", 500))


def test_part_hold_back_may_go_down_to_two_part_targets() -> None:
    # The draft's MUST is two part targets (three is a SHOULD, and the default).
    settings = LowLatencySettings(part_target_ms=250, part_hold_back_ms=500)
    text = LowLatencyPlaylist(2, low_latency=settings).render()
    assert "PART-HOLD-BACK=0.500,HOLD-BACK=6.000" in text
    assert (
        "PART-HOLD-BACK=0.750,"
        in LowLatencyPlaylist(2, low_latency=LowLatencySettings(part_target_ms=250)).render()
    )
    with pytest.raises(PlaylistError, match="2 part targets"):
        LowLatencyPlaylist(2, low_latency=LowLatencySettings(250, part_hold_back_ms=499))


def test_a_snapped_part_target_keeps_part_hold_backs_multiple() -> None:
    # The part cutter may declare more than the setting (a stream's frame rhythm): PART-HOLD-BACK
    # keeps its multiple of the part target, and never drops below the draft's two.
    two = LowLatencySettings(250, part_hold_back_ms=500).with_part_target(304)
    assert (two.part_target_ms, two.part_hold_back_ms) == (304, 608)
    text = LowLatencyPlaylist(2, low_latency=two).render()
    assert "PART-HOLD-BACK=0.608," in text and "PART-TARGET=0.304" in text
    default = LowLatencySettings(250).with_part_target(304)
    assert "PART-HOLD-BACK=0.912," in LowLatencyPlaylist(2, low_latency=default).render()
    odd = LowLatencySettings(300, part_hold_back_ms=601).with_part_target(301)
    assert odd.part_hold_back_ms == 604  # 601 x 301 / 300 = 603.003, rounded up
    unchanged = LowLatencySettings(250, part_hold_back_ms=700)
    assert unchanged.with_part_target(250) is unchanged


def test_errors() -> None:
    playlist = ll_playlist()
    with pytest.raises(PartTooLongError):
        playlist.add_part(Part("a.m4s", 501))
    with pytest.raises(PlaylistError):
        playlist.add_part(Part('a".m4s', 400))
    with pytest.raises(PlaylistError):
        playlist.add_part(Part("a.m4s", 0))
    playlist.add_part(Part("a.m4s", 500))
    with pytest.raises(PartDurationMismatchError):
        playlist.append(Segment(0, "0.m4s", 501, T0))
    with pytest.raises(PlaylistStateError):
        playlist.start_segment(T0)
    with pytest.raises(PlaylistError):
        LowLatencyPlaylist(2, low_latency=LowLatencySettings(500, part_hold_back_ms=999))
    with pytest.raises(PlaylistError):
        LowLatencyPlaylist(2, low_latency=LowLatencySettings(500, hold_back_ms=5999))
    with pytest.raises(PlaylistError):
        LowLatencyPlaylist(2, low_latency=LowLatencySettings(500, can_skip_until_ms=11_999))
    with pytest.raises(PlaylistError):
        LowLatencyPlaylist(2, low_latency=LowLatencySettings(2001))
    opened = ll_playlist()
    opened.start_segment(T0, discontinuity=True)
    opened.add_part(Part("0.0.m4s", 500, True))
    with pytest.raises(PlaylistError, match="start_segment"):
        opened.append(Segment(0, "0.m4s", 500, T0))


def test_starting_at_continues_numbering() -> None:
    playlist = starting_at(LowLatencyPlaylist, 2, 3, 41, 2, low_latency=LowLatencySettings(500))
    add_segment(playlist, 41)
    text = playlist.render()
    assert "#EXT-X-MEDIA-SEQUENCE:41\n#EXT-X-DISCONTINUITY-SEQUENCE:2\n" in text
