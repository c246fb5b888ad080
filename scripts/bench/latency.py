"""Latency benchmark: how far behind the encoder hls.js in headless Chromium plays a live stream.

    .venv/bin/python scripts/bench/latency.py [--seconds 30] [--warmup 10] [--modes ...]

Modes (a fresh server each):

* ``ts``: our server, MPEG-TS 2 s segments, 2 s GOP; hls.js with the watch page's config
  (``lowLatencyMode: false``, ``liveSyncDurationCount: 3``).
* ``llhls``: our server, fMP4 2 s segments with LL-HLS 0.5 s parts, 1 s GOP; hls.js with
  ``lowLatencyMode: true``.
* ``llhls-gop2``: the same with a 2 s GOP (what most encoders send by default).
* ``llhls-p033``, ``llhls-p02``, ``llhls-p025`` (``-gop2``: with a 2 s GOP): 0.334, 0.2 and
  0.25 s parts, PART-HOLD-BACK three part targets; ``llhls-p025-hb05``, ``llhls-p033-hb067``:
  PART-HOLD-BACK two part targets (``PERISCOPE_HLS__PART_HOLD_BACK``, the draft's minimum).
* ``nginx``: nginx-rtmp, ``hls_fragment 2s``, 2 s GOP; hls.js as for ``ts``. The peer.

The publisher is stamped_publisher.py run as a subprocess: PyAV encodes 640x360 30 fps H.264
(x264 veryfast, 2 B-frames) + AAC in real time and paints, in a band at the top of every frame,
the wall-clock time (ms, 32 bits as black/white blocks) at which the frame was made, i.e. handed
to the encoder. The player page (hlsjs_player.py) draws the frame on screen into a canvas and
reads it back.

The player opens once the stream has been pushed for --join-after seconds (12: the playlist is
full, as for most viewers, who join a running broadcast). Three figures, sampled every 250 ms
for --seconds once playback started and --warmup passed:

* **glass-to-glass** (``g2g``): ``Date.now()`` - the time painted in the frame on screen. Encoder
  delay (B-frames, lookahead), RTMP, packaging, HTTP, hls.js buffering and decoding, all of it.
  Same clock on both ends (one machine). Works for every server.
* **hls.latency**: hls.js's own distance from the playhead to the live edge of the playlist
  (what the watch page shows as "behind live"). Does not include what happened before the
  segment/part was listed (encoder, packaging).
* **PDT delay**: ``Date.now() - hls.playingDate`` (EXT-X-PROGRAM-DATE-TIME of the frame on
  screen). Our server anchors PDT to the wall clock at the first frame's arrival, so this is
  "arrival at the server → on screen". nginx-rtmp writes no PDT: "-".

Also from our server's /metrics: ``periscope_listing_delay_seconds`` (frame that ends a
*segment* arrived → segment listed), p50/p95 estimated from the histogram buckets; and the
number of hls.js stalls (``waiting`` events) and non-fatal errors over the interval.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
import hlsjs_player
import stamped_publisher
from common import NginxRtmp, OurServer, markdown_table, percentile, r
from stamped_publisher import FPS, HEIGHT, WIDTH

KEY = "lat"

WATCH_PAGE_CONFIG = {"enableWorker": True, "lowLatencyMode": False, "liveSyncDurationCount": 3}
LL_CONFIG = {"enableWorker": True, "lowLatencyMode": True}

MODES = {
    "ts": {
        "server": "periscope",
        "env": {"PERISCOPE_HLS__SEGMENT_FORMAT": "ts", "PERISCOPE_HLS__SEGMENT_DURATION": "2"},
        "gop": 2.0,
        "hls_config": WATCH_PAGE_CONFIG,
        "describe": "ours, TS 2 s segments, 2 s GOP",
    },
    "llhls": {
        "server": "periscope",
        "env": {
            "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
            "PERISCOPE_HLS__LOW_LATENCY": "true",
            "PERISCOPE_HLS__PART_DURATION": "0.5",
            "PERISCOPE_HLS__SEGMENT_DURATION": "2",
        },
        "gop": 1.0,
        "hls_config": LL_CONFIG,
        "describe": "ours, fMP4 2 s + LL-HLS 0.5 s parts, 1 s GOP",
    },
    "llhls-gop2": {
        "server": "periscope",
        "env": {
            "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
            "PERISCOPE_HLS__LOW_LATENCY": "true",
            "PERISCOPE_HLS__PART_DURATION": "0.5",
            "PERISCOPE_HLS__SEGMENT_DURATION": "2",
        },
        "gop": 2.0,
        "hls_config": LL_CONFIG,
        "describe": "ours, fMP4 2 s + LL-HLS 0.5 s parts, 2 s GOP",
    },
    # Shorter parts: PART-HOLD-BACK is three part targets, so 1 s instead of 1.5 s (#17).
    "llhls-p033": {
        "server": "periscope",
        "env": {
            "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
            "PERISCOPE_HLS__LOW_LATENCY": "true",
            "PERISCOPE_HLS__PART_DURATION": "0.334",
            "PERISCOPE_HLS__SEGMENT_DURATION": "2",
        },
        "gop": 1.0,
        "hls_config": LL_CONFIG,
        "describe": "ours, fMP4 2 s + LL-HLS 0.33 s parts, 1 s GOP",
    },
    "llhls-p033-gop2": {
        "server": "periscope",
        "env": {
            "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
            "PERISCOPE_HLS__LOW_LATENCY": "true",
            "PERISCOPE_HLS__PART_DURATION": "0.334",
            "PERISCOPE_HLS__SEGMENT_DURATION": "2",
        },
        "gop": 2.0,
        "hls_config": LL_CONFIG,
        "describe": "ours, fMP4 2 s + LL-HLS 0.33 s parts, 2 s GOP",
    },
    # Shorter parts and PART-HOLD-BACK down to the draft's two part targets (#17, sixth set).
    **{
        f"llhls-p{tag}{'-hb' + hb_tag if hb_tag else ''}{'-gop2' if gop == 2.0 else ''}": {
            "server": "periscope",
            "env": {
                "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
                "PERISCOPE_HLS__LOW_LATENCY": "true",
                "PERISCOPE_HLS__PART_DURATION": part,
                "PERISCOPE_HLS__PART_HOLD_BACK": hold_back,
                "PERISCOPE_HLS__SEGMENT_DURATION": "2",
            },
            "gop": gop,
            "hls_config": LL_CONFIG,
            "describe": f"ours, fMP4 2 s + LL-HLS {part} s parts, PART-HOLD-BACK "
            f"{hold_back if hold_back != '0' else '3 parts'}, {gop:g} s GOP",
        }
        for tag, part, hb_tag, hold_back in (
            ("02", "0.2", "", "0"),
            ("025", "0.25", "", "0"),
            ("025", "0.25", "05", "0.5"),
            ("033", "0.334", "067", "0.668"),
            ("02", "0.2", "04", "0.4"),
        )
        for gop in (1.0, 2.0)
    },
    "nginx": {
        "server": "nginx-rtmp",
        "env": {},
        "gop": 2.0,
        "hls_config": WATCH_PAGE_CONFIG,
        "describe": "nginx-rtmp, hls_fragment 2s, 2 s GOP",
    },
}


# ---------------------------------------------------------------------------------- metrics


def histogram_quantiles(text: str, name: str, qs: tuple[float, ...]) -> dict:
    """p-quantiles from a Prometheus histogram's cumulative buckets (linear within a bucket)."""
    buckets = []
    count = total = 0.0
    for line in text.splitlines():
        if m := re.match(rf'{name}_bucket\{{le="([^"]+)"\}} (\S+)', line):
            buckets.append((float(m.group(1)), float(m.group(2))))
        elif line.startswith(f"{name}_count "):
            count = float(line.split()[1])
        elif line.startswith(f"{name}_sum "):
            total = float(line.split()[1])
    out: dict = {"count": int(count), "mean": r(total / count) if count else None}
    for q in qs:
        out[f"p{q:g}"] = None
        if not count:
            continue
        want = q / 100 * count
        lower_le, lower_n = 0.0, 0.0
        for le, n in buckets:
            if n >= want:
                if math.isinf(le):
                    out[f"p{q:g}"] = lower_le
                else:
                    share = (want - lower_n) / (n - lower_n) if n > lower_n else 1.0
                    out[f"p{q:g}"] = r(lower_le + share * (le - lower_le))
                break
            lower_le, lower_n = le, n
    return out


def fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


# -------------------------------------------------------------------------------------- run


def run_mode(name: str, args: argparse.Namespace, driver, tmp: Path) -> dict:
    mode = MODES[name]
    if mode["server"] == "periscope":
        server = OurServer(env=mode["env"], src=args.server_src)
    else:
        server = NginxRtmp(fragment=2.0, window=6)
    push_seconds = args.join_after + args.warmup + args.seconds + 40
    log = tmp / f"push-{name}.log"
    with common.step(f"{name}: {mode['describe']}"), server:
        pusher = stamped_publisher.start_pusher(
            server.publish_url(KEY), push_seconds, mode["gop"], log
        )
        pushed = time.monotonic()
        try:
            url = server.playlist_url(KEY)
            common.wait_until(lambda: "#EXTINF" in fetch_text(url), 30, f"{name}: a listed segment")
            # Most viewers join a broadcast that is already running, with a full playlist: a
            # player started at the first segment sits closer to the edge than it would later.
            time.sleep(max(0.0, args.join_after - (time.monotonic() - pushed)))
            origin = f"http://{common.LOOPBACK}:{server.http_port}"
            opened = time.monotonic()
            opened_wall = time.time()
            blank = origin + ("/healthz" if mode["server"] == "periscope" else "/")
            hlsjs_player.open_player(driver, blank, url.removeprefix(origin), mode["hls_config"])
            common.wait_until(lambda: hlsjs_player.playing(driver), 30, f"{name}: playback")
            startup = time.monotonic() - opened
            time.sleep(args.warmup)
            samples = []
            first = driver.execute_script(hlsjs_player.SAMPLE)
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                time.sleep(0.25)
                samples.append(driver.execute_script(hlsjs_player.SAMPLE))
            last = samples[-1]
            metrics = None
            if mode["server"] == "periscope":
                text = fetch_text(f"{origin}/metrics")
                metrics = histogram_quantiles(text, "periscope_listing_delay_seconds", (50, 95))
            events = driver.execute_script("return window.__lat.events;")
        finally:
            common.stop_pusher(pusher)

    def stats(key: str) -> dict:
        values = [s[key] for s in samples if s[key] is not None and 0 <= s[key] < 120]
        return {
            "p50": r(percentile(values, 50), 2),
            "p95": r(percentile(values, 95), 2),
            "max": r(max(values), 2) if values else None,
            "n": len(values),
        }

    played = last["t"] - first["t"]
    return {
        "mode": name,
        "server": mode["server"],
        "describe": mode["describe"],
        "gop_s": mode["gop"],
        "hls_config": mode["hls_config"],
        "startup_s": r(startup, 2),
        "target_latency_s": r(last["target"], 2) if last["target"] else None,
        "glass_to_glass_s": stats("g2g"),
        "hls_latency_s": stats("latency"),
        "pdt_delay_s": stats("pdt"),
        "played_s": r(played, 2),
        "wall_s": r(time.monotonic() - began, 2) if samples else None,
        "stalls": last["waiting"] - first["waiting"],
        "hlsjs_errors": last["errors"] - first["errors"],
        "hlsjs_fatal": last["fatal"],
        "dropped_frames": last["dropped"] - first["dropped"],
        "frames": last["frames"] - first["frames"],
        "server_listing_delay_s": metrics,
        # Stalls, resumptions and errors from the player's start: ms since it opened.
        "hlsjs_events": [
            {**e, "at": e["at"] - round(opened_wall * 1000), "latency": r(e["latency"], 2)}
            for e in events
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30, help="sampled interval per mode")
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds of playback before sampling"
    )
    parser.add_argument(
        "--join-after",
        type=float,
        default=12,
        help="seconds of pushing before the player opens (the playlist has filled up)",
    )
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--push", help=argparse.SUPPRESS)  # the publisher subprocess
    parser.add_argument("--push-seconds", type=float, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--gop", type=float, default=2.0, help=argparse.SUPPRESS)
    common.add_common_arguments(parser, "latency")
    args = parser.parse_args(argv)
    if args.push:
        stamped_publisher.push(args.push, args.push_seconds, args.gop)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: comma-separated, of {', '.join(MODES)}")
    skipped = None
    if args.no_nginx:
        modes, skipped = [m for m in modes if m != "nginx"], "--no-nginx given"
    elif "nginx" in modes:
        ok, why = common.nginx_available(args.install_nginx)
        if not ok:
            raise SystemExit(why)
    if not hlsjs_player.HLSJS.is_file():
        raise SystemExit(f"{hlsjs_player.HLSJS} is missing: run scripts/install-hlsjs.sh")
    machine = common.machine_info()

    runs = []
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        driver = hlsjs_player.start_browser(Path(tmp) / "profile")
        try:
            version = driver.capabilities.get("browserVersion")
            for name in modes:
                # A fresh tab state per mode: the previous page's hls.js is gone.
                driver.get("about:blank")
                runs.append(run_mode(name, args, driver, Path(tmp)))
        finally:
            driver.quit()

    def pair(x: dict, key: str) -> str:
        return "/".join(common.fmt(x[key][k], 2) for k in ("p50", "p95"))

    headers = [
        "mode", "setup", "glass-to-glass p50/p95 s", "hls.latency p50/p95 s",
        "PDT delay p50/p95 s", "target s", "startup s", "stalls", "dropped",
        "segment listed after last frame p50/p95 s",
    ]  # fmt: skip
    rows = [
        [
            x["mode"],
            x["describe"],
            pair(x, "glass_to_glass_s"),
            pair(x, "hls_latency_s"),
            pair(x, "pdt_delay_s"),
            x["target_latency_s"],
            x["startup_s"],
            x["stalls"],
            x["dropped_frames"],
            (
                "/".join(common.fmt(x["server_listing_delay_s"][k], 3) for k in ("p50", "p95"))
                if x["server_listing_delay_s"]
                else "-"
            ),
        ]
        for x in runs
    ]
    print(
        f"\n## latency: hls.js {hlsjs_player.hlsjs_version()} in headless Chromium {version},"
        f" joining after {args.join_after:g} s of pushing, {args.seconds:g} s sampled per mode"
        f" after {args.warmup:g} s of playback\n"
    )
    print(markdown_table(headers, rows, digits=2))
    if skipped:
        print(f"\nnginx-rtmp not measured ({skipped}).")
    common.write_results(
        args.json,
        "latency",
        {
            "machine": machine,
            "params": {
                "seconds": args.seconds,
                "warmup": args.warmup,
                "join_after": args.join_after,
                "modes": modes,
                "video": f"{WIDTH}x{HEIGHT} {FPS} fps x264 veryfast bframes=2, AAC 48 kHz",
                "hls_js": hlsjs_player.hlsjs_version(),
                "chromium": version,
            },
            "nginx_skipped": skipped,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
