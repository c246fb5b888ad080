"""Export benchmark: a recorded broadcast as MP4, over HTTP and from the CLI, next to ffmpeg.

    .venv/bin/python scripts/bench/export.py --minutes 30

The broadcast is made once and cached (--cache): the 60 s test file is looped into a --minutes
FLV with `ffmpeg -stream_loop -c copy` (same encoding: testsrc2 720p 30 fps 3 Mb/s, 2 s GOPs, 2
B-frames, AAC 128k), pushed to our server WITHOUT -re (as fast as the server takes it; the data
directory is what the server records, with PERISCOPE_RECORDING__MAKE_MP4=false so it makes no
recording.mp4), and the server's data directory is kept in the cache. Later runs start servers
on that directory.

Measured, each with a fresh process so that peak RSS (VmHWM) belongs to that one job:

* stream: GET /replays/ID.mp4 while no recording.mp4 exists (fragmented MP4 made while sent):
  time to the response headers and to the first body byte, total time, MB/s, server peak RSS;
* faststart: export_mp4() into recording.mp4, in a subprocess, as the server's make_mp4 does
  (wall time, MB/s, peak RSS from wait4);
* file: GET /replays/ID.mp4 once recording.mp4 exists (sendfile), and a 1 MiB Range request;
* cli: `periscope-ingest export ID -o FILE` (wall time, MB/s, peak RSS from wait4);
* clip: GET /replays/ID.mp4?start=S&end=E, 60 s from the middle (a temporary faststart MP4);
* ffmpeg: `ffmpeg -i concat:SEG1|SEG2|... -c copy -movflags +faststart out.mp4` over the same TS
  segments, the peer (nginx-rtmp has no export). Ratios are ours / ffmpeg.

With --store, the stream, clip, file and range GETs are made a second time against a node whose
data directory is empty (storage.url s3:// on moto's server, started here: store_node.py), so
that it reads the broadcast from the store; ratios are store / disk, from the same run, with the
bytes the export left on the node's disk.

MB/s is output MP4 bytes per wall second. The segments are read once before measuring, so every
job reads them from the page cache. The HTTP client is Python's http.client reading into a 1 MiB
buffer; it shares the 2 cores with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import store_node
from common import markdown_table, r, ratio
from export_measure import (
    FASTSTART_SNIPPET,
    child_env,
    ffmpeg_concat_input,
    output_facts,
    print_store_table,
    python_cmd,
    server_job,
    store_job,
    timed_child,
)
from export_recording import (
    CACHE_VERSION,
    CHANNEL,
    MB,
    MIB,
    ensure_recording,
    minutes_label,
    segment_paths,
    warm_page_cache,
)

# ------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--minutes", type=float, default=30, help="length of the broadcast (default 30)"
    )
    parser.add_argument(
        "--clip-seconds", type=float, default=60, help="clip length, from the middle (default 60)"
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="also export from the object store (moto's server, started here) on an empty node",
    )
    common.add_common_arguments(parser, "export")
    args = parser.parse_args(argv)
    if not 0.1 <= args.minutes <= 240:
        parser.error("--minutes: from 0.1 to 240")
    if shutil.which("ffmpeg") is None:
        raise SystemExit("ffmpeg is needed: apt-get install -y ffmpeg")
    machine = common.machine_info()
    src = args.server_src

    meta = ensure_recording(args.cache, args.minutes, src)
    base = args.cache / f"export-data-{minutes_label(args.minutes)}min-{CACHE_VERSION}"
    data = base / "data"
    bid = meta["broadcast_id"]
    segments = segment_paths(data, bid)
    recording_mp4 = data / "channels" / CHANNEL / bid / "recording.mp4"
    recording_mp4.unlink(missing_ok=True)  # left by an interrupted run: measure streaming first
    work = base / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    with common.step(f"reading {len(segments)} segments into the page cache"):
        warm_page_cache(segments)
    total = meta["duration_s"]
    clip_len = min(args.clip_seconds, total / 4)
    clip_start = round(total / 2, 3)
    clip_end = round(clip_start + clip_len, 3)
    results: dict[str, dict] = {}
    store: dict[str, dict] = {}
    clip_path = f"/replays/{bid}.mp4?start={clip_start:g}&end={clip_end:g}"
    stack = contextlib.ExitStack()
    try:
        # (a) streamed fragmented MP4 (no recording.mp4)
        results["stream"] = server_job(data, src, f"/replays/{bid}.mp4", label="(a) GET streamed")
        # (d) a clip from the middle: a temporary faststart MP4, then sent. A clip kept in the
        # data directory's clip cache by an earlier run would be measured as a file send.
        shutil.rmtree(data / "clip-cache", ignore_errors=True)
        results["clip"] = server_job(
            data, src, clip_path, label=f"(d) GET clip {clip_start:g}-{clip_end:g} s"
        )
        if args.store:
            moto = stack.enter_context(store_node.MotoStore(work.parent / "moto.log"))
            broadcast_dir = segments[0].parent
            with common.step("uploading the broadcast to moto"):
                moto.upload(data, [p for p in broadcast_dir.iterdir() if p.is_file()])
            for name, path, label in (
                ("stream", f"/replays/{bid}.mp4", "(a) GET streamed from the store"),
                ("clip", clip_path, "(d) GET clip from the store"),
            ):
                store[name] = store_job(data, src, work / f"node-{name}", path, moto, label)
        # the peer: ffmpeg over the same TS segments
        peer_out = work / "ffmpeg.mp4"
        peer = timed_child(
            ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
             *ffmpeg_concat_input(segments, work), "-map", "0", "-c", "copy",
             "-movflags", "+faststart", str(peer_out)],
            label="ffmpeg concat -c copy +faststart",
        )  # fmt: skip
        peer.update(output_facts(peer_out))
        peer_out.unlink()
        results["ffmpeg"] = peer
        # (c) the CLI export (fragmented MP4 written to a file)
        cli_out = work / "cli.mp4"
        cli = timed_child(
            [python_cmd(), "-m", "periscope_ingest", "export", bid, "-o", str(cli_out)],
            env=child_env(data, src),
            label="(c) periscope-ingest export",
        )
        cli.update(output_facts(cli_out))
        cli_out.unlink()
        results["cli"] = cli
        # faststart recording.mp4, as the server's make_mp4 makes it
        listing = work / "segments.list"
        listing.write_text("\n".join(str(p) for p in segments))
        faststart = timed_child(
            [python_cmd(), "-c", FASTSTART_SNIPPET, str(listing), str(recording_mp4)],
            env=child_env(data, src),
            label="export_mp4 -> recording.mp4 (faststart)",
        )
        faststart.update(output_facts(recording_mp4))
        results["faststart"] = faststart
        # (b) the finished file over HTTP, whole and a 1 MiB range from the middle
        results["file"] = server_job(data, src, f"/replays/{bid}.mp4", label="(b) GET file")
        size = recording_mp4.stat().st_size
        first = size // 2
        last = min(size - 1, first + MIB - 1)
        results["range"] = server_job(
            data,
            src,
            f"/replays/{bid}.mp4",
            headers={"Range": f"bytes={first}-{last}"},
            label="(b) GET range",
        )
        if args.store:
            moto.upload(data, [recording_mp4])
            mp4 = f"/replays/{bid}.mp4"
            store["file"] = store_job(
                data, src, work / "node-file", mp4, moto, "(b) GET file from the store"
            )
            store["range"] = store_job(
                data,
                src,
                work / "node-range",
                mp4,
                moto,
                "(b) GET range from the store",
                {"Range": f"bytes={first}-{last}"},
            )
    finally:
        stack.close()
        recording_mp4.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)

    for name in ("cli", "faststart", "ffmpeg"):
        x = results[name]
        x["mb_per_s"] = r(x["bytes"] / MB / x["wall_s"], 1) if x["wall_s"] else None
    peer = results["ffmpeg"]
    ratios = {
        "stream_wall": ratio(results["stream"]["total_s"], peer["wall_s"]),
        "cli_wall": ratio(results["cli"]["wall_s"], peer["wall_s"]),
        "cli_peak_rss": ratio(results["cli"]["peak_rss_mib"], peer["peak_rss_mib"]),
        "faststart_wall": ratio(results["faststart"]["wall_s"], peer["wall_s"]),
        "faststart_peak_rss": ratio(results["faststart"]["peak_rss_mib"], peer["peak_rss_mib"]),
    }

    print(
        f"\n## export: {meta['duration_s']:g} s broadcast, {meta['segments']} segments, "
        f"{meta['segment_bytes'] / MB:.0f} MB of TS (recorded at "
        f"{meta['ingest_x_realtime']:g}x real time)\n"
    )
    http_rows = [
        [name, x["status"], x["headers_ms"], x["first_byte_ms"], x["total_s"],
         x["bytes"] / MB, x["mb_per_s"], x["server_rss_idle_mib"], x["server_rss_peak_mib"],
         x["server_rss_added_mib"], x["server_cpu_seconds"], x["machine_busy_percent"]]
        for name, x in ((n, results[n]) for n in ("stream", "file", "range", "clip"))
    ]  # fmt: skip
    print(
        markdown_table(
            ["GET", "status", "headers ms", "1st byte ms", "total s", "MB", "MB/s",
             "server RSS idle MiB", "server RSS peak MiB", "added MiB", "server CPU s",
             "box busy %"],
            http_rows,
            digits=2,
        )
    )  # fmt: skip
    print()
    job_rows = [
        [name, x["wall_s"], x["bytes"] / MB, x["mb_per_s"], x["peak_rss_mib"], x["cpu_seconds"],
         ratio(x["wall_s"], peer["wall_s"]), ratio(x["peak_rss_mib"], peer["peak_rss_mib"])]
        for name, x in (
            ("periscope-ingest export (fragmented)", results["cli"]),
            ("export_mp4 -> recording.mp4 (faststart)", results["faststart"]),
            ("ffmpeg concat -c copy +faststart", peer),
        )
    ]  # fmt: skip
    print(
        markdown_table(
            ["job", "wall s", "MB", "MB/s", "peak RSS MiB", "CPU s", "wall / ffmpeg",
             "RSS / ffmpeg"],
            job_rows,
            digits=2,
        )
    )  # fmt: skip
    if store:
        print_store_table(results, store)
        ratios["store_over_disk"] = {
            name: {
                "first_byte_ms": ratio(x["first_byte_ms"], results[name]["first_byte_ms"]),
                "total_s": ratio(x["total_s"], results[name]["total_s"]),
                "server_rss_peak_mib": ratio(
                    x["server_rss_peak_mib"], results[name]["server_rss_peak_mib"]
                ),
                "server_rss_added_mib": ratio(
                    x["server_rss_added_mib"], results[name]["server_rss_added_mib"]
                ),
            }
            for name, x in store.items()
        }
        results["store"] = store
    common.write_results(
        args.json,
        "export",
        {
            "machine": machine,
            "params": {
                "minutes": args.minutes,
                "clip_start": clip_start,
                "clip_end": clip_end,
                "cache": str(args.cache),
                "server_src": str(src),
            },
            "recording": meta,
            "results": results,
            "ratios": ratios,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
