"""A file that only grows at its end while it is written, made durable at each step.

A live recording's playlist gains one entry per segment. Rewritten whole (storage/atomic.py) that
is O(n) per segment: for a 3-hour broadcast 400 kB rendered, written and synced every 2 s per
stream, more disk traffic than the video after ~8 hours. Appended, each segment costs its own
hundred bytes and one fdatasync, whatever the length.

The price: a reader may catch an append half done (a write is not atomic for readers on Linux
once it crosses a page). So every reader of such a file keeps only its complete part
(media/playlist_reader.complete_playlist for playlists, which is what a player gets over HTTP,
recovery and exports read). After a power cut the file holds what was synced, maybe with a torn
last entry, which readers drop the same way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from periscope_ingest.storage.atomic import write_atomic


class GrowingFile:
    """One writer's durable file: ``replace`` writes it whole (atomically), ``append`` adds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1  # open for appending after a replace, until closed or a write fails

    @property
    def appendable(self) -> bool:
        """Written whole by this writer before, and not failed since."""
        return self._fd >= 0

    def replace(self, data: bytes) -> None:
        """The whole file, atomically and durably (also what a new file starts with)."""
        self.close()
        write_atomic(self.path, data)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def append(self, data: bytes) -> None:
        """Add ``data`` at the end and make it durable. After a failure (a full disk) the end
        of the file may be torn: the file is no longer appendable, the next write replaces it."""
        if self._fd < 0:
            raise ValueError(f"{self.path} is not open for appending: replace it first")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fdatasync(self._fd)  # the new size with the data: no directory sync needed
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
