"""The test process never stays real-time after encoding AV1 (tests/scheduling.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import av
import pytest

from tests.scheduling import normal_scheduling

CHILD_POLICY = "import os; print(os.sched_getscheduler(0))"


def child_policy() -> int:
    """The scheduling policy a process started from here runs under."""
    out = subprocess.run([sys.executable, "-c", CHILD_POLICY], capture_output=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling calls")
def test_after_libsvtav1_children_start_on_the_normal_policy() -> None:
    context = av.CodecContext.create("libsvtav1", "w")
    context.width, context.height, context.pix_fmt = 64, 64, "yuv420p"
    context.time_base = Fraction(1, 30)
    context.options = {"preset": "12"}
    context.open()
    frame = av.VideoFrame(64, 64, "yuv420p")
    frame.pts = 0
    context.encode(frame)
    context.encode(None)
    if os.geteuid() == 0:
        # What the reset is for: as root, SVT-AV1 left this thread (and so children) FIFO.
        assert os.sched_getscheduler(0) == os.SCHED_FIFO
        assert child_policy() == os.SCHED_FIFO
        assert normal_scheduling() >= 1
    else:
        normal_scheduling()
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert child_policy() == os.SCHED_OTHER
