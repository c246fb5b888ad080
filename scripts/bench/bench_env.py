"""Where the benches keep things and what they talk to: paths, loopback, the test file."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "periscope-bench"
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The test file: 720p 30 fps 3 Mb/s H.264 (2 s GOP, B-frames) + AAC 128k 48 kHz, 60 s.
TEST_FILE_NAME = "testsrc2-720p30-3M-g60-bf2-aac128k48k-60s-v1.mp4"
TEST_FILE_SECONDS = 60

NGINX_MODULE_CANDIDATES = (
    "/usr/lib/nginx/modules/ngx_rtmp_module.so",
    "/usr/share/nginx/modules/ngx_rtmp_module.so",
    "/usr/lib64/nginx/modules/ngx_rtmp_module.so",
)


# ----------------------------------------------------------------------------- arguments
