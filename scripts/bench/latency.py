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

The publisher is this script run as a subprocess (``--push URL``): PyAV encodes 640x360 30 fps
H.264 (x264 veryfast, 2 B-frames) + AAC in real time and paints, in a band at the top of every
frame, the wall-clock time (ms, 32 bits as black/white blocks) at which the frame was made, i.e.
handed to the encoder. The player page draws the frame on screen into a canvas and reads it back.

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
import contextlib
import json
import math
import re
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from common import NginxRtmp, OurServer, markdown_table, percentile, r

KEY = "lat"
WIDTH, HEIGHT, FPS = 640, 360, 30
SAMPLE_RATE = 48_000
BITS = 32
BLOCK_W = WIDTH // BITS  # 20 px per bit
BAND_H = 32  # two macroblock rows: survives x264 untouched
HLSJS = common.REPO / "periscope_ingest" / "web" / "static" / "vendor" / "hls.min.js"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,900",
    # A background tab's timers are throttled; this one is watched the whole time.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
]

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


# ------------------------------------------------------------------------------- publisher


def stamp_band(ms: int) -> bytes:
    """The luma of the top BAND_H rows: bit i of ms (MSB first) as a white or black block."""
    row = b"".join(
        (b"\xeb" if (ms >> (BITS - 1 - i)) & 1 else b"\x10") * BLOCK_W for i in range(BITS)
    )
    return row * BAND_H


def push(url: str, seconds: float, gop: float) -> None:
    """Publish in real time; every frame carries the wall-clock ms at which it was made."""
    import av

    out = av.open(url, mode="w", format="flv")
    keyint = round(gop * FPS)
    vstream = out.add_stream("libx264", rate=FPS)
    vstream.width, vstream.height, vstream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    vstream.codec_context.gop_size = keyint
    vstream.codec_context.max_b_frames = 2
    vstream.codec_context.options = {
        "preset": "veryfast",
        "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=2",
    }
    astream = out.add_stream("aac", rate=SAMPLE_RATE)
    astream.layout = "stereo"
    tone = struct.pack(
        "<1024f", *(0.1 * math.sin(2 * math.pi * 375 * n / SAMPLE_RATE) for n in range(1024))
    )
    rest = WIDTH * (HEIGHT - BAND_H)
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    audio_sent = 0
    started = time.monotonic()
    frames = round(seconds * FPS) if seconds > 0 else 1 << 62
    for i in range(frames):
        ahead = started + i / FPS - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shade = (i * 3) % 180 + 40
        luma = stamp_band(int(time.time() * 1000) & 0xFFFFFFFF) + bytes([shade]) * rest
        # Planes may be padded: write row by row at the plane's stride.
        _fill(frame.planes[0], luma, WIDTH, HEIGHT)
        _fill(frame.planes[1], chroma, WIDTH // 2, HEIGHT // 2)
        _fill(frame.planes[2], chroma, WIDTH // 2, HEIGHT // 2)
        frame.pts = i
        frame.time_base = Fraction(1, FPS)
        for packet in vstream.encode(frame):
            out.mux(packet)
        while audio_sent * 1024 < (i + 1) * SAMPLE_RATE / FPS:
            aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            aframe.planes[0].update(tone)
            aframe.planes[1].update(tone)
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = audio_sent * 1024
            aframe.time_base = Fraction(1, SAMPLE_RATE)
            for packet in astream.encode(aframe):
                out.mux(packet)
            audio_sent += 1
    for stream in (vstream, astream):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()


def _fill(plane, data: bytes, width: int, height: int) -> None:
    stride = plane.line_size
    if stride == width:
        plane.update(data)
        return
    padded = bytearray(stride * height)
    for y in range(height):
        padded[y * stride : y * stride + width] = data[y * width : (y + 1) * width]
    plane.update(bytes(padded))


def start_pusher(url: str, seconds: float, gop: float, log: Path) -> subprocess.Popen:
    python = common.REPO / ".venv" / "bin" / "python"
    cmd = [str(python if python.exists() else sys.executable), __file__, "--push", url]
    cmd += ["--push-seconds", str(seconds), "--gop", str(gop)]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)


# ---------------------------------------------------------------------------------- player

# Written into a same-origin document of the server under test (no CORS needed: nginx-rtmp
# sends no Access-Control headers). hls.js is inlined from our vendor copy, so the same player
# runs against both servers.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>latency</title><link rel="icon" href="data:,"></head>
<body style="margin:0;background:#111">
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<script>HLSJS_SOURCE</script>
<script>
const video = document.getElementById('video');
const hls = new Hls(HLS_CONFIG);
window.hls = hls;
window.__lat = {errors: [], fatal: [], waiting: 0, events: []};
// Every stall and error from the start, warm-up included, with the time and hls.js's latency:
// what left it ~6 s behind in a few runs (docs/benchmarks.md, sixth set) shows up here.
const note = (what) => window.__lat.events.length < 200 && window.__lat.events.push(
  {at: Date.now(), what: what, t: video.currentTime, latency: hls.latency,
   target: hls.targetLatency});
video.addEventListener('waiting', () => { window.__lat.waiting += 1; note('waiting'); });
video.addEventListener('playing', () => note('playing'));
hls.on(Hls.Events.ERROR, (_e, d) => {
  (d.fatal ? window.__lat.fatal : window.__lat.errors).push(d.details);
  note('error ' + d.details + (d.frag ? ' sn=' + d.frag.sn : '') +
       (d.part ? ' part=' + d.part.index : '') + (d.fatal ? ' fatal' : ''));
});
hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
hls.loadSource(PLAYLIST);
hls.attachMedia(video);
</script></body></html>
"""

SAMPLE = """
const v = document.getElementById('video');
const h = window.hls;
const now = Date.now();
let g2g = null;
if (v.readyState >= 2 && v.videoWidth === WIDTH) {
  const c = window.__canvas || (window.__canvas = document.createElement('canvas'));
  c.width = WIDTH; c.height = BAND_H;
  const g = c.getContext('2d', {willReadFrequently: true});
  g.drawImage(v, 0, 0, WIDTH, BAND_H, 0, 0, WIDTH, BAND_H);
  const d = g.getImageData(0, 0, WIDTH, BAND_H).data;
  let ms = 0;
  for (let i = 0; i < BITS; i++) {
    const o = ((BAND_H >> 1) * WIDTH + i * BLOCK_W + (BLOCK_W >> 1)) * 4;
    ms = ms * 2 + (d[o + 1] > 128 ? 1 : 0);
  }
  g2g = ((now % 4294967296) - ms + 4294967296) % 4294967296 / 1000;
}
const date = h ? h.playingDate : null;
const q = v.getVideoPlaybackQuality();
return {t: v.currentTime, paused: v.paused, g2g: g2g,
        latency: h && h.latency > 0 ? h.latency : null,
        target: h ? h.targetLatency : null,
        pdt: date ? (now - date.getTime()) / 1000 : null,
        frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
        waiting: window.__lat.waiting, errors: window.__lat.errors.length,
        fatal: window.__lat.fatal.slice()};
"""
for _name, _value in (("WIDTH", WIDTH), ("BAND_H", BAND_H), ("BITS", BITS), ("BLOCK_W", BLOCK_W)):
    SAMPLE = SAMPLE.replace(_name, str(_value))


def start_browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    return driver


def open_player(driver, page_url: str, playlist: str, config: dict) -> None:
    """page_url: any document of the server's origin without a Content-Security-Policy (our
    HTML pages allow no inline script); it is replaced."""
    driver.get(page_url)
    page = (
        PAGE.replace("HLS_CONFIG", json.dumps(config))
        .replace("PLAYLIST", json.dumps(playlist))
        .replace("HLSJS_SOURCE", HLSJS.read_text().replace("</script", "<\\/script"))
    )
    driver.execute_script("document.open(); document.write(arguments[0]); document.close();", page)


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


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def run_mode(name: str, args: argparse.Namespace, driver, tmp: Path) -> dict:
    mode = MODES[name]
    if mode["server"] == "periscope":
        server = OurServer(env=mode["env"], src=args.server_src)
    else:
        server = NginxRtmp(fragment=2.0, window=6)
    push_seconds = args.join_after + args.warmup + args.seconds + 40
    log = tmp / f"push-{name}.log"
    with common.step(f"{name}: {mode['describe']}"), server:
        pusher = start_pusher(server.publish_url(KEY), push_seconds, mode["gop"], log)
        pushed = time.monotonic()
        try:
            url = server.playlist_url(KEY)
            wait_until(lambda: "#EXTINF" in fetch_text(url), 30, f"{name}: a listed segment")
            # Most viewers join a broadcast that is already running, with a full playlist: a
            # player started at the first segment sits closer to the edge than it would later.
            time.sleep(max(0.0, args.join_after - (time.monotonic() - pushed)))
            origin = f"http://{common.LOOPBACK}:{server.http_port}"
            opened = time.monotonic()
            opened_wall = time.time()
            blank = origin + ("/healthz" if mode["server"] == "periscope" else "/")
            open_player(driver, blank, url.removeprefix(origin), mode["hls_config"])
            wait_until(
                lambda: driver.execute_script(
                    "const v = document.getElementById('video');"
                    " return v.currentTime > 0 && !v.paused;"
                ),
                30,
                f"{name}: playback",
            )
            startup = time.monotonic() - opened
            time.sleep(args.warmup)
            samples = []
            first = driver.execute_script(SAMPLE)
            began = time.monotonic()
            while time.monotonic() - began < args.seconds:
                time.sleep(0.25)
                samples.append(driver.execute_script(SAMPLE))
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
        push(args.push, args.push_seconds, args.gop)
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
    if not HLSJS.is_file():
        raise SystemExit(f"{HLSJS} is missing: run scripts/install-hlsjs.sh")
    machine = common.machine_info()

    runs = []
    with tempfile.TemporaryDirectory(prefix="latency-bench-") as tmp:
        driver = start_browser(Path(tmp) / "profile")
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
        f"\n## latency: hls.js {_hlsjs_version()} in headless Chromium {version},"
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
                "hls_js": _hlsjs_version(),
                "chromium": version,
            },
            "nginx_skipped": skipped,
            "runs": runs,
        },
    )
    return 0


def _hlsjs_version() -> str:
    path = HLSJS.parent / "hls.js-VERSION"
    return path.read_text().strip() if path.is_file() else "?"


if __name__ == "__main__":
    sys.exit(main())
