"""A live recording playlist in the store as its last whole upload and a tail: every join of a
tail that continues the whole gives the file's bytes; any other tail is ignored."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.storage.objects import LocalStore, ObjectMissing
from periscope_ingest.storage.recording_tail import (
    crc32,
    join,
    read_recording_playlist,
    tail_key,
    tail_object,
)

KEY = "channels/chan/abcdefghijkl/recording.m3u8"


@given(st.binary(max_size=400), st.data())
def test_a_tail_continues_exactly_the_whole_it_names(file: bytes, data) -> None:
    whole_at = data.draw(st.integers(0, len(file)))
    read_at = data.draw(st.integers(whole_at, len(file)))
    whole = file[:whole_at]
    tail = tail_object(len(whole), crc32(whole), file[whole_at:read_at])
    assert join(whole, tail) == file[:read_at]


@given(st.binary(min_size=1, max_size=200), st.binary(max_size=50), st.binary(max_size=50))
def test_a_tail_of_another_whole_is_ignored(whole: bytes, other: bytes, appended: bytes) -> None:
    if other == whole:
        other += b"\n"
    assert join(whole, tail_object(len(other), crc32(other), appended)) == whole
    # Same length, other bytes (a playlist rewritten between two uploads).
    flipped = bytes([whole[0] ^ 1]) + whole[1:]
    assert join(whole, tail_object(len(flipped), crc32(flipped), appended)) == whole


@pytest.mark.parametrize(
    "tail", [b"", b"\n", b"#EXTINF:2.000,\n000001.ts\n", b"#PERISCOPE-TAIL:x\n"]
)
def test_what_is_not_a_tail_is_ignored(tail: bytes) -> None:
    assert join(b"#EXTM3U\n", tail) == b"#EXTM3U\n"


def test_read_from_a_store_with_and_without_a_tail(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ObjectMissing):
        read_recording_playlist(store, KEY)
    whole = b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\n000000.ts\n"
    store.put_bytes(KEY, whole)
    assert read_recording_playlist(store, KEY) == whole
    more = b"#EXTINF:2.000,\n000001.ts\n"
    store.put_bytes(tail_key(KEY), tail_object(len(whole), crc32(whole), more))
    assert tail_key(KEY) == "channels/chan/abcdefghijkl/recording.tail"
    assert read_recording_playlist(store, KEY) == whole + more
    with pytest.raises(ValueError):
        tail_key("channels/chan/abcdefghijkl/broadcast.json")
