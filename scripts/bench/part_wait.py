"""LL-HLS blocking reload: how long after a part's media ends a held playlist request is answered.

    .venv/bin/python scripts/bench/part_wait.py [--seconds 20] [--part 0.334] [--gop 1]

Starts our server with LL-HLS (fMP4, 2 s segments, ``--part`` s parts), publishes the same
real-time PyAV stream as latency.py (30 fps x264 veryfast, 2 B-frames, ``--gop`` s keyframe
interval) and then, for ``--seconds``, asks for each next part in turn with a blocking reload
(``index.m3u8?_HLS_msn=M&_HLS_part=P``), as an LL-HLS player does.

For each answer it takes the newest part listed and works out when its media ended on the
server's arrival clock: the EXT-X-PROGRAM-DATE-TIME of its segment (our PDT is the wall clock
at which the broadcast's first frame arrived, advanced by media time) plus the durations of the
parts before it and of itself. The figure is the answer's arrival (full body read) minus that
instant. It covers the wait for the frame that ends the part (a part is complete only when the
next reference frame arrives: with 2 B-frames at 30 fps, 100 ms of media after the part's
first frames), packaging, the playlist render and the wake-up of the held request. It leaves
out the encoder (its frames arrive late by the same amount all along; the PDT anchor absorbs
it) and assumes the publisher's clock runs with the server's, which a real-time PyAV push does.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import stamped_publisher
from common import OurServer, percentile, r

KEY = "wait"


def ll_env(part_s: float) -> dict[str, str]:
    return {
        "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
        "PERISCOPE_HLS__LOW_LATENCY": "true",
        "PERISCOPE_HLS__PART_DURATION": str(part_s),
        "PERISCOPE_HLS__SEGMENT_DURATION": "2",
    }


def newest_part(text: str) -> tuple[int, int, float, bool] | None:
    """(media sequence, part index, wall-clock end in s, segment complete) of the newest part
    listed."""
    msn = None
    pdt: float | None = None  # start of the current segment on the wall clock
    offset = 0.0  # media seconds from `pdt` to the end of the latest part of the segment
    part = -1
    newest = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
            offset, part = 0.0, -1
        elif line.startswith("#EXT-X-PART:"):
            duration = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            offset += duration
            part += 1
            if msn is not None and pdt is not None:
                newest = (msn, part, pdt + offset, False)
        elif line.startswith("#EXTINF:"):
            if pdt is not None:
                pdt += float(line.split(":", 1)[1].split(",", 1)[0])
            if newest is not None and newest[0] == msn:
                newest = (*newest[:3], True)
            offset, part = 0.0, -1
        elif line and not line.startswith("#") and msn is not None:
            msn += 1  # a segment URI: the next one has the next sequence number
    return newest


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read().decode()


def measure(args: argparse.Namespace) -> dict:
    server = OurServer(env=ll_env(args.part), src=args.server_src)
    with tempfile.TemporaryDirectory(prefix="part-wait-") as tmp, server:
        push_seconds = args.seconds + 30
        pusher = stamped_publisher.start_pusher(
            server.publish_url(KEY), push_seconds, args.gop, Path(tmp) / "push.log"
        )
        try:
            url = urlsplit(server.playlist_url(KEY))
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            common.wait_until(
                lambda: "#EXT-X-PART:" in get(connection, url.path)[1], 30, "a listed part"
            )
            time.sleep(args.settle)
            delays: list[float] = []
            held: list[float] = []
            late = 0
            _status, text = get(connection, url.path)
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                newest = newest_part(text)
                assert newest is not None, text
                msn, part, _end, complete = newest
                msn, part = (msn + 1, 0) if complete else (msn, part + 1)
                asked = time.time()
                status, text = get(connection, f"{url.path}?_HLS_msn={msn}&_HLS_part={part}")
                answered = time.time()
                if status != 200:
                    raise RuntimeError(f"blocking reload answered {status}")
                got = newest_part(text)
                assert got is not None, text
                if (got[0], got[1]) != (msn, part) and not (got[0] == msn - 1 and got[3]):
                    late += 1  # more than the part asked for came: one was skipped over
                delays.append(answered - got[2])
                held.append(answered - asked)
            connection.close()
            # Parts flagged INDEPENDENT=YES per complete segment listed (with parts) in the last
            # answer: 1 means only the segments' first parts, whatever the keyframe interval.
            with_parts = text.split("#EXTINF:")[:-1]
            independent = sum(chunk.count("INDEPENDENT=YES") for chunk in with_parts)
            listed = sum(1 for chunk in with_parts if "#EXT-X-PART:" in chunk)
        finally:
            common.stop_pusher(pusher)
    return {
        "part_s": args.part,
        "gop_s": args.gop,
        "answers": len(delays),
        "part_end_to_answer_s": {
            "min": r(min(delays)),
            "p50": r(percentile(delays, 50)),
            "p95": r(percentile(delays, 95)),
            "max": r(max(delays)),
        },
        "held_s": {"p50": r(percentile(held, 50)), "p95": r(percentile(held, 95))},
        "answers_not_the_next_part": late,
        "independent_parts_per_segment": r(independent / listed, 2) if listed else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="measured interval")
    parser.add_argument("--part", type=float, default=0.334, help="PART_DURATION, seconds")
    parser.add_argument("--gop", type=float, default=1.0, help="keyframe interval, seconds")
    parser.add_argument("--settle", type=float, default=3, help="seconds before measuring")
    common.add_common_arguments(parser, "part_wait")
    args = parser.parse_args(argv)
    result = measure(args)
    figures = result["part_end_to_answer_s"]
    print(
        f"part {args.part:g} s, GOP {args.gop:g} s, {result['answers']} blocking reloads:"
        f" part end -> answer min/p50/p95/max {figures['min']}/{figures['p50']}/"
        f"{figures['p95']}/{figures['max']} s; held p50/p95 {result['held_s']['p50']}/"
        f"{result['held_s']['p95']} s; {result['answers_not_the_next_part']} answers listed"
        f" more than the part asked for; {result['independent_parts_per_segment']}"
        " independent parts per segment"
    )
    common.write_results(args.json, "part_wait", {"machine": common.machine_info(), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
