"""The uploader against a real store (LocalStore on another directory): order, coalescing,
overflow that never drops a segment, retries until the store takes the files."""

from __future__ import annotations

import time
from pathlib import Path

from periscope_ingest.config_services import StorageSettings
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import LocalStore


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
