"""The player of latency.py: hls.js (our vendor copy) in headless Chromium driven by Selenium,
and the script that samples it: the wall-clock time painted in the frame on screen (see
stamped_publisher.py), hls.js's latency and PDT, stalls and errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from stamped_publisher import BAND_H, BITS, BLOCK_W, WIDTH

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


def playing(driver) -> bool:
    return driver.execute_script(
        "const v = document.getElementById('video'); return v.currentTime > 0 && !v.paused;"
    )


def hlsjs_version() -> str:
    path = HLSJS.parent / "hls.js-VERSION"
    return path.read_text().strip() if path.is_file() else "?"
