"""A finished broadcast's file read from the object store in ranges, never copied to disk whole.

An export (MP4, clip, archive) of a broadcast whose segments are only in the store reads them
through `StoreObject`, the store's `SegmentSource` (media/segment_source.py). The finished
recording.mp4 is sent chunk by chunk (web/stored_file.py): each read is one ranged GET of
``storage.read_chunk_kb``.

Segments are small (a few MB) and an export reads them in order, needing for each a few pieces
(the PES headers at its head and tail that place it, then its body): one request per piece would
make an export from the store wait on a round trip several times per segment. So a segment of
at most READ_WHOLE_CHUNKS chunks is fetched whole in one GET, ``storage.read_ahead_segments``
ahead of the one being read, on the cache's read-ahead threads (`ReadAhead`): an export holds
that many segments plus the one it reads, whatever the broadcast's length. Larger objects are
read in ranged chunks through a buffered, seekable reader. Blocking, like every store call:
worker threads only.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import Executor, Future

from periscope_ingest.media.segment_source import SegmentSource
from periscope_ingest.storage.objects import ObjectStore

# An object of at most this many chunks is fetched whole (one GET) and can be read ahead.
READ_WHOLE_CHUNKS = 8


class StoreObject(SegmentSource):
    """An object of the store, of a known size (from a LIST or HEAD), read in ranges."""

    __slots__ = ("_ahead", "_size", "chunk_bytes", "key", "name", "store")

    def __init__(self, store: ObjectStore, key: str, size: int, chunk_bytes: int) -> None:
        self.store = store
        self.key = key
        self.name = key.rsplit("/", 1)[-1]
        self._size = size
        self.chunk_bytes = chunk_bytes
        self._ahead: tuple[ReadAhead, int] | None = None  # its read-ahead and place in it

    @property
    def small(self) -> bool:
        """Fetched whole in one GET rather than in chunks."""
        return self._size <= READ_WHOLE_CHUNKS * self.chunk_bytes

    def size(self) -> int:
        return self._size

    def fetch_whole(self) -> bytes:
        return self.store.get_range(self.key, 0, self._size) if self._size else b""

    def _whole(self) -> bytes | None:
        """All its bytes when it is small and part of a read-ahead, else None."""
        if self._ahead is None or not self.small:
            return None
        ahead, index = self._ahead
        return ahead.whole(index)

    def read(self, start: int, end: int) -> bytes:
        end = min(end, self._size)
        if start >= end:
            return b""
        whole = self._whole()
        if whole is not None:
            return whole[start:end]
        return self.store.get_range(self.key, start, end)

    def read_all(self) -> bytes:
        whole = self._whole()
        return whole if whole is not None else self.read(0, self._size)

    def demux_input(self) -> io.BufferedIOBase:
        whole = self._whole()
        if whole is not None:
            return io.BytesIO(whole)
        # The buffer is the chunk: FFmpeg's small reads are served from it, one GET per refill.
        return io.BufferedReader(_RangedReader(self), buffer_size=self.chunk_bytes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreObject) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"store:{self.key}"


class ReadAhead:
    """The small objects of one export fetched whole, ``depth`` ahead of the one being read, on
    the threads of ``pool``; what is behind is dropped, so at most depth + 1 are held."""

    def __init__(self, objects: list[StoreObject], depth: int, pool: Executor) -> None:
        self._objects = objects
        self._depth = depth
        self._pool = pool
        self._lock = threading.Lock()
        self._fetching: dict[int, Future[bytes]] = {}
        for index, stored in enumerate(objects):
            stored._ahead = (self, index)

    def whole(self, index: int) -> bytes:
        with self._lock:
            for behind in [i for i in self._fetching if i < index]:
                self._fetching.pop(behind).cancel()
            fetching = self._fetching.get(index)
            mine = fetching is None
            if fetching is None:  # not read ahead: fetched here, not queued behind other exports
                fetching = self._fetching[index] = Future()
            for i in range(index + 1, min(index + self._depth + 1, len(self._objects))):
                if i not in self._fetching and self._objects[i].small:
                    self._fetching[i] = self._pool.submit(self._objects[i].fetch_whole)
        if mine:
            try:
                fetching.set_result(self._objects[index].fetch_whole())
            except BaseException as exc:
                fetching.set_exception(exc)
        # Each GET has the store's timeout, so this wait is bounded; its error (StoreUnavailable,
        # ObjectMissing) is the reader's.
        return fetching.result()


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
