"""Tests for periscope_ingest.media.playlist: exact text, and RFC 8216 6.2.2 invariants checked
by parsing the rendered playlist back the way a reloading client would."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periscope_ingest.media.master_playlist import Variant, render_master, segment_bitrate
from periscope_ingest.media.playlist import (
    LivePlaylist,
    PlaylistStateError,
    Segment,
    SegmentOrderError,
    SegmentTooLongError,
)
from tests.media.playlist_helpers import starting_at

T0 = datetime(2026, 11, 25, 19, 10, 46, 123456, tzinfo=UTC)


def seg(
    sequence: int,
    duration_ms: int,
    *,
    at: datetime | None = None,
    discontinuity: bool = False,
    size: int = 0,
) -> Segment:
    return Segment(
        sequence=sequence,
        uri=f"k3x9/{sequence:06d}.ts",
        duration_ms=duration_ms,
        program_date_time=at if at is not None else T0 + timedelta(seconds=4 * sequence),
        discontinuity=discontinuity,
        size=size,
    )


# --- a small client-side parser ------------------------------------------------------------


@dataclass
class ParsedSegment:
    uri: str
    duration_ms: int
    program_date_time: datetime | None
    discontinuity: bool
    # RFC 8216: EXT-X-DISCONTINUITY-SEQUENCE plus the EXT-X-DISCONTINUITY tags before the URI.
    discontinuity_number: int


@dataclass
class ParsedPlaylist:
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    playlist_type: str | None = None
    independent: bool = False
    ended: bool = False
    segments: list[ParsedSegment] = field(default_factory=list)


def parse_seconds_ms(text: str) -> int:
    whole, _, frac = text.partition(".")
    assert len(frac) == 3, f"EXTINF not written with 3 decimals: {text!r}"
    return int(whole) * 1000 + int(frac)


def parse_media_playlist(text: str) -> ParsedPlaylist:
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert lines[0] == "#EXTM3U"
    parsed = ParsedPlaylist()
    pending_disc = False
    pending_pdt: datetime | None = None
    pending_dur: int | None = None
    tags_seen = 0
    seen_segment = False
    for line in lines[1:]:
        assert line, "empty line in playlist"
        if line.startswith("#EXT-X-VERSION:"):
            parsed.version = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            parsed.target_duration = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            assert not seen_segment
            parsed.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            assert not seen_segment
            parsed.discontinuity_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PLAYLIST-TYPE:"):
            parsed.playlist_type = line.split(":", 1)[1]
        elif line == "#EXT-X-INDEPENDENT-SEGMENTS":
            parsed.independent = True
        elif line == "#EXT-X-DISCONTINUITY":
            pending_disc = True
            tags_seen += 1
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            value = line.split(":", 1)[1]
            assert value.endswith("Z") and len(value) == len("2026-11-25T19:10:46.123Z")
            pending_pdt = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        elif line.startswith("#EXTINF:"):
            body = line.split(":", 1)[1]
            assert body.endswith(",")
            pending_dur = parse_seconds_ms(body[:-1])
        elif line == "#EXT-X-ENDLIST":
            parsed.ended = True
        elif line.startswith("#"):
            raise AssertionError(f"unexpected tag {line!r}")
        else:
            assert pending_dur is not None, f"URI {line!r} without EXTINF"
            seen_segment = True
            parsed.segments.append(
                ParsedSegment(
                    uri=line,
                    duration_ms=pending_dur,
                    program_date_time=pending_pdt,
                    discontinuity=pending_disc,
                    discontinuity_number=parsed.discontinuity_sequence + tags_seen,
                )
            )
            pending_disc, pending_pdt, pending_dur = False, None, None
    assert pending_dur is None and not pending_disc, "tags after the last URI"
    return parsed


# --- exact text -----------------------------------------------------------------------------


def test_golden_live_window_with_discontinuities_and_endlist() -> None:
    playlist = LivePlaylist(target_duration_s=4, window=3)
    assert playlist.append(seg(0, 4000, at=T0, discontinuity=True)) == []
    assert playlist.append(seg(1, 4000, at=T0 + timedelta(seconds=4))) == []
    # A gap in wall-clock time after a reconnect, in another time zone: rendered in UTC.
    plus_one = timezone(timedelta(hours=1))
    at2 = (T0 + timedelta(seconds=20, milliseconds=500)).astimezone(plus_one)
    assert playlist.append(seg(2, 4000, at=at2, discontinuity=True)) == []

    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:46.123Z\n"
        "#EXTINF:4.000,\n"
        "k3x9/000000.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:50.123Z\n"
        "#EXTINF:4.000,\n"
        "k3x9/000001.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:11:06.623Z\n"
        "#EXTINF:4.000,\n"
        "k3x9/000002.ts\n"
    )

    removed = playlist.append(seg(3, 4321, at=T0 + timedelta(seconds=24, milliseconds=500)))
    assert [s.sequence for s in removed] == [0]
    # Segment 4 is short: dropping segment 1 would leave 4 + 4.321 + 2.5 s < 3 x 4 s, so
    # RFC 8216 6.2.2 keeps it listed even though that is one more than the window of 3.
    removed = playlist.append(seg(4, 2500, at=T0 + timedelta(seconds=28, milliseconds=499)))
    assert removed == []
    playlist.end()

    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:4\n"
        "#EXT-X-MEDIA-SEQUENCE:1\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:1\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:50.123Z\n"
        "#EXTINF:4.000,\n"
        "k3x9/000001.ts\n"
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:11:06.623Z\n"
        "#EXTINF:4.000,\n"
        "k3x9/000002.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:11:10.623Z\n"
        "#EXTINF:4.321,\n"
        "k3x9/000003.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:11:14.622Z\n"
        "#EXTINF:2.500,\n"
        "k3x9/000004.ts\n"
        "#EXT-X-ENDLIST\n"
    )
    assert playlist.ended
    assert playlist.media_sequence == 1
    assert playlist.discontinuity_sequence == 1
    assert playlist.duration_ms == 4000 + 4000 + 4321 + 2500
    assert [s.sequence for s in playlist.segments] == [1, 2, 3, 4]


def test_program_date_time_is_truncated_to_the_millisecond_in_utc() -> None:
    playlist = LivePlaylist(target_duration_s=2)
    at = datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=-5)))
    playlist.append(seg(0, 2000, at=at))
    assert "#EXT-X-PROGRAM-DATE-TIME:2027-01-01T04:59:59.999Z\n" in playlist.render()


def test_golden_event_playlist() -> None:
    playlist = LivePlaylist(target_duration_s=6, window=0, playlist_type="EVENT")
    playlist.append(seg(0, 6000, at=T0))
    playlist.append(seg(1, 1234, at=T0 + timedelta(seconds=6)))
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:6\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-PLAYLIST-TYPE:EVENT\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:46.123Z\n"
        "#EXTINF:6.000,\n"
        "k3x9/000000.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-11-25T19:10:52.123Z\n"
        "#EXTINF:1.234,\n"
        "k3x9/000001.ts\n"
    )


def test_empty_playlist_renders_header_only() -> None:
    playlist = starting_at(LivePlaylist, 2, 6, media_sequence=41, discontinuity_sequence=0)
    assert playlist.render() == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:41\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
    )


def test_vod_must_be_ended_before_render_and_keeps_everything() -> None:
    playlist = LivePlaylist(target_duration_s=2, window=0, playlist_type="VOD")
    for i in range(20):
        assert playlist.append(seg(i, 2000)) == []
    with pytest.raises(PlaylistStateError):
        playlist.render()
    playlist.end()
    parsed = parse_media_playlist(playlist.render())
    assert parsed.playlist_type == "VOD"
    assert parsed.ended
    assert [s.uri for s in parsed.segments] == [f"k3x9/{i:06d}.ts" for i in range(20)]


@pytest.mark.parametrize("playlist_type", ["EVENT", "VOD"])
def test_event_and_vod_refuse_a_sliding_window(playlist_type: str) -> None:
    with pytest.raises(ValueError):
        LivePlaylist(target_duration_s=2, window=6, playlist_type=playlist_type)


@pytest.mark.parametrize(
    ("target", "window", "playlist_type"), [(0, 6, None), (2, -1, None), (2, 0, "LIVE")]
)
def test_bad_settings_are_rejected(target: int, window: int, playlist_type: str | None) -> None:
    with pytest.raises(ValueError):
        LivePlaylist(target, window, playlist_type)


# --- append validation ------------------------------------------------------------------------


def test_append_rejects_wrong_sequence() -> None:
    playlist = LivePlaylist(target_duration_s=2)
    with pytest.raises(SegmentOrderError) as info:
        playlist.append(seg(1, 2000))
    assert (info.value.expected, info.value.got) == (0, 1)
    playlist.append(seg(0, 2000))
    for wrong in (0, 2, -1):
        with pytest.raises(ValueError):
            playlist.append(seg(wrong, 2000))
    # A rejected append changes nothing.
    assert [s.sequence for s in playlist.segments] == [0]
    playlist.append(seg(1, 2000))


@pytest.mark.parametrize(("duration_ms", "ok"), [(2499, True), (2500, False), (3000, False)])
def test_append_rejects_duration_rounding_above_target(duration_ms: int, ok: bool) -> None:
    playlist = LivePlaylist(target_duration_s=2)
    if ok:
        playlist.append(seg(0, duration_ms))
        assert parse_media_playlist(playlist.render()).segments[0].duration_ms == duration_ms
    else:
        with pytest.raises(SegmentTooLongError):
            playlist.append(seg(0, duration_ms))
        assert playlist.segments == ()


def test_append_rejects_naive_time_bad_uri_and_appending_after_end() -> None:
    playlist = LivePlaylist(target_duration_s=2)
    with pytest.raises(ValueError):
        playlist.append(seg(0, 2000, at=datetime(2026, 1, 1)))
    for uri in ("", "a.ts\n#EXT-X-ENDLIST", "a\r.ts"):
        with pytest.raises(ValueError):
            playlist.append(Segment(0, uri, 2000, T0))
    with pytest.raises(ValueError):
        playlist.append(seg(0, -1))
    playlist.append(seg(0, 2000))
    playlist.end()
    with pytest.raises(PlaylistStateError):
        playlist.append(seg(1, 2000))


# --- numbering ------------------------------------------------------------------------------


def test_starting_at_resumes_numbering() -> None:
    playlist = starting_at(
        LivePlaylist, target_duration_s=2, window=3, media_sequence=1000, discontinuity_sequence=7
    )
    with pytest.raises(ValueError):
        playlist.append(seg(0, 2000))
    playlist.append(seg(1000, 2000, discontinuity=True))
    for i in range(1001, 1004):
        playlist.append(seg(i, 2000))
    parsed = parse_media_playlist(playlist.render())
    assert parsed.media_sequence == 1001
    # The reconnect's discontinuity tag left with segment 1000.
    assert parsed.discontinuity_sequence == 8
    assert [s.uri for s in parsed.segments] == [f"k3x9/{i:06d}.ts" for i in (1001, 1002, 1003)]
    assert playlist.next_sequence == 1004


def test_starting_at_first_segment_numbers() -> None:
    playlist = starting_at(LivePlaylist, 2, 3, media_sequence=5, discontinuity_sequence=2)
    playlist.append(seg(5, 2000, discontinuity=True))
    parsed = parse_media_playlist(playlist.render())
    assert (parsed.media_sequence, parsed.discontinuity_sequence) == (5, 2)
    assert parsed.segments[0].discontinuity
    assert parsed.segments[0].discontinuity_number == 3


def test_window_zero_and_none_keep_everything() -> None:
    for window in (0, None):
        playlist = LivePlaylist(target_duration_s=2, window=window)
        total = 0
        for i in range(500):
            assert playlist.append(seg(i, 1000 + i % 1000, discontinuity=i % 50 == 0)) == []
            total += 1000 + i % 1000
        parsed = parse_media_playlist(playlist.render())
        assert parsed.media_sequence == 0
        assert parsed.discontinuity_sequence == 0
        assert len(parsed.segments) == 500
        assert playlist.duration_ms == total
        assert sum(s.duration_ms for s in parsed.segments) == total


def test_window_stretches_to_keep_three_target_durations() -> None:
    playlist = LivePlaylist(target_duration_s=2, window=3)
    durations = [2000, 2000, 2000, 1000, 1000, 2000, 2000]
    removed_all: list[Segment] = []
    listed_ms = []
    for i, d in enumerate(durations):
        removed_all += playlist.append(seg(i, d))
        listed_ms.append(playlist.duration_ms)
    assert [s.sequence for s in removed_all] == [0, 1, 2]
    # Distributed windows: 0-2 (6 s), 0-3 (7 s: segment 0 stays to keep >= 3 x 2 s listed),
    # then 1-4, 2-5, 3-6 (6 s each).
    assert listed_ms == [2000, 4000, 6000, 7000, 6000, 6000, 6000]


# --- long run against a reloading client ----------------------------------------------------


def simulate(
    rng: random.Random,
    count: int,
    target_s: int,
    window: int,
    discontinuity_rate: float,
    start_sequence: int = 0,
    start_discontinuity: int = 0,
) -> None:
    playlist = starting_at(LivePlaylist, target_s, window, start_sequence, start_discontinuity)
    max_ms = target_s * 1000 + 499  # the longest duration that still rounds to target_s
    min_listed_ms = 3 * target_s * 1000

    generated: dict[int, Segment] = {}
    uri_of: dict[int, str] = {}
    number_of: dict[int, int] = {}  # discontinuity sequence number first seen per sequence
    removed_tags = 0
    previous_media_sequence = start_sequence
    previous_listed: list[int] = []
    # Sub-millisecond part >= .5 ms: the rendered time must truncate, never round up.
    at = T0.replace(microsecond=987_654)

    for i in range(count):
        sequence = start_sequence + i
        # Mostly full segments, sometimes very short ones (a cut forced by a discontinuity).
        duration = rng.randint(1, 500) if rng.random() < 0.2 else rng.randint(1, max_ms)
        segment = Segment(
            sequence=sequence,
            uri=f"b{sequence % 7}/{sequence:08d}.ts",
            duration_ms=duration,
            program_date_time=at,
            discontinuity=rng.random() < discontinuity_rate,
        )
        at += timedelta(
            milliseconds=duration + (rng.randint(0, 5000) if segment.discontinuity else 0)
        )
        generated[sequence] = segment
        removed = playlist.append(segment)

        parsed = parse_media_playlist(playlist.render())
        listed = [parsed.media_sequence + k for k in range(len(parsed.segments))]

        assert parsed.version == 3
        assert parsed.target_duration == target_s
        assert parsed.independent and not parsed.ended
        # Media sequence: the first listed segment, advancing by exactly what was removed,
        # and the removed ones are the oldest previously listed, in order.
        assert listed[-1] == sequence
        assert parsed.media_sequence - previous_media_sequence == len(removed)
        assert [s.sequence for s in removed] == previous_listed[: len(removed)]
        assert all(generated[s.sequence] is s for s in removed)
        # Discontinuity sequence: the number of tags that have left the window.
        removed_tags += sum(s.discontinuity for s in removed)
        assert parsed.discontinuity_sequence == start_discontinuity + removed_tags
        assert playlist.discontinuity_sequence == parsed.discontinuity_sequence
        # Window size: never more than N unless removing one more would go under 3 targets.
        total = sum(s.duration_ms for s in parsed.segments)
        assert total == playlist.duration_ms
        if len(parsed.segments) > window:
            assert total - parsed.segments[0].duration_ms < min_listed_ms
        if removed:
            assert total >= min_listed_ms
        for seq, entry in zip(listed, parsed.segments, strict=True):
            original = generated[seq]
            assert (entry.duration_ms + 500) // 1000 <= target_s
            # A reloading client lines segments up by sequence number: same URI, same
            # discontinuity sequence number, same everything, on every reload.
            assert entry.uri == uri_of.setdefault(seq, original.uri)
            assert entry.discontinuity_number == number_of.setdefault(
                seq, entry.discontinuity_number
            )
            assert entry.duration_ms == original.duration_ms
            assert entry.discontinuity == original.discontinuity
            assert entry.program_date_time == original.program_date_time.replace(
                microsecond=original.program_date_time.microsecond // 1000 * 1000
            )
        previous_media_sequence = parsed.media_sequence
        previous_listed = listed

    # The discontinuity sequence number of each segment is an absolute count of the tags up to
    # and including its own, offset by where numbering started.
    running = start_discontinuity
    for seq in range(start_sequence, start_sequence + count):
        running += generated[seq].discontinuity
        assert number_of[seq] == running


def test_long_seeded_run() -> None:
    simulate(random.Random(8216), count=10_000, target_s=4, window=6, discontinuity_rate=0.05)


def test_long_seeded_run_resumed_with_frequent_discontinuities() -> None:
    simulate(
        random.Random(6222),
        count=3_000,
        target_s=2,
        window=3,
        discontinuity_rate=0.3,
        start_sequence=123_456,
        start_discontinuity=17,
    )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    target_s=st.integers(1, 10),
    window=st.integers(1, 12),
    discontinuity_rate=st.floats(0.0, 1.0),
    start_sequence=st.integers(0, 10**9),
    start_discontinuity=st.integers(0, 10**6),
)
def test_random_runs(
    seed: int,
    target_s: int,
    window: int,
    discontinuity_rate: float,
    start_sequence: int,
    start_discontinuity: int,
) -> None:
    simulate(
        random.Random(seed),
        count=200,
        target_s=target_s,
        window=window,
        discontinuity_rate=discontinuity_rate,
        start_sequence=start_sequence,
        start_discontinuity=start_discontinuity,
    )


# --- master playlist and bitrate --------------------------------------------------------------


def test_master_with_audio_resolution_and_frame_rate() -> None:
    text = render_master(
        [
            Variant(
                uri="index.m3u8",
                bandwidth=5_123_456,
                average_bandwidth=4_000_000,
                codecs=("avc1.64001f", "mp4a.40.2"),
                resolution=(1280, 720),
                frame_rate=30000 / 1001,
            ),
            Variant(uri="low/index.m3u8", bandwidth=800_000, frame_rate=60.0),
        ]
    )
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=5123456,AVERAGE-BANDWIDTH=4000000,"
        'CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=29.970\n'
        "index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=800000,FRAME-RATE=60.000\n"
        "low/index.m3u8\n"
    )


def test_master_video_only_without_resolution() -> None:
    text = render_master([Variant(uri="index.m3u8", bandwidth=1_000, codecs=("avc1.42e01e",))])
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=1000,CODECS="avc1.42e01e"\n'
        "index.m3u8\n"
    )


@pytest.mark.parametrize(
    "variant",
    [
        Variant(uri="a.m3u8", bandwidth=0),
        Variant(uri="a.m3u8", bandwidth=1, average_bandwidth=0),
        Variant(uri="a.m3u8", bandwidth=1, codecs=('avc1"',)),
        Variant(uri="a.m3u8", bandwidth=1, codecs=("avc1,mp4a",)),
        Variant(uri="a.m3u8", bandwidth=1, resolution=(0, 720)),
        Variant(uri="a.m3u8", bandwidth=1, frame_rate=float("nan")),
        Variant(uri="a\n.m3u8", bandwidth=1),
    ],
)
def test_master_rejects_values_that_would_corrupt_the_text(variant: Variant) -> None:
    with pytest.raises(ValueError):
        render_master([variant])


def test_master_needs_a_variant() -> None:
    with pytest.raises(ValueError):
        render_master([])


@pytest.mark.parametrize(
    ("size", "duration_ms", "bits_per_second"),
    [
        (1_000_000, 2000, 4_000_000),
        (1, 3, 2667),  # 2666.67 rounded up: BANDWIDTH must not understate the peak
        (750_000, 6000, 1_000_000),
        (0, 2000, 0),
        (1_000_000, 0, 0),
    ],
)
def test_segment_bitrate(size: int, duration_ms: int, bits_per_second: int) -> None:
    assert segment_bitrate(size, duration_ms) == bits_per_second


def test_segment_bitrate_rejects_negative() -> None:
    with pytest.raises(ValueError):
        segment_bitrate(-1, 1000)
