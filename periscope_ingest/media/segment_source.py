"""Where an export reads a recorded segment's bytes: a file on disk, or (storage.url s3://) an
object in the store read in ranges (storage/store_source.py implements it there: media/ knows
nothing of stores).

An export needs three things of a segment: its size, a byte range of it (the PES headers at its
head and tail that place a TS segment without opening it; a whole fMP4 segment, prepended with its
init segment) and something the demuxer can read and seek in. Calls block: worker threads only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO


class SegmentSource(ABC):
    """One segment's bytes, wherever they are. ``name`` is its file name (its suffix says the
    format: ``.ts`` or ``.m4s``)."""

    name: str

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @abstractmethod
    def size(self) -> int:
        """Its length in bytes (OSError if it cannot be read)."""

    @abstractmethod
    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) (fewer past the end; OSError if it cannot be read)."""

    def read_all(self) -> bytes:
        return self.read(0, self.size())

    @abstractmethod
    def demux_input(self) -> str | BinaryIO:
        """What av.open reads: a file name, or a readable and seekable file object."""


class FileSource(SegmentSource):
    """A segment on the local disk (what every export read before the object store)."""

    __slots__ = ("name", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = path.name

    def size(self) -> int:
        return self.path.stat().st_size

    def read(self, start: int, end: int) -> bytes:
        with self.path.open("rb") as file:
            file.seek(start)
            return file.read(max(0, end - start))

    def read_all(self) -> bytes:
        return self.path.read_bytes()

    def demux_input(self) -> str:
        return str(self.path)  # FFmpeg's own file reader: no Python in the read path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileSource) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __str__(self) -> str:
        return str(self.path)


def as_source(segment: Path | SegmentSource) -> SegmentSource:
    """A path is a file on disk; a source is taken as it is."""
    return FileSource(segment) if isinstance(segment, Path) else segment
