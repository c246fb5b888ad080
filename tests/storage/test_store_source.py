"""Exports read from the store in ranges (storage/store_source.py) against a real store
(LocalStore on another directory than the data directory): the same MP4 bytes as from the files,
and no segment copied into the data directory."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from periscope_ingest.media.export import export_mp4, stream_mp4
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import LocalStore
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.storage.store_source import ReadAhead, StoreObject
from tests.media.export_fixtures import encode_flv, write_segments

BROADCAST = "aaaaaaaaaaaa"
CHUNK = 16 * 1024  # small, so that every segment takes several ranged reads


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A store root holding one broadcast's TS segments and recording playlist."""
    root = tmp_path_factory.mktemp("store")
    flv = root / "input.flv"
    encode_flv(flv, seconds=8)
    directory = root / "channels" / "chan" / BROADCAST
    paths = write_segments(flv, directory)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:3", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for path in paths:
        lines += ["#EXTINF:2.000,", path.name]
    (directory / "recording.m3u8").write_text("\n".join([*lines, "#EXT-X-ENDLIST", ""]))
    return root, paths


def cache_for(root: Path, data: Path) -> tuple[ReplayCache, DataLayout]:
    layout = DataLayout(data)
    layout.ensure()
    return ReplayCache(LocalStore(root), layout, 10**9, None, read_chunk_bytes=CHUNK), layout


def test_an_export_reads_the_store_in_ranges_with_the_bytes_of_the_files(
    stored: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    root, paths = stored
    cache, layout = cache_for(root, tmp_path / "data")
    segments, inits = cache.export_sources("chan", BROADCAST)
    assert [s.name for s in segments] == [p.name for p in paths]
    assert all(isinstance(s, StoreObject) for s in segments) and inits == {}

    from_files = export_mp4(paths, tmp_path / "files.mp4")
    from_store = export_mp4(segments, tmp_path / "store.mp4")
    assert (tmp_path / "store.mp4").read_bytes() == (tmp_path / "files.mp4").read_bytes()
    assert from_store == from_files and from_store.duration > 7

    clip_files = export_mp4(paths, tmp_path / "clip-files.mp4", start=2.5, end=5.5)
    clip_store = export_mp4(segments, tmp_path / "clip-store.mp4", start=2.5, end=5.5)
    assert clip_store == clip_files
    assert (tmp_path / "clip-store.mp4").read_bytes() == (tmp_path / "clip-files.mp4").read_bytes()

    streamed_files, streamed_store = io.BytesIO(), io.BytesIO()
    stream_mp4(paths, streamed_files.write)
    stream_mp4(segments, streamed_store.write)
    assert streamed_store.getvalue() == streamed_files.getvalue()

    # Only the playlist came through the data directory (and the cache's list of it).
    local = layout.broadcast_dir("chan", BROADCAST)
    assert sorted(p.name for p in local.iterdir()) == [".fetched", "recording.m3u8"]


def test_segments_on_disk_are_read_as_files(
    stored: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    root, paths = stored
    cache, layout = cache_for(root, tmp_path / "data")
    local = layout.broadcast_dir("chan", BROADCAST)
    local.mkdir(parents=True)
    (local / paths[0].name).write_bytes(paths[0].read_bytes())
    segments, _ = cache.export_sources("chan", BROADCAST)
    assert segments[0] == local / paths[0].name
    assert [type(s) for s in segments[1:]] == [StoreObject] * (len(paths) - 1)


def test_the_ranged_reader_seeks_and_reads_like_a_file(
    stored: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    root, paths = stored
    data = paths[1].read_bytes()
    assert len(data) > 2 * CHUNK
    key = f"channels/chan/{BROADCAST}/{paths[1].name}"
    source = StoreObject(LocalStore(root), key, len(data), CHUNK)
    reader = source.demux_input()
    assert reader.read(1000) == data[:1000]
    assert reader.seek(-100, io.SEEK_END) == len(data) - 100
    assert reader.read() == data[-100:]
    assert reader.read(10) == b""
    reader.seek(CHUNK - 5)
    assert reader.read(CHUNK + 10) == data[CHUNK - 5 : 2 * CHUNK + 5]
    assert source.read(len(data) - 3, len(data) + 100) == data[-3:]
    assert source.read(len(data), len(data) + 1) == b""
    assert source.read_all() == data


def test_the_read_ahead_holds_a_bounded_window_of_whole_segments(
    stored: tuple[Path, list[Path]],
) -> None:
    root, paths = stored
    store = LocalStore(root)
    objects = [
        StoreObject(store, f"channels/chan/{BROADCAST}/{p.name}", p.stat().st_size, CHUNK)
        for p in paths
    ]
    with ThreadPoolExecutor(2) as pool:
        ahead = ReadAhead(objects, 1, pool)
        for index, path in enumerate(paths):
            data = path.read_bytes()
            assert objects[index].read(10, 20) == data[10:20]
            assert objects[index].demux_input().read() == data
            # This one and the next, nothing behind: the memory of an export stays bounded.
            held = sorted(ahead._fetching)
            assert held == list(range(index, min(index + 2, len(paths)))), held
