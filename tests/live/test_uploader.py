"""The uploader against a real store (LocalStore on another directory): order, coalescing,
overflow that never drops a segment, retries until the store takes the files, and a long
recording's playlist going up as its new lines (storage/recording_tail.py)."""

from __future__ import annotations

import time
from pathlib import Path

from periscope_ingest.config_services import StorageSettings
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.growing_file import GrowingFile
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import LocalStore
from periscope_ingest.storage.recording_tail import read_recording_playlist


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_failing_store_delays_uploads_but_loses_no_segment(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    directory = layout.broadcast_dir("chan", "abcdefghijkl")
    directory.mkdir(parents=True)
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    # The store cannot take anything: where it needs a directory there is a file.
    (elsewhere / "channels").write_bytes(b"in the way")
    metrics = Metrics()
    uploader = Uploader(
        LocalStore(elsewhere),
        layout,
        StorageSettings(upload_queue=4, upload_retry_max=0.05),
        metrics,
    )
    playlist = directory / "recording.m3u8"
    segments = []
    for sequence in range(10):
        segment = directory / f"{sequence:06d}.m4s"
        segment.write_bytes(f"segment {sequence}".encode())
        segments.append(segment)
        uploader.file_complete(segment)
        playlist.write_text(f"listing up to {sequence}\n")
        uploader.file_complete(playlist)
    (directory / "broadcast.json").write_text("{}")
    uploader.file_complete(directory / "broadcast.json")

    # 10 segments, the playlist once (its 9 earlier rewrites merged into the newest), the
    # record once. The queue held 4 (3 segments and the playlist) when the 4th segment came:
    # it and the 6 after it are past the limit, kept.
    assert uploader.queued() == 12
    assert metrics.upload_overflow._value.get() == 7
    wait_until(lambda: metrics.upload_errors._value.get() >= 2)
    assert uploader.seconds_behind() > 0

    (elsewhere / "channels").unlink()  # the store is back
    wait_until(lambda: uploader.queued() == 0)
    stored = elsewhere / "channels" / "chan" / "abcdefghijkl"
    for segment in segments:
        assert (stored / segment.name).read_bytes() == segment.read_bytes()
    assert (stored / "recording.m3u8").read_text() == "listing up to 9\n"
    assert uploader.seconds_behind() == 0
    assert uploader.stop(1.0) == 0


def test_stop_gives_up_on_what_the_store_never_takes(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path / "data")
    directory = layout.broadcast_dir("chan", "abcdefghijkl")
    directory.mkdir(parents=True)
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    (elsewhere / "channels").write_bytes(b"in the way")
    uploader = Uploader(
        LocalStore(elsewhere), layout, StorageSettings(upload_retry_max=0.05), Metrics()
    )
    (directory / "000001.ts").write_bytes(b"x")
    uploader.file_complete(directory / "000001.ts")
    started = time.monotonic()
    assert uploader.stop(0.3) == 1
    assert time.monotonic() - started < 2


def test_files_outside_a_broadcast_are_not_queued(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    uploader = Uploader(LocalStore(tmp_path / "store"), layout, StorageSettings())
    uploader.file_complete(tmp_path / "catalog.sqlite3")
    uploader.file_complete(tmp_path / "channels" / "chan" / "index.m3u8")
    assert uploader.queued() == 0


def test_a_recovered_directory_is_uploaded_whole_but_parts_and_temporaries(
    tmp_path: Path,
) -> None:
    layout = DataLayout(tmp_path / "data")
    directory = layout.broadcast_dir("chan", "abcdefghijkl")
    directory.mkdir(parents=True)
    stored_names = ["000000.m4s", "000001.m4s", "init-000000.mp4", "recording.m3u8"]
    for name in [*stored_names, "broadcast.json", "000001.2.m4s", ".000002.m4s.part", "notes"]:
        (directory / name).write_bytes(name.encode())
    elsewhere = tmp_path / "store"
    uploader = Uploader(LocalStore(elsewhere), layout, StorageSettings())
    assert uploader.upload_directory(directory) == 5
    wait_until(lambda: uploader.queued() == 0)
    stored = elsewhere / "channels" / "chan" / "abcdefghijkl"
    assert sorted(p.name for p in stored.iterdir()) == sorted([*stored_names, "broadcast.json"])
    assert uploader.stop(1.0) == 0


def _entry(sequence: int) -> bytes:
    return b"#EXTINF:2.000,\n%06d.ts\n" % sequence


def _growing_broadcast(tmp_path: Path, kib_s: float):
    layout = DataLayout(tmp_path / "data")
    directory = layout.broadcast_dir("chan", "abcdefghijkl")
    directory.mkdir(parents=True)
    elsewhere = tmp_path / "store"
    uploader = Uploader(
        LocalStore(elsewhere), layout, StorageSettings(recording_playlist_kib_s=kib_s)
    )
    stored = elsewhere / "channels" / "chan" / "abcdefghijkl"
    return uploader, GrowingFile(directory / "recording.m3u8"), stored


def _list(uploader: Uploader, playlist: GrowingFile, sequence: int) -> None:
    """What the segment worker does per segment: the segment, then the playlist listing it."""
    segment = playlist.path.with_name(f"{sequence:06d}.ts")
    segment.write_bytes(b"\x47" * 188)
    uploader.file_complete(segment)
    playlist.append(_entry(sequence))
    uploader.file_complete(playlist.path)
    wait_until(lambda: uploader.queued() == 0)


def test_a_long_recordings_playlist_goes_up_as_its_new_lines(tmp_path: Path) -> None:
    # 3 hours of 2 s segments listed; at 1 KiB/s its next whole upload is minutes away.
    uploader, playlist, stored = _growing_broadcast(tmp_path, kib_s=1.0)
    header = b"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n"
    playlist.replace(header + b"".join(_entry(n) for n in range(5400)))
    uploader.file_complete(playlist.path)
    wait_until(lambda: uploader.queued() == 0)
    whole = (stored / "recording.m3u8").read_bytes()
    assert whole == playlist.path.read_bytes() and len(whole) > 100_000
    whole_inode = (stored / "recording.m3u8").stat().st_ino
    key = "channels/chan/abcdefghijkl/recording.m3u8"
    for sequence in range(5400, 5420):
        _list(uploader, playlist, sequence)
        # The store's playlist is the whole upload joined with its tail: the file, to the byte.
        assert read_recording_playlist(LocalStore(tmp_path / "store"), key) == (
            playlist.path.read_bytes()
        )
        assert (stored / f"{sequence:06d}.ts").is_file()
    # The whole object was not put again; the tail holds the 20 new entries and its header.
    assert (stored / "recording.m3u8").stat().st_ino == whole_inode
    tail = (stored / "recording.tail").read_bytes()
    assert len(tail) < 100 + 20 * len(_entry(0))
    assert tail.endswith(_entry(5419))

    # Rewritten (a header change) or ended: whole again, and the tail is gone.
    vod = playlist.path.read_bytes() + b"#EXT-X-ENDLIST\n"
    playlist.close()
    write_atomic(playlist.path, vod)
    uploader.file_complete(playlist.path)
    wait_until(lambda: uploader.queued() == 0)
    assert (stored / "recording.m3u8").read_bytes() == vod
    assert not (stored / "recording.tail").exists()
    assert uploader.stop(1.0) == 0


def test_a_short_recordings_playlist_goes_up_whole_each_time(tmp_path: Path) -> None:
    # At the default 32 KiB/s a playlist under 32 KiB is due again within a second: whole
    # after every segment, as before tails existed.
    uploader, playlist, stored = _growing_broadcast(tmp_path, kib_s=32.0)
    playlist.replace(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:EVENT\n")
    uploader.file_complete(playlist.path)
    for sequence in range(5):
        time.sleep(0.1)  # the store is fast, the segments 2 s apart: each is due
        _list(uploader, playlist, sequence)
        assert (stored / "recording.m3u8").read_bytes() == playlist.path.read_bytes()
    assert not (stored / "recording.tail").exists()
    assert uploader.stop(1.0) == 0
