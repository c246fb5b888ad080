"""A recording playlist that grows by appends (storage/growing_file.py): what is appended after
each segment rebuilds render()'s text exactly, and a reader that catches an append half done
(any prefix of the text) sees the segments listed before it, never an error or a torn entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periscope_ingest.media.llhls import LowLatencyPlaylist, LowLatencySettings
from periscope_ingest.media.playlist import LivePlaylist, PlaylistStateError, Segment
from periscope_ingest.media.playlist_reader import complete_playlist, read_media_playlist

T0 = datetime(2026, 12, 4, 19, 0, 0, 250000, tzinfo=UTC)

# (duration ms, discontinuity, init segment: None for MPEG-TS, else which of three)
entries = st.lists(
    st.tuples(st.integers(1, 6000), st.booleans(), st.one_of(st.none(), st.integers(0, 2))),
    min_size=1,
    max_size=25,
)


def segments_of(drawn: list[tuple[int, bool, int | None]]) -> list[Segment]:
    out, at = [], T0
    for sequence, (duration_ms, discontinuity, init) in enumerate(drawn):
        fmp4 = init is not None
        out.append(
            Segment(
                sequence=sequence,
                uri=f"{sequence:06d}.{'m4s' if fmp4 else 'ts'}",
                duration_ms=duration_ms,
                program_date_time=at,
                discontinuity=discontinuity,
                map_uri=f"init-{init}.mp4" if fmp4 else None,
            )
        )
        at += timedelta(milliseconds=duration_ms)
    return out


@settings(max_examples=300, deadline=None)
@given(entries)
def test_appending_what_each_segment_added_gives_the_rendered_playlist(drawn) -> None:
    playlist = LivePlaylist(6, 0, "EVENT")
    text = playlist.render()  # the header alone
    rewrites = 0
    for segment in segments_of(drawn):
        playlist.append(segment)
        appended = playlist.render_appended()
        if appended is None:
            rewrites += 1
            text = playlist.render()
        else:
            text += appended
        assert text == playlist.render()
    # Whole again only when the header changes: EXT-X-VERSION 3 -> 6 at the first init segment.
    first_map = next((i for i, (_, _, init) in enumerate(drawn) if init is not None), None)
    assert rewrites == (0 if first_map is None else 1)


def test_an_appended_entry_is_its_segment_s_lines() -> None:
    playlist = LivePlaylist(6, 0, "EVENT")
    drawn = [(2000, False, None), (1500, True, None)]
    for segment in segments_of(drawn):
        playlist.append(segment)
    assert playlist.render_appended() == (
        "#EXT-X-DISCONTINUITY\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-12-04T19:00:02.250Z\n"
        "#EXTINF:1.500,\n"
        "000001.ts\n"
    )


def test_only_a_growing_playlist_can_be_appended_to() -> None:
    (segment,) = segments_of([(2000, False, None)])
    with pytest.raises(PlaylistStateError):
        LivePlaylist(6, 0, "EVENT").render_appended()  # nothing appended yet
    windowed = LivePlaylist(6, 6)
    windowed.append(segment)
    with pytest.raises(PlaylistStateError):
        windowed.render_appended()  # its first segments leave the window
    ended = LivePlaylist(6, 0, "EVENT")
    ended.append(segment)
    ended.end()
    with pytest.raises(PlaylistStateError):
        ended.render_appended()
    low_latency = LowLatencyPlaylist(
        6, 0, low_latency=LowLatencySettings(part_target_ms=500), map_uri="init-0.mp4"
    )
    (fmp4,) = segments_of([(2000, False, 0)])
    low_latency.append(fmp4)
    with pytest.raises(PlaylistStateError):
        low_latency.render_appended()  # parts and hints follow the last segment


@settings(max_examples=60, deadline=None)
@given(entries)
def test_every_prefix_reads_as_the_segments_complete_in_it(drawn) -> None:
    playlist = LivePlaylist(6, 0, "EVENT")
    # The file after each segment since it was last written whole: a reader can catch it
    # anywhere between two of these (a whole write it sees entire or not at all).
    states: list[str] = []
    for segment in segments_of(drawn):
        playlist.append(segment)
        appended = playlist.render_appended()
        if appended is None or not states:  # the writer's first write is whole too
            states = [playlist.render()]
        else:
            states.append(states[-1] + appended)
    full = states[-1]
    assert full == playlist.render()
    listed = read_media_playlist(full).segments
    assert [s.uri for s in listed] == [s.uri for s in playlist.segments]
    before = len(playlist.segments) - len(states)  # listed before the last whole write
    for cut in range(len(states[0]), len(full) + 1):
        prefix = full[:cut]
        complete = max(k for k, state in enumerate(states) if len(state) <= cut)
        assert complete_playlist(prefix) == states[complete], f"cut at {cut} of {len(full)}"
        assert read_media_playlist(prefix).segments == listed[: before + complete + 1]


def test_an_ended_playlist_is_complete_as_it_is() -> None:
    playlist = LivePlaylist(6, 0, "VOD")
    for segment in segments_of([(2000, False, None), (2000, False, None)]):
        playlist.append(segment)
    playlist.end()
    text = playlist.render()
    assert text.endswith("#EXT-X-ENDLIST\n")
    assert complete_playlist(text) == text
    assert read_media_playlist(text).ended
