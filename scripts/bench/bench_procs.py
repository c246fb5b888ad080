"""Process helpers and accounting for the benches: ports, waiting, stopping, CPU ticks, PSS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench_env import CLOCK_TICKS, LOOPBACK


def raise_fd_limit() -> None:
    """Many viewers or pushers need more file descriptors; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 65536
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {LOOPBACK}:{port} after {timeout} s")


def wait_until(predicate: Callable[[], object], timeout: float, what: str):
    """Poll predicate every 0.1 s until it returns something true (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 10.0) -> int:
    """Stop one process we started, by its PID; SIGKILL if it ignores sig."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(5)
    return process.returncode


# ----------------------------------------------------------------------- process accounting


def children_of(pid: int) -> list[int]:
    """Direct children of pid (nginx workers of the master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def pss_kib(pid: int) -> int | None:
    """Proportional set size from /proc/PID/smaps_rollup, in KiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values)
    return total - idle, total


@dataclass
class CpuWindow:
    """CPU used by a set of processes between start() and stop(), as % of one core."""

    pids: list[int]
    _start_ticks: dict[int, int] = field(default_factory=dict)
    _start_time: float = 0.0
    _start_machine: tuple[int, int] = (0, 0)
    _start_load: float = 0.0

    def start(self) -> None:
        self._start_time = time.monotonic()
        self._start_ticks = {pid: cpu_ticks(pid) or 0 for pid in self.pids}
        self._start_machine = machine_ticks()
        self._start_load = os.getloadavg()[0]

    def stop(self) -> dict:
        elapsed = time.monotonic() - self._start_time
        used = 0
        for pid in self.pids:
            ticks = cpu_ticks(pid)
            if ticks is not None:
                used += ticks - self._start_ticks.get(pid, 0)
        seconds = used / CLOCK_TICKS
        busy, total = machine_ticks()
        busy -= self._start_machine[0]
        total -= self._start_machine[1]
        return {
            # Everything the machine did meanwhile (all cores, all processes, ours included):
            # other people's jobs on a shared box show up here.
            "machine_busy_percent": round(100.0 * busy / total, 1) if total else None,
            "loadavg_1m_start_end": [round(self._start_load, 2), round(os.getloadavg()[0], 2)],
            "cpu_seconds": round(seconds, 3),
            "interval_s": round(elapsed, 3),
            "cpu_percent_of_core": round(100.0 * seconds / elapsed, 2) if elapsed else None,
        }


def total_pss_kib(pids: list[int]) -> int:
    return sum(pss_kib(pid) or 0 for pid in pids)


async def sample_pss(
    pids_of: Callable[[], list[int]], until: float, samples: list[int], every: float = 1.0
) -> None:
    """Append the processes' total PSS (KiB) to samples every ``every`` s until ``until``."""
    while time.monotonic() < until:
        samples.append(total_pss_kib(pids_of()))
        await asyncio.sleep(min(every, max(0.0, until - time.monotonic())))


# ---------------------------------------------------------------------------------- media
