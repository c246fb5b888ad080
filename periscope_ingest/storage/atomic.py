"""Files that readers see either whole or not at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a concurrent reader sees the old or the new file.

    The temporary file lives in the same directory (rename is only atomic within a file system)
    and starts with a dot, so nothing that lists or serves segments ever picks it up.

    ``durable``: the data reaches the disk before the rename publishes it, and the rename before
    we return. Without the first, a power cut can leave the new name pointing at an empty file
    (the rename reached the journal, the data did not): a recording playlist or broadcast.json
    lost that way loses the whole recording. Only files that the next write replaces anyway and
    that recovery never reads (LL-HLS parts) skip it.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        sync_directory(path.parent)


def sync_directory(directory: Path) -> None:
    """Make the names created, renamed or removed in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def partial_path(path: Path) -> Path:
    """Where a file is written before it is complete (see ``publish_partial``)."""
    return path.with_name(f".{path.name}.part")


def publish_partial(path: Path) -> None:
    """Make a completely written partial file visible under its final name."""
    os.replace(partial_path(path), path)


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (0600 from its creation, never readable by others
    even for a moment), replacing any earlier one."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
