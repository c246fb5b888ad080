"""A live recording playlist in the object store: whole now and then, its new lines in between.

A store has no append. The recording playlist (EVENT) grows by one entry per segment
(storage/growing_file.py), and uploading it whole after each one is O(n) per segment: 1.6 MB
every 2 s per stream twelve hours into a broadcast, more than the video. So the uploader
(live/uploader.py) puts it whole at most every ``size / storage.recording_playlist_kib_s``
seconds, and after the other segments only the bytes appended since that whole upload, as the
object ``recording.tail`` beside it. The tail starts with a line naming the whole object it
continues (its length and CRC-32): readers join the two (``join``), and a tail that continues
something else (a newer whole upload, a rewritten playlist) is ignored, so what a reader gets is
at worst the last whole upload, never a wrong list. Every tail is uploaded after the segments it
lists, as the whole playlist was: the store never lists what it does not hold.

The bytes may end inside an entry (an append caught half done, or the tail's cut): readers of a
growing playlist keep whole entries only (media/playlist_reader.complete_playlist).
"""

from __future__ import annotations

import re
import zlib

from periscope_ingest.storage.layout import RECORDING_PLAYLIST, RECORDING_TAIL
from periscope_ingest.storage.objects import ObjectMissing, ObjectStore

_HEADER = re.compile(rb"#PERISCOPE-TAIL:BASE-BYTES=(\d{1,12}),BASE-CRC32=([0-9a-f]{8})")


def tail_key(playlist_key: str) -> str:
    """The key of the tail of the recording playlist stored under ``playlist_key``."""
    if not playlist_key.endswith("/" + RECORDING_PLAYLIST):
        raise ValueError(f"{playlist_key!r} is not a recording playlist's key")
    return playlist_key[: -len(RECORDING_PLAYLIST)] + RECORDING_TAIL


def crc32(data: bytes) -> int:
    return zlib.crc32(data)


def tail_object(base_size: int, base_crc: int, appended: bytes) -> bytes:
    """The tail of a whole upload of ``base_size`` bytes (CRC-32 ``base_crc``)."""
    return b"#PERISCOPE-TAIL:BASE-BYTES=%d,BASE-CRC32=%08x\n" % (base_size, base_crc) + appended


def join(whole: bytes, tail: bytes | None) -> bytes:
    """The playlist as far as the store has it: ``whole`` and, if it continues exactly that,
    the tail's bytes."""
    if tail is None:
        return whole
    header, _, appended = tail.partition(b"\n")
    match = _HEADER.fullmatch(header)
    if match is None or int(match[1]) != len(whole) or int(match[2], 16) != crc32(whole):
        return whole
    return whole + appended


def read_recording_playlist(store: ObjectStore, key: str) -> bytes:
    """Blocking: a recording playlist from the store, joined with its tail if it has one.
    ObjectMissing if there is no playlist."""
    whole = store.get_bytes(key)
    try:
        tail = store.get_bytes(tail_key(key))
    except ObjectMissing:
        return whole
    return join(whole, tail)
