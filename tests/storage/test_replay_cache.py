"""The read-through cache against a real store (LocalStore on another directory): fetched whole,
evicted least recently used first, never a recording made here."""

from __future__ import annotations

import time
from pathlib import Path

from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.objects import LocalStore
from periscope_ingest.storage.replay_cache import ReplayCache

PLAYLIST = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init-000000.mp4"
#EXTINF:2.000,
000000.m4s
#EXTINF:2.000,
000001.m4s
#EXT-X-ENDLIST
"""


def stored_broadcast(store_root: Path, broadcast_id: str, size: int) -> Path:
    directory = store_root / "channels" / "chan" / broadcast_id
    directory.mkdir(parents=True)
    (directory / "recording.m3u8").write_text(PLAYLIST)
    (directory / "init-000000.mp4").write_bytes(b"i" * 10)
    for name in ("000000.m4s", "000001.m4s"):
        (directory / name).write_bytes(name.encode() * (size // 10))
    return directory


def test_a_missing_recording_is_fetched_and_the_least_recently_used_evicted(
    tmp_path: Path,
) -> None:
    store_root = tmp_path / "store"
    first = stored_broadcast(store_root, "aaaaaaaaaaaa", 1000)
    second = stored_broadcast(store_root, "bbbbbbbbbbbb", 1000)
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    # A broadcast recorded here: never evicted, even when the cache is over its bound.
    own = layout.broadcast_dir("chan", "cccccccccccc")
    own.mkdir(parents=True)
    (own / "000000.ts").write_bytes(b"own" * 1000)
    fetched = []
    cache = ReplayCache(LocalStore(store_root), layout, 3000, lambda: fetched.append(1))

    cache.fetch_recording("chan", "aaaaaaaaaaaa")
    local = layout.broadcast_dir("chan", "aaaaaaaaaaaa")
    for name in ("recording.m3u8", "init-000000.mp4", "000000.m4s", "000001.m4s"):
        assert (local / name).read_bytes() == (first / name).read_bytes()
    assert len(fetched) == 4
    assert not cache.fetch(layout.poster_path("chan", "aaaaaaaaaaaa"))  # the store has none

    time.sleep(0.01)
    cache.fetch_recording("chan", "bbbbbbbbbbbb")  # past 3000 bytes: the first one goes
    assert not (local / "000000.m4s").exists() and not (local / "recording.m3u8").exists()
    other = layout.broadcast_dir("chan", "bbbbbbbbbbbb")
    assert (other / "000001.m4s").read_bytes() == (second / "000001.m4s").read_bytes()
    assert (own / "000000.ts").is_file()

    # A new cache (a restart) knows what was fetched from the lists beside the files.
    again = ReplayCache(LocalStore(store_root), layout, 10, None)
    assert again.fetch(layout.segment_path("chan", "cccccccccccc", 0))  # local: kept
    again.fetch(layout.find_segment("chan", "aaaaaaaaaaaa", "000000.m4s"))
    assert not (other / "000001.m4s").exists()  # over 10 bytes: evicted
    assert (own / "000000.ts").is_file()


def test_keys_are_the_layout_paths(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    path = layout.find_segment("chan", "aaaaaaaaaaaa", "init-000040.mp4")
    assert layout.key_for(path) == "channels/chan/aaaaaaaaaaaa/init-000040.mp4"
    assert layout.path_for("channels/chan/aaaaaaaaaaaa/init-000040.mp4") == path
    assert layout.broadcast_prefix("chan", "aaaaaaaaaaaa") == "channels/chan/aaaaaaaaaaaa/"
