"""allocator.fix_malloc_thresholds against glibc itself, each case in a fresh interpreter (the
thresholds are process-wide and move with what the process freed before)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from periscope_ingest.config import Settings

# Frees a 4 MiB block (glibc served it with mmap), then takes a 1 MiB one, and prints how many
# mmap-served blocks that added: 0 when glibc raised its mmap threshold to 4 MiB on the free,
# 1 when the threshold is fixed at 512 KiB.
PROBE = """
import ctypes, sys
from periscope_ingest.allocator import fix_malloc_thresholds

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
libc.mallinfo2.restype = MallInfo2
print(fix_malloc_thresholds(int(sys.argv[1]), int(sys.argv[2])))
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
block = libc.malloc(1 << 20)
print(libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _run(mmap_threshold: int, trim_threshold: int) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(mmap_threshold), str(trim_threshold)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    applied, mapped = result.stdout.split()
    return applied, int(mapped)


def _glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


pytestmark = pytest.mark.skipif(not _glibc(), reason="the thresholds are glibc's")


def test_fixed_thresholds_stop_glibc_raising_its_mmap_threshold() -> None:
    assert _run(512 * 1024, 128 * 1024) == ("True", 1)


def test_zero_leaves_glibc_its_moving_thresholds() -> None:
    assert _run(0, 0) == ("False", 0)


def test_the_server_fixes_them_by_default_and_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().memory.mmap_threshold == 512 * 1024
    monkeypatch.setenv("PERISCOPE_MEMORY__MMAP_THRESHOLD", "0")
    monkeypatch.setenv("PERISCOPE_MEMORY__TRIM_THRESHOLD", "0")
    memory = Settings().memory
    assert (memory.mmap_threshold, memory.trim_threshold) == (0, 0)
