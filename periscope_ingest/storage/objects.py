"""Where finished files are kept beyond this node: the data directory (file://, the default) or
an S3-compatible object store (s3://BUCKET/PREFIX).

Object keys are the files' paths relative to the data directory, as storage/layout.py names them
(``DataLayout.key_for`` / ``path_for``): ``channels/<channel>/<broadcast>/<file>``. The calls
block (they are made from worker threads, never the event loop) and every network call has a
timeout.

The S3 client (storage/s3_store.py) is obstore (the Rust ``object_store`` crate's bindings):
ranged GETs, streamed downloads and multipart uploads from a file, without a Python HTTP stack
to maintain. It reads the standard ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_REGION`` from the environment; they are never logged.
"""

from __future__ import annotations

import os
import secrets
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import urlsplit

# Files larger than this go up in parts of this size (multipart): memory per upload is one part.
UPLOAD_PART_BYTES = 8 * 1024 * 1024


class StorageUrlError(ValueError):
    """storage.url cannot be used; the message says what is expected."""


class ObjectMissing(LookupError):
    """The store has no object under that key."""


class StoreUnavailable(OSError):
    """The store did not answer, or refused: the message says which call and why."""


def _unavailable(call: str, key: str, exc: BaseException) -> StoreUnavailable:
    # obstore's messages name the URL and the cause, never the credentials; first line only.
    reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    return StoreUnavailable(f"object store {call} {key!r}: {reason}")


class ObjectStore(ABC):
    """Put a file (or a few bytes), get (part of) one, its size, list a prefix, delete."""

    #: False for the data directory itself: nothing needs to go anywhere.
    remote: bool = True

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at ``path`` under ``key`` (read from disk now, in parts)."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in one request (small objects: a playlist)."""

    @abstractmethod
    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object; ObjectMissing if there is none."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """A small object whole, in memory (a playlist); ObjectMissing if there is none."""

    @abstractmethod
    def download(self, key: str, path: Path) -> int:
        """Write the object to ``path`` whole or not at all (a hidden temporary file renamed);
        its size. ObjectMissing if there is none."""

    @abstractmethod
    def size(self, key: str) -> int | None:
        """The object's size, or None if there is none."""

    @abstractmethod
    def list(self, prefix: str) -> dict[str, int]:
        """key -> size of every object under ``prefix``."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object (no error if there is none)."""


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.fetch")


class LocalStore(ObjectStore):
    """The data directory is the store (file://): the files already are where the keys say."""

    remote = False

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def _path(self, key: str) -> Path:
        return self._root / key

    def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        if target.resolve() != path.resolve():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_beside(target)
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)  # readers of the store see it whole or not at all
        finally:
            temporary.unlink(missing_ok=True)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def get_range(self, key: str, start: int, end: int) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read(max(0, end - start))
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def download(self, key: str, path: Path) -> int:
        source = self._path(key)
        if not source.is_file():
            raise ObjectMissing(key)
        if source.resolve() != path.resolve():
            shutil.copyfile(source, path)
        return path.stat().st_size

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> dict[str, int]:
        directory = self._path(prefix)
        if not directory.is_dir():
            return {}
        return {
            f"{prefix.rstrip('/')}/{p.name}": p.stat().st_size
            for p in directory.iterdir()
            if p.is_file() and not p.name.startswith(".")
        }

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def open_store(url: str, root: Path, endpoint: str | None, timeout_s: float) -> ObjectStore:
    """The store storage.url names: ``file://`` (the data directory) or ``s3://BUCKET/PREFIX``."""
    parts = urlsplit(url)
    if parts.scheme == "file" and not parts.netloc and parts.path in ("", "/"):
        return LocalStore(root)
    if parts.scheme == "s3" and parts.netloc:
        # Loaded only for s3://: obstore costs a file:// server memory for nothing.
        from periscope_ingest.storage.s3_store import S3Store

        return S3Store(
            parts.netloc,
            parts.path.strip("/"),
            endpoint,
            timeout_s,
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        )
    raise StorageUrlError(
        f"storage.url {url!r}: expected file:// (the data directory) or s3://BUCKET/PREFIX"
    )
