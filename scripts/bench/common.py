"""Shared pieces of the benchmark scripts: servers, process accounting, test media, playlists.

Everything here talks to 127.0.0.1 only. Servers are started on free ports with their own
temporary directories and stopped by PID (SIGTERM, then SIGKILL after a grace period).

Figures are only meaningful next to nginx-rtmp measured in the same run: the machines are
shared and noisy, so every script reports ratios (ours / nginx) as the headline.

The pieces live in bench_env, bench_procs, bench_media, bench_servers and bench_report; this
module keeps every name the scripts use as ``common.NAME``.
"""

from __future__ import annotations

import argparse
import os  # noqa: F401 - scripts read common.os
from pathlib import Path

from bench_env import (  # noqa: F401 - re-exported as common.NAME
    BENCH_DIR,
    CLOCK_TICKS,
    DEFAULT_CACHE,
    LOOPBACK,
    NGINX_MODULE_CANDIDATES,
    REPO,
    RESULTS_DIR,
    TEST_FILE_NAME,
    TEST_FILE_SECONDS,
)
from bench_media import (  # noqa: F401 - re-exported as common.NAME
    PushClock,
    ensure_test_file,
    ffmpeg_version,
    start_pusher,
    stop_pusher,
    stop_pushers,
)
from bench_procs import (  # noqa: F401 - re-exported as common.NAME
    CpuWindow,
    children_of,
    cpu_ticks,
    free_port,
    machine_ticks,
    pss_kib,
    raise_fd_limit,
    sample_pss,
    stop_process,
    total_pss_kib,
    wait_for_port,
    wait_until,
)
from bench_report import (  # noqa: F401 - re-exported as common.NAME
    Column,
    MediaPlaylist,
    PlaylistEntry,
    fmt,
    markdown_table,
    ms,
    parse_media_playlist,
    percentile,
    r,
    ratio,
    results_table,
    step,
    write_json,
    write_results,
)
from bench_servers import (  # noqa: F401 - re-exported as common.NAME
    NGINX_CONF,
    BenchServer,
    NginxRtmp,
    OurServer,
    Runs,
    machine_info,
    nginx_available,
    nginx_module_path,
    nginx_version,
    run_each_size,
    server_for,
    servers_to_run,
    side_by_side,
)


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS_DIR / f"{name}.json",
        help=f"where to write the results (default: scripts/bench/results/{name}.json)",
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where the test file is cached"
    )
    parser.add_argument(
        "--no-nginx",
        action="store_true",
        help="measure our server only (no ratios); used when nginx-rtmp cannot be installed",
    )
    parser.add_argument(
        "--server-src",
        type=Path,
        default=REPO,
        help="directory holding the periscope_ingest package to run (default: this checkout);"
        " e.g. a `git archive HEAD | tar -x -C DIR` snapshot while the tree is being edited",
    )
    parser.add_argument(
        "--install-nginx",
        action="store_true",
        help="apt-get install nginx libnginx-mod-rtmp when missing (needs root)",
    )
