"""``serve --workers N``: N server processes on one machine, so that it uses all its cores.

One Python process takes in about 170 streams (720p, 3 Mb/s) before its core is full
(docs/benchmarks.md).
The N processes listen on the same ports (SO_REUSEPORT: the kernel spreads new connections
over them) and share the data directory; they are the nodes of a cluster (cluster.redis_url,
required), so each stream has one publisher lease, and any process answers any viewer of any
stream. The first process also does what is done once per data directory (the first channel,
pending MP4 exports, retention).

This process only supervises: it starts them (`serve --worker K`), restarts one that dies (its
broadcasts are then finalised by recovery, once, while the others' go on), passes SIGTERM and
SIGINT on, and waits for them to stop. If it is killed itself, the workers stop too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from periscope_ingest.config import Settings

# A process that dies this soon after it started is not restarted again at once.
RESTART_BACKOFF_S = 1.0
MAX_WORKERS = 256


def serve_workers(settings: Settings, workers: int, config: Path | None) -> int:
    problem = _refusal(settings, workers)
    if problem is not None:
        print(f"periscope-ingest: {problem}", file=sys.stderr)
        return 2
    base_name = settings.cluster.node_name or socket.gethostname()
    children: dict[int, subprocess.Popen] = {}
    started: dict[int, float] = {}
    stopping = False

    def start(index: int) -> None:
        command = [sys.executable, "-m", "periscope_ingest", "serve", "--worker", str(index)]
        command += ["--workers", str(workers)]
        if config is not None:
            command += ["--config", str(config)]
        env = {**os.environ, "PERISCOPE_CLUSTER__NODE_NAME": f"{base_name}-w{index}"}
        children[index] = subprocess.Popen(command, env=env, preexec_fn=_stop_with(os.getpid()))
        started[index] = time.monotonic()

    def stop(signum: int, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for index in range(workers):
        start(index)
    codes: dict[int, int] = {}
    while children:
        time.sleep(0.2)
        for index, child in list(children.items()):
            code = child.poll()
            if code is None:
                continue
            if stopping:
                codes[index] = code
                del children[index]
            elif code == 2 and time.monotonic() - started[index] < 10:
                # It refused to start (settings, Redis, the database): so would the others.
                stop(signal.SIGTERM, None)
                codes[index] = code
                del children[index]
            else:
                print(
                    f"periscope-ingest: worker {index} exited ({code}); starting it again",
                    file=sys.stderr,
                    flush=True,
                )
                time.sleep(max(0.0, RESTART_BACKOFF_S - (time.monotonic() - started[index])))
                start(index)
    return max((code for code in codes.values() if code > 0), default=0)


def _stop_with(supervisor: int):
    """In a new worker, before it runs: Linux sends it SIGTERM when the supervisor dies, even by
    SIGKILL (PR_SET_PDEATHSIG), so that no worker is left running on the ports without one."""

    def arrange() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != supervisor:  # it died before the line above took effect
            os._exit(1)

    return arrange


def _refusal(settings: Settings, workers: int) -> str | None:
    if not 1 < workers <= MAX_WORKERS:
        return f"--workers takes 2 to {MAX_WORKERS}"
    if settings.cluster.redis_url is None:
        return (
            "--workers needs cluster.redis_url (PERISCOPE_CLUSTER__REDIS_URL): the processes"
            " share the publisher leases and the live streams through Redis"
        )
    ports = {"rtmp_port": settings.rtmp_port, "http_port": settings.http_port}
    for name, port in ports.items():
        if port == 0:
            return f"--workers needs a fixed {name} (0 would give each process another port)"
    return None
