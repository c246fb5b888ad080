"""Ingest benchmark: N concurrent RTMP pushers against our server, then against nginx-rtmp.

    .venv/bin/python scripts/bench/ingest.py --streams 1,10,20 --seconds 60

For each server and each N (a fresh server each time, one after the other in the same run):
N x `ffmpeg -re -stream_loop -1 -i FILE -c copy -f flv rtmp://127.0.0.1:PORT/live/sK`; after
--warmup seconds, measure for --seconds:

* server CPU (utime+stime of all its processes, % of one core) and PSS (total, per stream);
* push start -> first segment listed in the playlist (per stream; p50 and max);
* content end -> segment listed: for each new segment, the time its playlist first lists it minus
  the wall time its last frame was pushed: when the pusher sent media time 0 (from ffmpeg's
  -progress reports, see common.PushClock) + media time of the segment end (the EXTINF sum so
  far), which holds because pushing is -re (p50, p99);
* whether every playlist kept advancing (largest gap between new segments in the window).

Playlists are polled every --poll-interval seconds. By default they are read from the servers'
directories (--poll fs): both servers write playlists atomically, and polling over HTTP would add
the cost of serving N x 10 requests/s to the CPU we measure (viewers.py measures serving). With
--poll http they are fetched over HTTP. Either way each playlist is fetched over HTTP once at the
end to check it is served.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import common
from common import (
    BenchServer,
    Column,
    CpuWindow,
    ms,
    parse_media_playlist,
    percentile,
    r,
    ratio,
    results_table,
)

# Columns of the ingest table that workers.py's tables show too (its runs are ingest runs).
SEGMENT_LATENCY_P50: Column = ("seg lat p50 ms", lambda x: ms(x["segment_latency_s_p50"]))
MAX_GAP: Column = ("max gap s", "max_gap_between_segments_s")
BOX_BUSY: Column = ("box busy %", "machine_busy_percent")

TABLE: list[Column] = [
    ("server", "server"),
    ("streams", "streams"),
    ("CPU % core", "cpu_percent_of_core"),
    ("CPU %/stream", "cpu_percent_per_stream"),
    ("PSS MiB", "pss_mean_mib"),
    ("PSS/stream", "pss_per_stream_mib"),
    ("added/stream", "pss_added_per_stream_mib"),
    ("1st seg p50 s", "first_segment_s_p50"),
    ("1st seg max s", "first_segment_s_max"),
    SEGMENT_LATENCY_P50,
    ("seg lat p99 ms", lambda x: ms(x["segment_latency_s_p99"])),
    ("segments", "segments_listed_in_window"),
    MAX_GAP,
    ("advancing", "all_advancing"),
    BOX_BUSY,
]
RATIO_TABLE: list[Column] = [
    ("streams", "streams"),
    ("CPU", "cpu"),
    ("PSS/stream", "pss_per_stream"),
    ("PSS added/stream", "pss_added_per_stream"),
    ("seg lat p50", "segment_latency_p50"),
    ("1st seg p50", "first_segment_p50"),
]


@dataclass
class StreamTrack:
    key: str
    push_start: float  # time.monotonic() when ffmpeg was spawned
    first_listed: float | None = None
    # sequence -> (time first listed, media end time in seconds since the first segment start)
    listed: dict[int, tuple[float, float | None]] = field(default_factory=dict)
    media_end: dict[int, float] = field(default_factory=dict)
    first_sequence: int | None = None
    missed: int = 0  # segments that appeared and left between two polls (gaps in sequence)
    poll_errors: int = 0

    def observe(self, text: str, now: float) -> None:
        playlist = parse_media_playlist(text)
        for entry in playlist.segments:
            if entry.sequence in self.listed:
                continue
            if self.first_sequence is None:
                self.first_sequence = entry.sequence
                self.first_listed = now
                previous_end: float | None = 0.0
            else:
                previous_end = self.media_end.get(entry.sequence - 1)
                if previous_end is None and entry.sequence - 1 not in self.listed:
                    self.missed += 1
            end = None if previous_end is None else previous_end + entry.duration
            if end is not None:
                self.media_end[entry.sequence] = end
            self.listed[entry.sequence] = (now, end)


async def poll_playlists(
    server: BenchServer,
    tracks: list[StreamTrack],
    mode: str,
    interval: float,
    until: float,
    session: aiohttp.ClientSession | None,
) -> None:
    async def fetch(track: StreamTrack) -> str | None:
        if mode == "fs":
            try:
                return server.playlist_path(track.key).read_text()
            except FileNotFoundError:
                return None
        assert session is not None
        try:
            async with session.get(server.playlist_url(track.key)) as response:
                if response.status == 404:
                    return None
                if response.status != 200:
                    track.poll_errors += 1
                    return None
                return await response.text()
        except (TimeoutError, aiohttp.ClientError):
            track.poll_errors += 1
            return None

    next_tick = time.monotonic()
    while next_tick < until:
        texts = await asyncio.gather(*(fetch(t) for t in tracks))
        now = time.monotonic()
        for track, text in zip(tracks, texts, strict=True):
            if text:
                track.observe(text, now)
        next_tick += interval
        delay = next_tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_tick = time.monotonic()  # fell behind: do not try to catch up in a burst


async def http_check(server: BenchServer, keys: list[str]) -> bool:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for key in keys:
            try:
                async with session.get(server.playlist_url(key)) as response:
                    if response.status != 200:
                        return False
                    if not parse_media_playlist(await response.text()).segments:
                        return False
            except (TimeoutError, aiohttp.ClientError):
                return False
    return True


async def measure(server: BenchServer, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    await asyncio.sleep(1.0)  # let the server settle before the idle baseline
    pss_idle = common.total_pss_kib(server.pids())
    keys = [f"s{i}" for i in range(n)]
    logs = server.workdir / "pushers.log"
    pushers = []
    tracks = []
    clocks = []
    for key in keys:
        tracks.append(StreamTrack(key, time.monotonic()))
        pushers.append(common.start_pusher(test_file, server.publish_url(key), logs, progress=True))
        clocks.append(common.PushClock(pushers[-1]))
    t0 = time.monotonic()
    window_start = t0 + args.warmup
    window_end = window_start + args.seconds
    session = None
    if args.poll == "http":
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(10, n)),
            timeout=aiohttp.ClientTimeout(total=5),
        )
    poller = asyncio.create_task(
        poll_playlists(server, tracks, args.poll, args.poll_interval, window_end, session)
    )
    pss_samples: list[int] = []
    cpu = CpuWindow([])
    try:
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        cpu = CpuWindow(server.pids())
        cpu.start()
        await common.sample_pss(server.pids, window_end, pss_samples)
        cpu_result = cpu.stop()
        await poller
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        if session is not None:
            await session.close()
    pushers_alive = sum(p.poll() is None for p in pushers)
    served = await http_check(server, keys)
    await asyncio.get_running_loop().run_in_executor(None, common.stop_pushers, pushers)

    first = [t.first_listed - t.push_start for t in tracks if t.first_listed is not None]
    # The same from when media time 0 went out (ffmpeg's -progress), not from the spawn: what
    # the server takes to list the first segment, without ffmpeg's own start-up, which grows
    # with the load of sixty spawns at once and favours whichever server's pushers start first.
    first_from_media = [
        t.first_listed - c.content_start
        for t, c in zip(tracks, clocks, strict=True)
        if t.first_listed is not None and c.content_start is not None
    ]
    latencies: list[float] = []
    max_gap = 0.0
    advancing = 0
    new_in_window = 0
    start_delays = [
        c.content_start - t.push_start
        for t, c in zip(tracks, clocks, strict=True)
        if c.content_start is not None
    ]
    for track, clock in zip(tracks, clocks, strict=True):
        # Media time 0 went out when ffmpeg's -progress says (the spawn time if it never told).
        content_start = clock.content_start or track.push_start
        times = []
        for _seq, (listed_at, media_end) in sorted(track.listed.items()):
            if window_start <= listed_at <= window_end:
                times.append(listed_at)
                if media_end is not None:
                    latencies.append(listed_at - (content_start + media_end))
        new_in_window += len(times)
        edges = [window_start, *times, window_end]
        gap = max(b - a for a, b in itertools.pairwise(edges))
        max_gap = max(max_gap, gap)
        if times and gap <= 3 * args.segment_duration + 0.5:
            advancing += 1
    pss_mean = sum(pss_samples) / len(pss_samples) if pss_samples else None
    mib = 1024.0
    result = {
        "server": server.name,
        "streams": n,
        "cpu_percent_of_core": cpu_result["cpu_percent_of_core"],
        "cpu_percent_per_stream": r(cpu_result["cpu_percent_of_core"] / n, 3),
        "cpu_seconds": cpu_result["cpu_seconds"],
        "interval_s": cpu_result["interval_s"],
        "processes": len(cpu.pids),
        "machine_busy_percent": cpu_result["machine_busy_percent"],
        "loadavg_1m_start_end": cpu_result["loadavg_1m_start_end"],
        "pss_idle_mib": r(pss_idle / mib, 1),
        "pss_mean_mib": r(pss_mean / mib if pss_mean else None, 1),
        "pss_max_mib": r(max(pss_samples) / mib if pss_samples else None, 1),
        "pss_per_stream_mib": r(pss_mean / mib / n if pss_mean else None, 2),
        "pss_added_per_stream_mib": r((pss_mean - pss_idle) / mib / n if pss_mean else None, 2),
        "first_segment_s_p50": r(percentile(first, 50)),
        "first_segment_s_max": r(max(first) if first else None),
        "first_segment_from_media_s_p50": r(percentile(first_from_media, 50)),
        "streams_with_segments": len(first),
        "segment_latency_s_p50": r(percentile(latencies, 50)),
        "segment_latency_s_p99": r(percentile(latencies, 99)),
        "segment_latency_s_max": r(max(latencies) if latencies else None),
        # From spawning ffmpeg to its sending media time 0 (the latency clock starts there).
        "pusher_start_delay_s_p50": r(percentile(start_delays, 50)),
        "pushers_with_progress": len(start_delays),
        "segments_listed": sum(len(t.listed) for t in tracks),
        "segments_listed_in_window": new_in_window,
        "segments_missed_between_polls": sum(t.missed for t in tracks),
        "max_gap_between_segments_s": r(max_gap, 2),
        "streams_advancing": advancing,
        "all_advancing": advancing == n,
        "pushers_alive_at_end": pushers_alive,
        "poll_errors": sum(t.poll_errors for t in tracks),
        "http_check_ok": served,
    }
    return result


def run_server(server_cls, n: int, args: argparse.Namespace, test_file: Path) -> dict:
    server = common.server_for(server_cls, args)
    label = f"{server.name}: {n} stream(s), {args.warmup:g} s warm-up + {args.seconds:g} s"
    with common.step(label), server:
        result = asyncio.run(measure(server, n, args, test_file))
        if not result["all_advancing"] or not result["http_check_ok"]:
            result["server_log_tail"] = server.log_tail()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,10,20", help="comma-separated stream counts")
    parser.add_argument("--seconds", type=float, default=60, help="measured interval per run")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--poll", choices=("fs", "http"), default="fs")
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--segment-duration", type=float, default=2.0)
    common.add_common_arguments(parser, "ingest")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.streams.split(",") if c.strip()]
    if not counts or min(counts) < 1 or max(counts) > 200:
        parser.error("--streams: counts between 1 and 200")
    if not 0 < args.seconds <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("--seconds must be in (0, 3600], --warmup in [0, 600]")
    runs, skipped, machine, test_file = common.run_each_size(args, counts, run_server)

    ratios = []
    for n, ours, theirs in common.side_by_side(runs, "streams"):
        ratios.append(
            {
                "streams": n,
                "cpu": ratio(ours["cpu_percent_of_core"], theirs["cpu_percent_of_core"]),
                "pss_per_stream": ratio(ours["pss_per_stream_mib"], theirs["pss_per_stream_mib"]),
                "pss_added_per_stream": ratio(
                    ours["pss_added_per_stream_mib"], theirs["pss_added_per_stream_mib"]
                ),
                "segment_latency_p50": ratio(
                    ours["segment_latency_s_p50"], theirs["segment_latency_s_p50"]
                ),
                "first_segment_p50": ratio(
                    ours["first_segment_s_p50"], theirs["first_segment_s_p50"]
                ),
            }
        )

    print(
        f"\n## ingest: {args.warmup:g} s warm-up, {args.seconds:g} s measured, poll={args.poll}\n"
    )
    print(results_table(TABLE, runs))
    if ratios:
        print("\nratios periscope / nginx-rtmp (lower is better for us):\n")
        print(results_table(RATIO_TABLE, ratios))
    elif skipped:
        print(f"\nnginx-rtmp not measured ({skipped}): no ratios.")
    common.write_results(
        args.json,
        "ingest",
        {
            "machine": machine,
            "params": {
                "streams": counts,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "poll": args.poll,
                "poll_interval": args.poll_interval,
                "segment_duration": args.segment_duration,
                "test_file": str(test_file),
            },
            "nginx_skipped": skipped,
            "runs": runs,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
