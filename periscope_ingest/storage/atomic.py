"""Files that readers see either whole or not at all."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a concurrent reader sees the old or the new file.

    The temporary file lives in the same directory (rename is only atomic within a file system)
    and starts with a dot, so nothing that lists or serves segments ever picks it up.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def partial_path(path: Path) -> Path:
    """Where a file is written before it is complete (see ``publish_partial``)."""
    return path.with_name(f".{path.name}.part")


def publish_partial(path: Path) -> None:
    """Make a completely written partial file visible under its final name."""
    os.replace(partial_path(path), path)
