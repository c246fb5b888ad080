"""web/replays.py LiveRecordingPlaylists: a live recording's playlist is read and cut to its
complete entries once per change of the file, whatever the number of viewers, within a budget."""

from __future__ import annotations

from pathlib import Path

from periscope_ingest.web.replays import LiveRecordingPlaylists

HEADER = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n"


def entry(n: int) -> bytes:
    return b"#EXTINF:2.000,\n%06d.ts\n" % n


def test_read_once_per_change_and_cut_to_whole_entries(tmp_path: Path) -> None:
    path = tmp_path / "recording.m3u8"
    path.write_bytes(HEADER + entry(0))
    playlists = LiveRecordingPlaylists()
    first = playlists.read(path)
    assert first == HEADER + entry(0)
    assert playlists.read(path) is first  # unchanged: not read again
    with path.open("ab") as file:
        file.write(entry(1) + b"#EXTINF:2.0")  # an append caught half done
    assert playlists.read(path) == HEADER + entry(0) + entry(1)
    assert playlists.read(tmp_path / "gone.m3u8") is None


def test_the_least_recently_read_go_beyond_the_budget(tmp_path: Path) -> None:
    paths = [tmp_path / f"{n}.m3u8" for n in range(3)]
    for path in paths:
        path.write_bytes(HEADER + entry(0))
    size = len(HEADER + entry(0))
    playlists = LiveRecordingPlaylists(max_bytes=2 * size)
    kept = [playlists.read(path) for path in paths]  # the third pushes the first out
    assert playlists.read(paths[2]) is kept[2] and playlists.read(paths[1]) is kept[1]
    again = playlists.read(paths[0])
    assert again == kept[0] and again is not kept[0]  # read anew
    too_big = tmp_path / "long.m3u8"
    too_big.write_bytes(HEADER + b"".join(entry(n) for n in range(10)))
    body = playlists.read(too_big)
    assert body is not None and playlists.read(too_big) is not body  # served, never kept
