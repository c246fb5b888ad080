"""CPU quotas for benchmarked processes: cgroup v1 `cpu` groups, made and removed here.

On a box whose cores are shared with the load generator (ffmpeg pushers) a server cannot be
given "one core" by affinity without taking it from the pushers. A CFS quota gives a process
(with all its threads, and whatever it starts later) at most `quota` of a core's time, wherever
it runs: two groups of 0.4 are two "cores" of 0.4 each, and the pushers keep the rest.

    with CpuGroup("plain", 0.4) as group:
        group.add(pid)
        ...
        group.throttled()  # {"periods": ..., "throttled_periods": ..., "throttled_s": ...}

Needs the v1 controller mounted read-write at /sys/fs/cgroup/cpu (root). The group is removed on
exit, its processes moved back to the root group first.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000  # CFS's default period: the quota is enforced every 100 ms


class CpuGroup:
    def __init__(self, name: str, quota: float) -> None:
        if not (ROOT / "cgroup.procs").is_file():
            raise SystemExit(f"--cpu-quota needs the cgroup v1 cpu controller at {ROOT}")
        self.quota = quota
        self.path = ROOT / f"periscope-bench-{os.getpid()}-{name}"

    def __enter__(self) -> CpuGroup:
        self.path.mkdir()
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (self.path / "cpu.cfs_quota_us").write_text(str(round(self.quota * PERIOD_US)))
        return self

    def add(self, pid: int) -> None:
        """Move the process (all its threads) into the group; its children are born in it."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttled(self) -> dict:
        """CFS's counters since the group was made: how often the quota ran out."""
        stat = dict(
            line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line
        )
        return {
            "periods": int(stat.get("nr_periods", 0)),
            "throttled_periods": int(stat.get("nr_throttled", 0)),
            "throttled_s": round(int(stat.get("throttled_time", 0)) / 1e9, 2),
        }

    def __exit__(self, *exc: object) -> None:
        procs = self.path / "cgroup.procs"
        for _ in range(50):  # a group can only be removed once empty
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(OSError):
                        (ROOT / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
