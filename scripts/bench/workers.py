"""Scale-out benchmark: `serve --workers 2` (with Redis) against one plain `serve` process.

    .venv/bin/python scripts/bench/workers.py --streams 30,90 --seconds 30

For each N and each layout (a fresh server, and a fresh redis-server where one is needed, one
after the other in the same run), N `ffmpeg -re` pushers as in ingest.py, measured the same way
(ingest.measure: CPU, PSS, segment latency, whether every playlist kept advancing), plus what a
multi-process server needs to be judged by:

* the CPU of each server process over the window, and how many of the N RTMP connections each
  one holds (the kernel spreads them over the SO_REUSEPORT listeners);
* the CPU of redis-server and of the pushers (ffmpeg), which share the two cores with the server;
* the capacity the per-process figures imply: a process's core is full when its CPU reaches
  100 %, so with the streams spread as measured and a linear cost per stream the server holds
  N x 100 / (its busiest process's CPU %) streams. For one process that is N x 100 / CPU %.

Layouts: `plain` (serve, no Redis: today's default), `redis` (serve as a one-node cluster:
what Redis mirroring alone costs) and `workers2` (serve --workers 2, Redis started here).
Ratios are against `plain` in the same run.

Capacity measured, not derived (the pushers share the box's cores, so a whole core per server
process cannot be had here):

    workers.py --cpu-quota 0.4 --capacity --layouts plain,workers2 --start 40,80 --step 10

`--cpu-quota Q` puts each serving process in its own cgroup v1 `cpu` group of Q of a core
(scripts/bench/cpu_groups.py): the single process in one, each worker of `--workers 2` in its
own (the supervisor, which only waits, with the first), so the server has one or two "cores" of
Q and the pushers and redis-server keep the rest. `--capacity` then steps each layout's streams
up from its `--start` by `--step` (a fresh server each step) until a step does not keep up:
every playlist advancing (ingest.measure: a new segment listed at least every 3 segment
durations + 0.5 s in the window) and the median segment latency (listed against the pusher's
own clock) below `--latency-bound` seconds; a failed step is run once more (`--retries`). The
capacity is the last step kept up (to within one step).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import ingest
from common import Column, CpuWindow, results_table
from cpu_groups import CpuGroup

LAYOUTS = ("plain", "redis", "workers2")

# The columns of both tables (the runs and --capacity's steps), around ingest's own.
LAYOUT: list[Column] = [("layout", "layout"), ("streams", "streams")]
PER_PROCESS: list[Column] = [
    ("per process CPU %", lambda x: " / ".join(common.fmt(v) for v in x["process_cpu_percent"])),
    ("streams per process", lambda x: " / ".join(str(v) for v in x["process_streams"])),
]
BESIDE: list[Column] = [
    ("redis CPU %", "redis_cpu_percent"),
    ("pushers CPU %", "pushers_cpu_percent"),
]
LOAD: Column = ("load 1m", lambda x: x["loadavg_1m_start_end"][0])

TABLE: list[Column] = [
    *LAYOUT,
    ("server CPU %", "cpu_percent_of_core"),
    *PER_PROCESS,
    ("CPU %/stream", "cpu_percent_per_stream"),
    *BESIDE,
    ("implied capacity", "implied_capacity_streams"),
    ingest.SEGMENT_LATENCY_P50,
    ingest.MAX_GAP,
    ("advancing", "all_advancing"),
    ingest.BOX_BUSY,
    LOAD,
]
RATIO_TABLE: list[Column] = [
    ("layout", "layout"),
    ("streams", "streams"),
    ("server CPU", "total_cpu"),
    ("busiest process CPU", "busiest_process_cpu"),
    ("implied capacity", "implied_capacity"),
]
CAPACITY_TABLE: list[Column] = [
    *LAYOUT,
    ("kept up", "kept_up"),
    *PER_PROCESS,
    ("throttled periods %", lambda x: " / ".join(common.fmt(throttled(t)) for t in x["throttled"])),
    *BESIDE,
    ingest.SEGMENT_LATENCY_P50,
    ingest.MAX_GAP,
    ("advancing", lambda x: f"{x['streams_advancing']}/{x['streams']}"),
    ingest.BOX_BUSY,
    LOAD,
]


def throttled(counters: dict) -> float:
    """% of CFS periods in which a process's group ran out of its quota."""
    return round(100 * counters["throttled_periods"] / max(1, counters["periods"]), 1)


class RedisProcess:
    """Debian's redis-server on a free loopback port, nothing kept on disk, stopped by PID."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is needed: apt-get install -y redis-server")
        self.port = common.free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-bench-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{common.LOOPBACK}:{self.port}/0"

    def __enter__(self) -> RedisProcess:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", common.LOOPBACK),
                *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((common.LOOPBACK, self.port), 1) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return self
            time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            common.stop_process(self.process, signal.SIGTERM)
        shutil.rmtree(self.workdir, ignore_errors=True)


def rtmp_connections_by_pid(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to the local port each process holds."""
    established: set[str] = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                established.add(fields[9])  # the socket's inode
    found = {}
    for pid in pids:
        count = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in established:
                        count += 1
        found[pid] = count
    return found


def ffmpeg_children() -> list[int]:
    """The pushers: our own ffmpeg children."""
    pids = []
    for pid in common.children_of(os.getpid()):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "ffmpeg":
                pids.append(pid)
    return pids


async def per_process(
    server: common.OurServer, redis: RedisProcess | None, args: argparse.Namespace
) -> dict:
    """CPU of each server process, redis and the pushers over (about) ingest.measure's window."""
    # ingest.measure settles 1 s, spawns the pushers, then warms up: start a little after it.
    await asyncio.sleep(1.0 + args.warmup + 0.5)
    pids = server.pids()
    supervisor = pids[0]
    windows = {pid: CpuWindow([pid]) for pid in pids}
    pushers = CpuWindow(ffmpeg_children())
    redis_cpu = CpuWindow([redis.process.pid] if redis and redis.process else [])
    for window in (*windows.values(), pushers, redis_cpu):
        window.start()
    await asyncio.sleep(args.seconds / 2)
    connections = rtmp_connections_by_pid(pids, server.rtmp_port)
    await asyncio.sleep(max(0.0, args.seconds / 2 - 1.0))
    cpu = {pid: w.stop()["cpu_percent_of_core"] for pid, w in windows.items()}
    # The supervisor of --workers only waits on its children: list the processes that serve.
    serving = [pid for pid in pids if not (len(pids) > 1 and pid == supervisor)]
    return {
        "process_cpu_percent": [cpu[pid] for pid in serving],
        "process_streams": [connections.get(pid, 0) for pid in serving],
        "supervisor_cpu_percent": cpu[supervisor] if len(pids) > 1 else None,
        "pushers_cpu_percent": pushers.stop()["cpu_percent_of_core"],
        "redis_cpu_percent": redis_cpu.stop()["cpu_percent_of_core"] if redis else None,
    }


async def measure(server, redis, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    result, extra = await asyncio.gather(
        ingest.measure(server, n, args, test_file), per_process(server, redis, args)
    )
    result.update(extra)
    busiest = max(extra["process_cpu_percent"], default=None)
    result["busiest_process_cpu_percent"] = busiest
    # Where the busiest process's core would be full (per-stream cost linear, spread as seen).
    result["implied_capacity_streams"] = round(n * 100 / busiest) if busiest else None
    everything = (
        (result["cpu_percent_of_core"] or 0)
        + (extra["pushers_cpu_percent"] or 0)
        + (extra["redis_cpu_percent"] or 0)
    )
    result["box_cpu_percent_for_this_run"] = round(everything, 1)
    return result


def run_layout(layout: str, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    env = {"PERISCOPE_HLS__SEGMENT_DURATION": f"{args.segment_duration:g}"}
    with contextlib.ExitStack() as stack:
        redis = None
        if layout != "plain":
            redis = stack.enter_context(RedisProcess())
            env["PERISCOPE_CLUSTER__REDIS_URL"] = redis.url
        serve_args = ("--workers", "2") if layout == "workers2" else ()
        server = common.OurServer(env, args.server_src, serve_args)
        server.name = f"periscope-{layout}"
        label = f"{layout}: {n} stream(s), {args.warmup:g} s warm-up + {args.seconds:g} s"
        with common.step(label), server:
            groups = quota_groups(stack, server, args.cpu_quota) if args.cpu_quota else []
            result = asyncio.run(measure(server, redis, n, args, test_file))
            result["layout"] = layout
            result["cpu_quota"] = args.cpu_quota or None
            result["throttled"] = [group.throttled() for group in groups]
            result["kept_up"] = kept_up(result, args)
            if not result["all_advancing"] or not result["http_check_ok"]:
                result["server_log_tail"] = server.log_tail()
    return result


def quota_groups(stack: contextlib.ExitStack, server, quota: float) -> list[CpuGroup]:
    """Each serving process in a group of ``quota`` of a core (the supervisor with the first)."""
    pids = server.pids()
    serving = pids[1:] if len(pids) > 1 else pids
    groups = []
    for i, pid in enumerate(serving):
        group = stack.enter_context(CpuGroup(f"p{i}", quota))
        group.add(pid)
        groups.append(group)
    if len(pids) > 1:
        groups[0].add(pids[0])
    return groups


def kept_up(result: dict, args: argparse.Namespace) -> bool:
    """Every stream advancing, every playlist served, median segment latency under the bound."""
    p50 = result["segment_latency_s_p50"]
    ok = result["all_advancing"] and result["http_check_ok"]
    return bool(ok and p50 is not None and p50 < args.latency_bound)


def find_capacity(layout: str, start: int, args: argparse.Namespace, test_file: Path):
    """Step up from ``start`` until a step does not keep up: (last kept up or None, runs)."""
    runs, capacity, n = [], None, start
    while n <= args.max_streams:
        for _ in range(1 + args.retries):
            run = run_layout(layout, n, args, test_file)
            runs.append(run)
            print(
                f"    kept up: {run['kept_up']}, advancing {run['streams_advancing']}/{n},"
                f" seg lat p50 {run['segment_latency_s_p50']} s,"
                f" CPU % per process {run['process_cpu_percent']}",
                flush=True,
            )
            if run["kept_up"]:
                break
        if not run["kept_up"]:
            break
        capacity, n = n, n + args.step
    return capacity, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="30,90", help="comma-separated stream counts")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="of " + ",".join(LAYOUTS))
    parser.add_argument("--seconds", type=float, default=30, help="measured interval per run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--segment-duration", type=float, default=2.0)
    parser.add_argument(
        "--json", type=Path, default=common.RESULTS_DIR / "workers.json", help="results file"
    )
    parser.add_argument("--cache", type=Path, default=common.DEFAULT_CACHE)
    parser.add_argument("--server-src", type=Path, default=common.REPO)
    parser.add_argument(
        "--cpu-quota",
        type=float,
        default=0.0,
        help="each serving process in its own cgroup of this much of a core (0: none)",
    )
    parser.add_argument(
        "--capacity", action="store_true", help="step streams up to each layout's capacity"
    )
    parser.add_argument("--start", default="40", help="--capacity: first step, one per layout")
    parser.add_argument("--step", type=int, default=10, help="--capacity: streams added a step")
    parser.add_argument("--max-streams", type=int, default=300, help="--capacity: stop here")
    parser.add_argument("--retries", type=int, default=1, help="--capacity: a failed step again")
    parser.add_argument(
        "--latency-bound",
        type=float,
        default=1.0,
        help="--capacity: median segment latency (s) a stream that keeps up stays under",
    )
    args = parser.parse_args(argv)
    args.poll = "fs"  # the playlists are in the one shared data directory
    counts = [int(c) for c in args.streams.split(",") if c.strip()]
    layouts = [x for x in args.layouts.split(",") if x.strip()]
    if not counts or min(counts) < 1 or max(counts) > 300:
        parser.error("--streams: counts between 1 and 300")
    if not layouts or set(layouts) - set(LAYOUTS):
        parser.error(f"--layouts: some of {','.join(LAYOUTS)}")
    if args.seconds < 4 or args.warmup < 0:
        parser.error("--seconds at least 4, --warmup at least 0")
    common.raise_fd_limit()
    test_file = common.ensure_test_file(args.cache)
    machine = common.machine_info()
    if args.capacity:
        return capacity_main(args, layouts, test_file, machine)
    runs = [run_layout(layout, n, args, test_file) for n in counts for layout in layouts]

    ratios = []
    for run in runs:
        plain = next(
            (x for x in runs if x["layout"] == "plain" and x["streams"] == run["streams"]), None
        )
        if plain is None or run is plain:
            continue
        ratios.append(
            {
                "layout": run["layout"],
                "streams": run["streams"],
                "total_cpu": common.ratio(run["cpu_percent_of_core"], plain["cpu_percent_of_core"]),
                "busiest_process_cpu": common.ratio(
                    run["busiest_process_cpu_percent"], plain["busiest_process_cpu_percent"]
                ),
                "implied_capacity": common.ratio(
                    run["implied_capacity_streams"], plain["implied_capacity_streams"]
                ),
            }
        )

    print(f"\n## workers: {args.warmup:g} s warm-up, {args.seconds:g} s measured\n")
    print(results_table(TABLE, runs, digits=2))
    if ratios:
        print("\nratios against plain serve in the same run:\n")
        print(results_table(RATIO_TABLE, ratios, digits=2))
    common.write_results(
        args.json,
        "workers",
        {
            "machine": machine,
            "params": {
                "streams": counts,
                "layouts": layouts,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "poll_interval": args.poll_interval,
                "segment_duration": args.segment_duration,
                "test_file": str(test_file),
            },
            "runs": runs,
            "ratios": ratios,
        },
    )
    return 0


def capacity_main(args: argparse.Namespace, layouts: list[str], test_file: Path, machine) -> int:
    starts = [int(x) for x in args.start.split(",") if x.strip()]
    starts += [starts[-1]] * (len(layouts) - len(starts))
    found, runs = {}, []
    for layout, start in zip(layouts, starts, strict=False):
        found[layout], layout_runs = find_capacity(layout, start, args, test_file)
        runs += layout_runs
    print(f"\n## capacity, {args.cpu_quota:g} of a core per serving process\n")
    print(results_table(CAPACITY_TABLE, runs, digits=2))
    plain = found.get("plain")
    print("\ncapacity (last step kept up; None: not even the first):\n")
    for layout, capacity in found.items():
        ratio = common.ratio(capacity, plain) if capacity and plain else None
        print(f"  {layout}: {capacity} streams, {ratio}x plain")
    common.write_results(
        args.json,
        "workers-capacity",
        {
            "machine": machine,
            "params": {
                "layouts": layouts,
                "starts": starts,
                "step": args.step,
                "cpu_quota": args.cpu_quota,
                "latency_bound_s": args.latency_bound,
                "retries": args.retries,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "segment_duration": args.segment_duration,
                "test_file": str(test_file),
            },
            "capacity": found,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
