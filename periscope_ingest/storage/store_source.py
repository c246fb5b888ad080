"""A finished broadcast's file read from the object store in ranges, never copied to disk whole.

An export (MP4, clip, archive) of a broadcast whose segments are only in the store reads them
through `StoreObject`, the store's `SegmentSource` (media/segment_source.py): the demuxer gets a
buffered, seekable reader whose every refill is one ranged GET of ``storage.read_chunk_kb``, so an
export holds about one chunk per open segment (a whole fMP4 segment, a few MB, as from disk),
whatever the broadcast's length. The finished recording.mp4 is sent the same way, chunk by chunk
(web/stored_file.py). Blocking, like every store call: worker threads only.
"""

from __future__ import annotations

import io

from periscope_ingest.media.segment_source import SegmentSource
from periscope_ingest.storage.objects import ObjectStore


class StoreObject(SegmentSource):
    """An object of the store, of a known size (from a LIST or HEAD), read in ranges."""

    __slots__ = ("_size", "chunk_bytes", "key", "name", "store")

    def __init__(self, store: ObjectStore, key: str, size: int, chunk_bytes: int) -> None:
        self.store = store
        self.key = key
        self.name = key.rsplit("/", 1)[-1]
        self._size = size
        self.chunk_bytes = chunk_bytes

    def size(self) -> int:
        return self._size

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self._size)
        if start >= end:
            return b""
        return self.store.get_range(self.key, start, end)

    def demux_input(self) -> io.BufferedReader:
        # The buffer is the chunk: FFmpeg's small reads are served from it, one GET per refill.
        return io.BufferedReader(_RangedReader(self), buffer_size=self.chunk_bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreObject) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"store:{self.key}"


class _RangedReader(io.RawIOBase):
    """A seekable raw file over ranged GETs (io.BufferedReader above it does the chunking)."""

    def __init__(self, source: StoreObject) -> None:
        self._source = source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._source.size() + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise OSError(f"seek before the start of {self._source}")
        self._position = position
        return position

    def readinto(self, buffer) -> int:  # type: ignore[override]
        wanted = len(buffer)
        data = self._source.read(self._position, self._position + wanted)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)
