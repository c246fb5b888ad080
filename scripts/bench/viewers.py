"""Viewers benchmark: N simulated HLS clients on one live stream, our server then nginx-rtmp.

    .venv/bin/python scripts/bench/viewers.py --viewers 100,1000 --seconds 30

For each server and each N (a fresh server each time): one `ffmpeg -re` push; once its playlist
lists a segment (and --warmup seconds have passed), N clients start, spread over one reload
interval. Each client reloads the playlist every target duration / 2 and downloads every segment
that is new to it (starting with the newest one listed), reading each body to the end. They share
one aiohttp ClientSession whose connection limit is N + 16, so each client can hold a connection.

Reported per run: requests/s, MB/s, time to last byte (TTLB) of playlists and of segments
(p50/p99/max), errors (non-200 answers, resets, timeouts), late segments (downloaded after the
playlist had dropped them, or more than one target duration after their successor was listed),
server CPU and PSS over the interval, and the CPU the benchmark client itself used: with 1000
viewers on a 2-core box the Python client, not the server, can be the limit, so read the
latencies with that column in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import common
from cache_front import OurServerBehindCache, behind_the_cache, origin_requests_of
from common import (
    BenchServer,
    Column,
    CpuWindow,
    parse_media_playlist,
    percentile,
    r,
    ratio,
    results_table,
)

KEY = "view"


def ttlb(kind: str) -> Column:
    """p50/p99/max of one kind of request (playlist, segment) in one cell."""
    keys = [f"{kind}_ttlb_ms_{k}" for k in ("p50", "p99", "max")]
    return (f"{kind} TTLB p50/p99/max ms", lambda x: "/".join(common.fmt(x[k]) for k in keys))


def origin_total(by_kind: dict[str, int] | None) -> int | None:
    """Requests that reached our server (None: not counted, e.g. nginx-rtmp)."""
    return None if by_kind is None else sum(by_kind.values())


TABLE: list[Column] = [
    ("server", "server"),
    ("viewers", "viewers"),
    ("req/s", "requests_per_s"),
    ("MB/s", "mbytes_per_s"),
    ttlb("playlist"),
    ttlb("segment"),
    ("errors", "errors"),
    ("late", "late_segments"),
    ("segments", "segments_fetched"),
    ("server CPU %", "cpu_percent_of_core"),
    ("cache CPU %", "cache_cpu_percent_of_core"),
    ("origin req", lambda x: origin_total(x["origin_requests"])),
    ("client CPU %", "client_cpu_percent_of_core"),
    ("PSS MiB", "pss_mean_mib"),
    ("box busy %", "machine_busy_percent"),
]
RATIO_TABLE: list[Column] = [
    ("viewers", "viewers"),
    ("CPU", "cpu"),
    ("CPU/request", "cpu_per_request"),
    ("req/s", "requests_per_s"),
    ("playlist p50", "playlist_ttlb_p50"),
    ("seg p50", "segment_ttlb_p50"),
    ("seg p99", "segment_ttlb_p99"),
]
CACHE_RATIO_TABLE: list[Column] = [
    ("viewers", "viewers"),
    ("server CPU", "server_cpu"),
    ("server + cache CPU", "server_and_cache_cpu"),
    ("origin requests", "origin_requests"),
]


@dataclass
class Stats:
    playlist_ttlb: list[float] = field(default_factory=list)
    segment_ttlb: list[float] = field(default_factory=list)
    segment_done: list[tuple[int, float]] = field(default_factory=list)  # (sequence, monotonic)
    bytes: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    viewers_with_segments: set[int] = field(default_factory=set)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


@dataclass
class Observer:
    """When each segment was first listed and when it left the playlist (100 ms resolution)."""

    listed_at: dict[int, float] = field(default_factory=dict)
    removed_at: dict[int, float] = field(default_factory=dict)
    target_duration: float = 2.0

    def observe(self, text: str, now: float) -> None:
        playlist = parse_media_playlist(text)
        if playlist.target_duration:
            self.target_duration = playlist.target_duration
        present = {e.sequence for e in playlist.segments}
        for seq in present:
            self.listed_at.setdefault(seq, now)
        for seq in self.listed_at:
            if seq not in present and seq < playlist.media_sequence:
                self.removed_at.setdefault(seq, now)


async def observe(server: BenchServer, observer: Observer, until: float) -> None:
    path = server.playlist_path(KEY)
    while time.monotonic() < until:
        with contextlib.suppress(FileNotFoundError):
            observer.observe(path.read_text(), time.monotonic())
        await asyncio.sleep(0.1)


async def wait_for_first_segment(server: BenchServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    path = server.playlist_path(KEY)
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if parse_media_playlist(path.read_text()).segments:
                return True
        await asyncio.sleep(0.1)
    return False


async def get(session: aiohttp.ClientSession, url: str, stats: Stats) -> tuple[bytes | None, int]:
    """GET url, reading the body to the end; (body or None, bytes read)."""
    stats.requests += 1
    try:
        async with session.get(url) as response:
            if response.status != 200:
                await response.read()
                stats.error(f"http_{response.status}")
                return None, 0
            if url.endswith(".m3u8"):
                body = await response.read()
                return body, len(body)
            size = 0
            async for piece in response.content.iter_any():
                size += len(piece)
            return b"", size
    except TimeoutError:
        stats.error("timeout")
    except aiohttp.ClientError as exc:
        stats.error(type(exc).__name__)
    return None, 0


async def viewer(
    index: int,
    n: int,
    session: aiohttp.ClientSession,
    url: str,
    stats: Stats,
    start_at: float,
    stop_at: float,
    reload_interval: float,
) -> None:
    await asyncio.sleep(max(0.0, start_at + reload_interval * index / n - time.monotonic()))
    last_fetched: int | None = None
    while time.monotonic() < stop_at:
        started = time.monotonic()
        body, size = await get(session, url, stats)
        done = time.monotonic()
        if body is not None:
            stats.playlist_ttlb.append(done - started)
            stats.bytes += size
            playlist = parse_media_playlist(body.decode())
            entries = playlist.segments
            if last_fetched is None:
                entries = entries[-1:]  # start at the live edge
            for entry in entries:
                if last_fetched is not None and entry.sequence <= last_fetched:
                    continue
                if time.monotonic() >= stop_at:
                    break
                t = time.monotonic()
                ok, size = await get(session, urljoin(url, entry.uri), stats)
                t_done = time.monotonic()
                last_fetched = entry.sequence
                if ok is not None:
                    stats.segment_ttlb.append(t_done - t)
                    stats.segment_done.append((entry.sequence, t_done))
                    stats.bytes += size
                    stats.viewers_with_segments.add(index)
        await asyncio.sleep(max(0.0, started + reload_interval - time.monotonic()))


async def measure(server: BenchServer, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    pusher = common.start_pusher(test_file, server.publish_url(KEY), server.workdir / "push.log")
    t0 = time.monotonic()
    observer = Observer()
    stats = Stats()
    try:
        ready = await wait_for_first_segment(server, max(20.0, args.warmup + 10))
        await asyncio.sleep(max(0.0, t0 + args.warmup - time.monotonic()))
        start_at = time.monotonic()
        stop_at = start_at + args.seconds
        observer_task = asyncio.create_task(observe(server, observer, stop_at + 10))
        await asyncio.sleep(0.2)  # let the observer see the current playlist first
        reload_interval = args.segment_duration / 2
        connector = aiohttp.TCPConnector(limit=n + 16, force_close=False)
        timeout = aiohttp.ClientTimeout(total=args.request_timeout)
        behind_cache = isinstance(server, OurServerBehindCache)
        front_cpu = CpuWindow(server.front_pids() if behind_cache else [])
        origin_before = origin_requests_of(server)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            cpu = CpuWindow(server.pids())
            front_cpu.start()
            client_cpu = CpuWindow([common.os.getpid()])
            pss: list[int] = []
            cpu.start()
            client_cpu.start()
            url = server.playlist_url(KEY)
            viewers = [
                asyncio.create_task(
                    viewer(i, n, session, url, stats, start_at, stop_at, reload_interval)
                )
                for i in range(n)
            ]
            await common.sample_pss(server.pids, stop_at, pss)
            done, pending = await asyncio.wait(viewers, timeout=args.request_timeout + 2)
            cpu_result = cpu.stop()
            client_result = client_cpu.stop()
            front_result = front_cpu.stop()
            origin_after = origin_requests_of(server)
            for task in pending:
                task.cancel()
                stats.error("unfinished_at_end")
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    stats.error(f"viewer_crash_{type(task.exception()).__name__}")
        # A segment's successor may be listed only after the run: keep observing briefly.
        await asyncio.sleep(max(0.0, min(stop_at + observer.target_duration * 1.5,
                                         stop_at + 10) - time.monotonic()))  # fmt: skip
        observer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await observer_task
        pusher_alive = pusher.poll() is None
    finally:
        await asyncio.get_running_loop().run_in_executor(None, common.stop_pushers, [pusher])

    late = 0
    target = observer.target_duration
    for seq, t_done in stats.segment_done:
        removed = observer.removed_at.get(seq)
        successor = observer.listed_at.get(seq + 1)
        if (removed is not None and t_done > removed) or (
            successor is not None and t_done > successor + target
        ):
            late += 1
    interval = cpu_result["interval_s"]
    mib = 1024.0
    return {
        "server": server.name,
        "viewers": n,
        "stream_ready": ready,
        "interval_s": interval,
        "requests": stats.requests,
        "requests_per_s": r(stats.requests / interval, 1),
        "mbytes_per_s": r(stats.bytes / interval / 1e6, 1),
        "playlists": len(stats.playlist_ttlb),
        "segments_fetched": len(stats.segment_ttlb),
        "viewers_with_segments": len(stats.viewers_with_segments),
        "playlist_ttlb_ms_p50": r(_ms(percentile(stats.playlist_ttlb, 50)), 2),
        "playlist_ttlb_ms_p99": r(_ms(percentile(stats.playlist_ttlb, 99)), 2),
        "playlist_ttlb_ms_max": r(_ms(max(stats.playlist_ttlb, default=None)), 2),
        "segment_ttlb_ms_p50": r(_ms(percentile(stats.segment_ttlb, 50)), 2),
        "segment_ttlb_ms_p99": r(_ms(percentile(stats.segment_ttlb, 99)), 2),
        "segment_ttlb_ms_max": r(_ms(max(stats.segment_ttlb, default=None)), 2),
        "errors": sum(stats.errors.values()),
        "errors_by_kind": stats.errors,
        "late_segments": late,
        "segments_listed_during_run": sum(
            1 for t in observer.listed_at.values() if start_at <= t <= stop_at
        ),
        "cpu_percent_of_core": cpu_result["cpu_percent_of_core"],
        "cpu_percent_per_viewer": r(cpu_result["cpu_percent_of_core"] / n, 4),
        # nginx with config/nginx-cache.conf in front (--through-nginx-cache); None without it.
        "cache_cpu_percent_of_core": front_result["cpu_percent_of_core"] if behind_cache else None,
        # Live playlists and segments our server answered itself (its /metrics), None for nginx.
        "origin_requests": None
        if origin_before is None or origin_after is None
        else {k: origin_after.get(k, 0) - origin_before.get(k, 0) for k in origin_after},
        "client_cpu_percent_of_core": client_result["cpu_percent_of_core"],
        "machine_busy_percent": cpu_result["machine_busy_percent"],
        "loadavg_1m_start_end": cpu_result["loadavg_1m_start_end"],
        "pss_mean_mib": r(sum(pss) / len(pss) / mib if pss else None, 1),
        "pss_max_mib": r(max(pss) / mib if pss else None, 1),
        "pusher_alive_at_end": pusher_alive,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def run_server(server_cls, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    server = common.server_for(server_cls, args)
    with common.step(f"{server.name}: {n} viewers, {args.seconds:g} s"), server:
        result = asyncio.run(measure(server, n, args, test_file))
        if result["errors"] or not result["stream_ready"]:
            result["server_log_tail"] = server.log_tail()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", default="100,1000", help="comma-separated viewer counts")
    parser.add_argument("--seconds", type=float, default=30, help="measured interval per run")
    parser.add_argument(
        "--warmup", type=float, default=6, help="seconds of pushing before viewers start"
    )
    parser.add_argument("--segment-duration", type=float, default=2.0)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument(
        "--through-nginx-cache",
        action="store_true",
        help="also run our server with config/nginx-cache.conf in front (viewers fetch from nginx)",
    )
    common.add_common_arguments(parser, "viewers")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.viewers.split(",") if c.strip()]
    if not counts or min(counts) < 1 or max(counts) > 5000:
        parser.error("--viewers: counts between 1 and 5000")
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    also = (OurServerBehindCache,) if args.through_nginx_cache else ()
    runs, skipped, machine, test_file = common.run_each_size(args, counts, run_server, also)

    ratios = []
    for n, ours, theirs in common.side_by_side(runs, "viewers"):
        # CPU per request, so that a client that managed fewer requests does not flatter us.
        ours_per_req = _per_request(ours)
        theirs_per_req = _per_request(theirs)
        ratios.append(
            {
                "viewers": n,
                "cpu": ratio(ours["cpu_percent_of_core"], theirs["cpu_percent_of_core"]),
                "cpu_per_request": ratio(ours_per_req, theirs_per_req),
                "requests_per_s": ratio(ours["requests_per_s"], theirs["requests_per_s"]),
                "playlist_ttlb_p50": ratio(
                    ours["playlist_ttlb_ms_p50"], theirs["playlist_ttlb_ms_p50"]
                ),
                "segment_ttlb_p50": ratio(
                    ours["segment_ttlb_ms_p50"], theirs["segment_ttlb_ms_p50"]
                ),
                "segment_ttlb_p99": ratio(
                    ours["segment_ttlb_ms_p99"], theirs["segment_ttlb_ms_p99"]
                ),
            }
        )

    print(f"\n## viewers: {args.seconds:g} s measured per run\n")
    print(results_table(TABLE, runs))
    if ratios:
        print("\nratios periscope / nginx-rtmp:\n")
        print(results_table(RATIO_TABLE, ratios))
    elif skipped:
        print(f"\nnginx-rtmp not measured ({skipped}): no ratios.")
    cache_ratios = behind_the_cache(runs)
    if cache_ratios:
        print("\nratios periscope behind config/nginx-cache.conf / periscope alone:\n")
        print(results_table(CACHE_RATIO_TABLE, cache_ratios, digits=3))
    common.write_results(
        args.json,
        "viewers",
        {
            "machine": machine,
            "params": {
                "viewers": counts,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "segment_duration": args.segment_duration,
                "request_timeout": args.request_timeout,
                "test_file": str(test_file),
            },
            "nginx_skipped": skipped,
            "runs": runs,
            "ratios": ratios,
            "cache_ratios": cache_ratios,
        },
    )
    return 0


def _per_request(run: dict) -> float | None:
    if not run["requests"] or run["cpu_percent_of_core"] is None:
        return None
    return run["cpu_percent_of_core"] / run["requests_per_s"]


if __name__ == "__main__":
    sys.exit(main())
