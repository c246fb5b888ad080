"""storage/continuation.py: the recording so far of a broadcast another node held, read from the
store (here the data directory itself, as for processes of `serve --workers`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from periscope_ingest.media.playlist import LivePlaylist, Segment
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.continuation import finalise_continued, load_continued
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import LocalStore
from periscope_ingest.storage.recordings import read_record, write_record

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


def recorded(layout: DataLayout, names: list[str], status: str = "live") -> BroadcastRecord:
    """A broadcast directory as a node leaves it: record and EVENT recording playlist."""
    record = BroadcastRecord(
        "AbCdEf123456", "chan", "2026-12-04T08:00:00.000Z", status=status, title="t"
    )
    directory = layout.broadcast_dir("chan", "AbCdEf123456")
    directory.mkdir(parents=True)
    write_record(directory, record)
    playlist = LivePlaylist(4, 0, "EVENT")
    for index, name in enumerate(names):
        moment = START + timedelta(seconds=2 * index)
        playlist.append(Segment(index, name, 2000, moment, discontinuity=index == 2, size=100))
        (directory / name).write_bytes(b"\x47" * 100)
    (directory / "recording.m3u8").write_text(playlist.render())
    return record


def test_the_recording_so_far_and_where_numbering_goes_on(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    layout.ensure()
    # 000003.ts was listed by a node that died before storing it: the names skip it.
    recorded(layout, ["000000.ts", "000001.ts", "000002.ts", "000004.ts"])
    continued = load_continued(layout, LocalStore(tmp_path), "chan", "AbCdEf123456")
    assert continued is not None
    assert [s.sequence for s in continued.segments] == [0, 1, 2, 3]
    assert continued.next_sequence == 5 and continued.target_duration_s == 4
    assert continued.discontinuities == 1
    record = continued.record
    assert (record.segments, record.duration, record.discontinuities) == (4, 8.0, 1)
    assert record.status == "live" and record.title == "t"
    # What the previous node's viewers saw listed is never numbered again.
    assert continued.numbered_after(7).next_sequence == 7
    assert continued.numbered_after(3).next_sequence == 5


def test_a_finished_or_missing_broadcast_is_never_continued(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    layout.ensure()
    assert load_continued(layout, LocalStore(tmp_path), "chan", "AbCdEf123456") is None
    assert not layout.broadcast_dir("chan", "AbCdEf123456").exists()  # nothing left behind
    recorded(layout, ["000000.ts"], status="ended")
    assert load_continued(layout, LocalStore(tmp_path), "chan", "AbCdEf123456") is None


def test_a_dead_nodes_broadcast_is_finalised_as_vod(tmp_path) -> None:
    layout = DataLayout(tmp_path)
    layout.ensure()
    recorded(layout, ["000000.ts", "000001.ts"])
    continued = load_continued(layout, LocalStore(tmp_path), "chan", "AbCdEf123456")
    assert continued is not None
    record = finalise_continued(layout, replace(continued))
    directory = layout.broadcast_dir("chan", "AbCdEf123456")
    text = (directory / "recording.m3u8").read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.endswith("#EXT-X-ENDLIST\n")
    assert record.status == "interrupted" and record.ended_at == "2026-12-04T08:00:04.000Z"
    assert read_record(directory) == record
