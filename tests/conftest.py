"""What `-m "not e2e"` promises: a fast subset that starts no encoder, server or browser.

Tests that start ffmpeg, ffprobe, GStreamer, nginx, chromium or strace are marked e2e (a module's
``pytestmark``). This guard makes the promise hold for tests added later: a test without the mark
that starts one of them fails, naming the program.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

EXTERNAL_PROGRAMS = {
    "ffmpeg", "ffprobe", "gst-launch-1.0", "nginx", "chromium", "chromedriver", "strace",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_tests_start_no_external_program(request, monkeypatch) -> None:
    if request.node.get_closest_marker("e2e") is not None:
        return
    real_init = subprocess.Popen.__init__

    def guarded(self, args, *more, **options):
        first = args[0] if isinstance(args, list | tuple) else str(args).split()[0]
        program = Path(str(first)).name
        if program in EXTERNAL_PROGRAMS:
            pytest.fail(f"{request.node.nodeid} starts {program}: mark it e2e", pytrace=False)
        real_init(self, args, *more, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
