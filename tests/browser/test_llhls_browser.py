"""Low-Latency HLS in a real browser: hls.js (lowLatencyMode) in headless chromium, live push.

The watch page runs hls.js with ``lowLatencyMode: false`` (common.js), so this test writes its
own minimal page into a same-origin document (the server's /healthz): a muted autoplaying
<video> and hls.js from /static/vendor/hls.min.js with ``new Hls({lowLatencyMode: true})``
playing /live/{channel}/index.m3u8 of a server with fMP4 segments and LL-HLS parts.

It proves LL mode works end to end, with a generous latency bound: hls.js must see a playlist
with parts and blocking reload, play (currentTime advancing, frames decoded, no errors) and stay
within LATENCY_BOUND seconds of the live edge, both by hls.js's own ``latency`` (distance to the
live edge) and by the PROGRAM-DATE-TIME of the frame on screen against the wall clock (our PDT is
the wall-clock time the segment's first frame arrived). The measured figures are printed (-s)
and written to test-artifacts/browser-llhls.json. Screenshot: test-artifacts/browser-llhls.png.
About 25 s.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.browser.conftest import ARTIFACTS, Browser
from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import push_in_background

pytestmark = pytest.mark.e2e

CHANNEL = "lowlat"
PUSH_SECONDS = 22
SERVER_ENV = {
    "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
    "PERISCOPE_HLS__LOW_LATENCY": "true",
    "PERISCOPE_HLS__PART_DURATION": "0.5",
    "PERISCOPE_HLS__SEGMENT_DURATION": "2",
}
LATENCY_BOUND = 6.0  # seconds; LL mode typically gives ~1.5-2.5 s here, plain HLS 6+ s
ADVANCE = 3.5  # seconds of playback to see

# A fresh document on the server's origin (so no CORS, no favicon of another origin): hls.js
# from the server, lowLatencyMode on, every hls.js error kept in window.__llhls.errors.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>LL-HLS hls.js</title>
<link rel="icon" href="data:,"></head>
<body style="margin:0;background:#111;color:#eee;font:14px monospace">
<video id="video" muted autoplay playsinline width="640" height="360"></video>
<pre id="info"></pre>
<script src="/static/vendor/hls.min.js"></script>
<script>
window.__llhls = {errors: [], levels: 0};
const video = document.getElementById('video');
const hls = new Hls({lowLatencyMode: true, enableWorker: true, backBufferLength: 30});
window.hls = hls;
hls.on(Hls.Events.ERROR, (_e, d) => window.__llhls.errors.push(
  {type: d.type, details: d.details, fatal: d.fatal}));
hls.on(Hls.Events.LEVEL_LOADED, () => { window.__llhls.levels += 1; });
hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
hls.loadSource(PLAYLIST);
hls.attachMedia(video);
setInterval(() => {
  const d = hls.playingDate;
  document.getElementById('info').textContent = 'hls.js ' + Hls.version
    + '  latency ' + (hls.latency || 0).toFixed(2) + ' s'
    + '  PDT delay ' + (d ? ((Date.now() - d.getTime()) / 1000).toFixed(2) : '-') + ' s'
    + '  t ' + video.currentTime.toFixed(2);
}, 250);
</script></body></html>
"""

STATE = """
const v = document.getElementById('video');
const h = window.hls;
const d = h && h.levels && h.levels[0] ? h.levels[0].details : null;
const q = v.getVideoPlaybackQuality();
const date = h ? h.playingDate : null;
return {
  t: v.currentTime, paused: v.paused, ready: v.readyState,
  frames: q.totalVideoFrames, dropped: q.droppedVideoFrames,
  error: v.error && v.error.message,
  latency: h ? h.latency : null, target: h ? h.targetLatency : null,
  pdt_delay: date ? (Date.now() - date.getTime()) / 1000 : null,
  low_latency_mode: h ? h.lowLatencyMode : null,
  parts: d && d.partList ? d.partList.length : 0,
  can_block_reload: d ? !!d.canBlockReload : null,
  part_target: d ? d.partTarget : null,
  part_hold_back: d ? d.partHoldBack : null,
  live: d ? d.live : null,
  hls_errors: window.__llhls ? window.__llhls.errors : null,
  version: window.Hls ? Hls.version : null,
};
"""


@pytest.fixture(scope="module")
def llhls_server(tmp_path_factory: pytest.TempPathFactory):
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "server-browser-llhls.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(tmp_path_factory.mktemp("llhls") / "data", log_path, **SERVER_ENV)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_hlsjs_plays_low_latency(llhls_server: ServerProcess, browser_driver) -> None:
    server = llhls_server
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(CHANNEL), PUSH_SECONDS)
    try:
        browser = Browser(browser_driver, server)
        browser.console_errors()  # drop what earlier tests left
        # The playlist exists once the first part is cut; hls.js would 404 before that.
        server.wait_for(
            lambda: b"#EXT-X-PART:" in server.get(f"/live/{CHANNEL}/index.m3u8")[2],
            15,
            0.1,
            "the LL-HLS playlist to list a part",
        )
        browser.open("/healthz")
        playlist = f"/live/{CHANNEL}/index.m3u8"
        browser.js(
            "document.open(); document.write(arguments[0]); document.close();",
            PAGE.replace("PLAYLIST", json.dumps(playlist)),
        )
        browser.wait(
            "const v = document.getElementById('video');"
            " return v && v.readyState >= 2 && v.currentTime > 0 && !v.paused;",
            15,
            "hls.js to start playing",
        )
        start = browser.js(STATE)
        assert start["version"], start
        assert start["low_latency_mode"] is True, start
        assert start["parts"] > 0, f"hls.js sees no EXT-X-PART: {start}"
        assert start["can_block_reload"] is True, f"hls.js sees no CAN-BLOCK-RELOAD: {start}"
        assert start["part_target"] == pytest.approx(0.5, abs=0.05), start

        # Sample while it plays ADVANCE seconds (and at least 3 s of wall time).
        samples = []
        began = time.monotonic()
        while True:
            time.sleep(0.25)
            state = browser.js(STATE)
            samples.append(state)
            if state["t"] >= start["t"] + ADVANCE and time.monotonic() - began >= 3:
                break
            assert time.monotonic() - began < 15, f"playback stalled: {start} -> {state}"
        end = samples[-1]
        browser.screenshot("llhls")

        latencies = sorted(s["latency"] for s in samples if s["latency"])
        delays = sorted(s["pdt_delay"] for s in samples if s["pdt_delay"] is not None)
        figures = {
            "hls_js": end["version"],
            "played_s": round(end["t"] - start["t"], 2),
            "frames": end["frames"],
            "dropped": end["dropped"],
            "parts_listed": end["parts"],
            "target_latency_s": end["target"],
            "part_hold_back_s": end["part_hold_back"],
            "latency_s": {
                "min": round(latencies[0], 2),
                "median": round(latencies[len(latencies) // 2], 2),
                "max": round(latencies[-1], 2),
            }
            if latencies
            else None,
            "pdt_delay_s": {
                "min": round(delays[0], 2),
                "median": round(delays[len(delays) // 2], 2),
                "max": round(delays[-1], 2),
            }
            if delays
            else None,
            "samples": len(samples),
        }
        (ARTIFACTS / "browser-llhls.json").write_text(json.dumps(figures, indent=2) + "\n")
        print(f"\nLL-HLS in chromium: {json.dumps(figures)}")

        assert end["frames"] > start["frames"] and end["frames"] > ADVANCE * 20, figures
        assert end["error"] is None, end
        fatal = [e for e in end["hls_errors"] if e["fatal"]]
        assert not fatal, f"hls.js fatal errors: {end['hls_errors']}"
        assert latencies, f"hls.js reported no latency: {samples[-3:]}"
        assert latencies[-1] < LATENCY_BOUND, figures
        assert delays, f"no PROGRAM-DATE-TIME on the frames played: {samples[-3:]}"
        assert 0 < delays[len(delays) // 2] < LATENCY_BOUND, figures
        # /healthz (the blank same-origin document this test writes into) has no favicon, and
        # chromium asks for /favicon.ico when it loads; no page of the app is involved.
        errors = browser.console_errors(allowed=("/favicon.ico",))
        assert not errors, "console errors:\n" + "\n".join(errors)
    finally:
        thread.join(timeout=PUSH_SECONDS + 20)
    assert "error" not in outcome, outcome.get("error")
