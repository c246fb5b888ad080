"""Summarise a py-spy raw (collapsed stacks) profile: top functions by self and inclusive samples.

    .venv/bin/py-spy record --pid PID --rate 100 --duration 25 --nonblocking --format raw -o P.txt
    .venv/bin/python scripts/bench/profile_summary.py P.txt [--top 15] [--idle-out]

Each line of a raw profile is `frame;frame;...;leaf COUNT`. Samples whose leaf is a wait (epoll,
queue.get, lock acquire, select, sleep) are idle threads: --idle-out drops them, so percentages are
of busy samples, as in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import functools
import re
import signal
import sys
import sysconfig
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A leaf whose source line makes one of these calls is a thread waiting, not working.
BLOCKING_CALL = re.compile(
    r"\.(get|select|wait|acquire|poll|control|accept|join)\(|\bsleep\(|_wait_for_tstate_lock"
)


@functools.cache
def source_line(path: str, line: int) -> str:
    for root in (REPO, Path(sysconfig.get_paths()["stdlib"])):
        candidate = root / path
        if candidate.is_file():
            lines = candidate.read_text(errors="replace").splitlines()
            return lines[line - 1] if 0 < line <= len(lines) else ""
    return ""


def is_idle_frame(frame: str) -> bool:
    name = frame.split(" (")[0]
    if IDLE.match(name.split(".")[-1]):
        return True
    m = re.search(r"\(([^():]+):(\d+)\)$", frame)
    return bool(m and BLOCKING_CALL.search(source_line(m.group(1), int(m.group(2)))))


IDLE = re.compile(
    r"^(select|poll|epoll_wait|_poll|wait|get|acquire|sleep|_wait_for_tstate_lock|"
    r"BaseSelector\.select|EpollSelector\.select|Condition\.wait|Queue\.get|Event\.wait|"
    r"SimpleQueue\.get|_worker|accept)\b"
)
LOCATION = re.compile(r" \(([^)]*)\)$")


def function(frame: str, with_line: bool) -> str:
    if with_line:
        return frame
    return re.sub(r":\d+\)$", ")", frame)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--idle-out", action="store_true", help="drop idle (waiting) samples")
    parser.add_argument("--lines", action="store_true", help="keep line numbers")
    args = parser.parse_args(argv)
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for raw in args.profile.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        is_idle = is_idle_frame(frames[-1])
        total += n
        if is_idle:
            idle += n
            if args.idle_out:
                continue
        self_counts[function(frames[-1], args.lines)] += n
        for name in {function(f, args.lines) for f in frames}:
            inclusive[name] += n
    busy = total - idle
    base = busy if args.idle_out else total
    of = "busy" if args.idle_out else "all"
    print(f"{total} samples, {idle} idle (waiting), {busy} busy; % of {of}")
    print("\n| self % | function |\n|---|---|")
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    for name, n in self_counts.most_common(args.top):
        print(f"| {100 * n / base:.1f} | `{name}` |")
    print("\n| inclusive % | function |\n|---|---|")
    for name, n in inclusive.most_common(args.top + 10):
        print(f"| {100 * n / base:.1f} | `{name}` |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
