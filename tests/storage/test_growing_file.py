"""storage/growing_file.py: appends go to the same file; one that fails leaves the file to be
written whole next time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from periscope_ingest.storage.growing_file import GrowingFile


def test_appends_grow_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "recording.m3u8"
    file = GrowingFile(path)
    assert not file.appendable
    with pytest.raises(ValueError):
        file.append(b"000000.ts\n")  # nothing written whole yet
    file.replace(b"#EXTM3U\n")
    inode = path.stat().st_ino
    file.append(b"000000.ts\n")
    file.append(b"000001.ts\n")
    assert path.read_bytes() == b"#EXTM3U\n000000.ts\n000001.ts\n"
    assert path.stat().st_ino == inode
    file.replace(b"#EXTM3U\n#EXT-X-VERSION:6\n")  # a new header: a new file, atomically
    assert path.stat().st_ino != inode and file.appendable
    file.close()
    file.close()
    assert not file.appendable


# A file-size limit makes the kernel refuse the write part-way, as a full disk does.
FAILING_APPEND = """
import resource, signal, sys
from pathlib import Path
from periscope_ingest.storage.growing_file import GrowingFile

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
path = Path(sys.argv[1])
file = GrowingFile(path)
file.replace(b"#EXTM3U\\n")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (12, hard))
try:
    file.append(b"000000.ts\\n")
except OSError as exc:
    print("failed", exc.errno, file.appendable, path.read_bytes())
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
file.replace(b"#EXTM3U\\n000000.ts\\n")
print("whole", path.read_bytes())
"""


def test_a_failed_append_leaves_the_next_write_whole(tmp_path: Path) -> None:
    path = tmp_path / "recording.m3u8"
    out = subprocess.run(
        [sys.executable, "-c", FAILING_APPEND, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    # Torn after 4 of its 10 bytes, and no longer appended to.
    assert out == ["failed 27 False b'#EXTM3U\\n0000'", "whole b'#EXTM3U\\n000000.ts\\n'"]
