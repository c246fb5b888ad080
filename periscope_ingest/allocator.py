"""glibc malloc's two thresholds, fixed at start instead of left to grow (#17, memory per stream).

glibc serves a block above its mmap threshold (128 KiB at start) with its own mmap, and returns
the free top of a heap to the system once it exceeds the trim threshold (twice the other). Both
grow by themselves: freeing an mmap-served block raises the mmap threshold to that block's size
(up to 32 MiB) and the trim threshold to twice it. Every publish frees one 2 MiB block (FFmpeg's
FLV demuxer context, see media/muxer.py StreamTemplates), so after the first one each segment
thread's heap kept up to 4 MiB of freed memory: measured, about 1.5 MiB of the memory a stream
added at 30 streams. Set once (mallopt), the thresholds no longer move.

The mmap threshold stays above 256 KiB, asyncio's read size: below it, each read of a publisher
would be an mmap and a munmap (see docs/benchmarks.md, "BufferedProtocol").
"""

from __future__ import annotations

import ctypes

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def fix_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Fix glibc's mmap and trim thresholds (bytes). 0 for both leaves glibc's own, moving ones;
    0 for one leaves that one at glibc's start value, no longer moving.

    Returns whether they were set: False with 0 and 0, or when the C library has no such
    thresholds (musl's mallopt does nothing; the server runs the same without them)."""
    if mmap_threshold == 0 and trim_threshold == 0:
        return False
    # The process's own symbols: the C library it runs on, whichever file that is.
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; either call alone stops both thresholds from moving.
    done = True
    if mmap_threshold:
        done = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and done
    if trim_threshold:
        done = mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and done
    return done
