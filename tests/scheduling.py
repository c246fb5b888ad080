"""Keep the test process on the normal scheduling policy.

Opening a libsvtav1 encoder (SVT-AV1 in PyAV's FFmpeg) as root switches the calling thread to
SCHED_FIFO priority 99, and it stays so after the encoder is closed. Every process a test
worker starts after that inherits the policy: a server, ffmpeg or Chromium running real-time
at the top priority can starve everything else on the machine, and a CI run hung that way
(two real-time Chromium processes spinning on both cores, nothing else ever scheduled).
"""

from __future__ import annotations

import contextlib
import os

_NORMAL_POLICIES = {
    getattr(os, name) for name in ("SCHED_OTHER", "SCHED_BATCH", "SCHED_IDLE") if hasattr(os, name)
}


def normal_scheduling() -> int:
    """Put every thread of this process that runs under a real-time policy back on the normal
    one; returns how many were changed."""
    if not hasattr(os, "sched_setscheduler") or not os.path.isdir("/proc/self/task"):
        return 0
    changed = 0
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if os.sched_getscheduler(tid) not in _NORMAL_POLICIES:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                changed += 1
    return changed
