"""The web pages in a real browser (headless chromium), against a real server with real pushes.

Two ffmpeg publishers start together: ``alpha`` is live for the whole module, ``beta`` ends early
and becomes the replay. The tests run in file order and share them; about 60 s in all.
Screenshots go to test-artifacts/browser-*.png, the browser's console to browser-console.log.
"""

from __future__ import annotations

import io
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import av
import pytest

from tests.browser.conftest import Browser
from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.pushers import ffmpeg_command, run_pusher
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import push_in_background

pytestmark = pytest.mark.e2e

LIVE = "alpha"
REPLAY = "beta"
LIVE_SECONDS = 28  # long enough for the tests before the last one, which waits for its end
REPLAY_SECONDS = 10
SERVER_ENV = {"PERISCOPE_RECORDING__RECONNECT_GRACE": "1", "PERISCOPE_HLS__WINDOW": "6"}

VIDEO_STATE = """
const v = document.querySelector('video');
const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
return {t: v.currentTime, paused: v.paused, ready: v.readyState, duration: v.duration,
        frames: q ? q.totalVideoFrames : 0, dropped: q ? q.droppedVideoFrames : 0,
        player: document.body.dataset.player || null, error: v.error && v.error.message};
"""

# Draws the current frame small and measures brightness spread: a blank (black or one flat
# colour) picture has next to no variance; ffmpeg's testsrc2 has a lot.
PICTURE = """
const v = document.querySelector('video');
if (v.readyState < 2) return null;
const c = document.createElement('canvas');
c.width = 160; c.height = 90;
const g = c.getContext('2d');
g.drawImage(v, 0, 0, c.width, c.height);
const d = g.getImageData(0, 0, c.width, c.height).data;
let n = 0, s = 0, s2 = 0;
for (let i = 0; i < d.length; i += 4) {
  const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
  s += y; s2 += y * y; n++;
}
const mean = s / n;
return {mean: mean, variance: s2 / n - mean * mean};
"""

LAYOUT_WIDTH = """
return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
        body: document.body.scrollWidth};
"""


@dataclass
class Site:
    server: ServerProcess
    started: float
    pushes: list


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory):
    require("ffmpeg")
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "server-browser.log"
    log_path.unlink(missing_ok=True)
    server = ServerProcess(tmp_path_factory.mktemp("server") / "data", log_path, **SERVER_ENV)
    server.start()
    started = time.monotonic()
    pushes = [
        push_in_background(run_pusher, ffmpeg_command(server.rtmp_url(key), seconds), seconds + 30)
        for key, seconds in ((LIVE, LIVE_SECONDS), (REPLAY, REPLAY_SECONDS))
    ]
    try:
        yield Site(server, started, pushes)
    finally:
        for thread, _ in pushes:
            thread.join(timeout=LIVE_SECONDS + 10)
        server.stop()


@pytest.fixture(scope="module")
def browser(site: Site, browser_driver) -> Browser:
    return Browser(browser_driver, site.server)


def service_route_missing(server: ServerProcess) -> bool:
    status, _, _ = server.get("/api/service")
    return status == 404


def assert_no_console_errors(browser: Browser) -> None:
    # Until /api/service exists its 404 is expected (the pages treat it as phase "open").
    allowed = ("/api/service",) if service_route_missing(browser.server) else ()
    errors = browser.console_errors(allowed)
    assert not errors, "console errors:\n" + "\n".join(errors)


def assert_fits(browser: Browser, name: str, width: int = 360) -> None:
    browser.viewport(width, 780, mobile=True)
    try:
        time.sleep(0.3)  # one layout after the resize
        sizes = browser.js(LAYOUT_WIDTH)
        browser.screenshot(f"{name}-{width}px")
        assert sizes["inner"] == width, sizes
        assert sizes["scroll"] <= width, f"{name}: horizontal scroll at {width} px: {sizes}"
    finally:
        browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def live_stream(server: ServerProcess, channel: str) -> dict | None:
    streams = server.get_json("/api/streams")["streams"]
    return next((s for s in streams if s["channel"] == channel and s["segments"] >= 2), None)


def decode_mp4(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        data = response.read()
    with av.open(io.BytesIO(data), format="mp4") as container:
        frames = sum(1 for _ in container.decode(video=0))
        duration = container.duration / 1_000_000 if container.duration else 0.0
    return {"bytes": len(data), "frames": frames, "duration": duration}


def wait_playing(browser: Browser, advance: float, timeout: float, what: str) -> dict:
    """Until currentTime has moved ``advance`` seconds from where it first was seen playing."""
    first = browser.wait(
        "const v = document.querySelector('video'); return v.readyState >= 2 && v.currentTime > 0"
        " && !v.paused;",
        timeout,
        f"{what}: playback to start",
    )
    assert first
    start = browser.js(VIDEO_STATE)
    browser.wait(
        f"return document.querySelector('video').currentTime >= {start['t'] + advance};",
        timeout,
        f"{what}: currentTime to advance {advance} s from {start['t']:.2f}",
    )
    return browser.js(VIDEO_STATE)


def test_home_lists_the_live_channel(site: Site, browser: Browser) -> None:
    server = site.server
    server.wait_for(lambda: live_stream(server, LIVE), 20, 0.2, "alpha live with 2 segments")
    browser.open("/")
    browser.wait(
        'return !!document.querySelector(\'#live-list [data-channel="alpha"]'
        ' a[href="/watch/alpha"]\');',
        15,
        "the home page to list alpha as live",
    )
    card = browser.js(
        "return document.querySelector('#live-list [data-channel=\"alpha\"]').innerText;"
    )
    assert "LIVE" in card.upper() and "alpha" in card and "live for" in card, card
    assert browser.js("return document.title").startswith("Live now")
    browser.screenshot("home")
    assert_fits(browser, "home")
    assert_no_console_errors(browser)


def test_watch_plays_the_live_stream(site: Site, browser: Browser) -> None:
    browser.open(f"/watch/{LIVE}")
    state = wait_playing(browser, 3.5, 25, "live playback")
    assert state["player"] == "hlsjs", (
        f"expected hls.js in chromium (got {state['player']}): run scripts/install-hlsjs.sh"
    )
    assert state["frames"] > 0, state
    assert state["error"] is None, state
    picture = browser.js(PICTURE)
    assert picture is not None and picture["variance"] > 100, f"blank picture: {picture}"
    assert browser.js("return !document.getElementById('live-badge').hidden;")
    behind = browser.wait(
        "const n = document.getElementById('latency'); return !n.hidden && n.dataset.seconds;",
        5,
        "the 'behind live' figure",
    )
    assert 0 < float(behind) < 30, behind
    browser.screenshot("watch")
    assert_fits(browser, "watch")
    assert_no_console_errors(browser)


def finished_broadcast(server: ServerProcess, channel: str) -> dict:
    def find():
        found = server.get_json(f"/api/broadcasts?channel={channel}")["broadcasts"]
        return next((b for b in found if b["status"] == "ended"), None)

    return server.wait_for(find, 40, 0.25, f"{channel}'s broadcast to end")


def test_replay_seeks_plays_and_downloads(site: Site, browser: Browser) -> None:
    server = site.server
    record = finished_broadcast(server, REPLAY)
    browser.open(f"/replays/{record['id']}")
    duration = browser.wait(
        "const v = document.querySelector('video');"
        " return v.readyState >= 1 && isFinite(v.duration) && v.duration;",
        15,
        "the replay's metadata",
    )
    assert abs(duration - REPLAY_SECONDS) < 2.5, duration
    middle = duration / 2
    browser.js(f"const v = document.querySelector('video'); v.currentTime = {middle}; v.play();")
    state = wait_playing(browser, 1.5, 15, "replay after seeking")
    assert state["t"] >= middle + 1.5 and state["frames"] > 0, state
    picture = browser.js(PICTURE)
    assert picture is not None and picture["variance"] > 100, f"blank picture: {picture}"

    facts = browser.js("return document.getElementById('facts').innerText;")
    assert "Date" in facts and "Duration" in facts and "Size" in facts and "\u2013" not in facts, (
        facts
    )
    href = browser.js("return document.getElementById('download').href;")
    assert href == f"{server.http}/replays/{record['id']}.mp4"
    full = decode_mp4(href)
    assert full["frames"] > (REPLAY_SECONDS - 2) * 30, full

    browser.js(
        "const s = document.getElementById('clip-start'), e = document.getElementById('clip-end');"
        "s.value = '0:02'; e.value = '6'; s.dispatchEvent(new Event('input'));"
    )
    clip_href = browser.js("return document.getElementById('clip-link').href;")
    assert clip_href == f"{server.http}/replays/{record['id']}.mp4?start=2&end=6", clip_href
    clip = decode_mp4(clip_href)
    assert abs(clip["duration"] - 4) < 0.5 and clip["frames"] > 100, clip

    browser.js(
        "document.getElementById('clip-end').value = '1';"
        "document.getElementById('clip-end').dispatchEvent(new Event('input'));"
    )
    assert (
        browser.js("return document.getElementById('clip-link').getAttribute('aria-disabled');")
        == "true"
    )
    assert "after the start" in browser.js(
        "return document.getElementById('clip-error').innerText;"
    )
    browser.screenshot("replay")
    assert_fits(browser, "replay")
    assert_no_console_errors(browser)


def test_replay_plays_with_the_native_player_too(site: Site, browser: Browser) -> None:
    """The path Safari takes (no hls.js): chromium has a native HLS player as well."""
    record = finished_broadcast(site.server, REPLAY)
    browser.open(f"/replays/{record['id']}?player=native")
    browser.wait(
        "const v = document.querySelector('video'); return v.readyState >= 1 && v.duration > 0;",
        15,
        "native playback metadata",
    )
    assert browser.js("return document.body.dataset.player;") == "native"
    browser.js("const v = document.querySelector('video'); v.currentTime = 3; v.play();")
    state = wait_playing(browser, 1.5, 15, "native replay")
    assert state["frames"] > 0 and state["error"] is None, state
    assert_no_console_errors(browser)


def test_channel_page_lists_broadcasts_and_the_archive(site: Site, browser: Browser) -> None:
    record = finished_broadcast(site.server, REPLAY)
    browser.open(f"/channels/{REPLAY}")
    browser.wait(
        f"return !!document.querySelector('#broadcast-rows [data-broadcast=\"{record['id']}\"]');",
        10,
        "the channel's broadcasts",
    )
    archive = browser.js("return document.getElementById('archive').href;")
    assert archive == f"{site.server.http}/api/channels/{REPLAY}/archive.zip"
    assert (
        browser.js("return document.getElementById('archive').getAttribute('aria-disabled');")
        == "false"
    )
    status, headers, _ = site.server.get(f"/api/channels/{REPLAY}/archive.zip")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    browser.screenshot("channel")
    assert_fits(browser, "channel")
    assert_no_console_errors(browser)


def test_watch_says_when_the_broadcast_ends(site: Site, browser: Browser) -> None:
    live = live_stream(site.server, LIVE)
    assert live is not None, "alpha should still be live: raise LIVE_SECONDS"
    browser.open(f"/watch/{LIVE}")
    wait_playing(browser, 1, 20, "live playback before the end")
    remaining = LIVE_SECONDS - (time.monotonic() - site.started)
    link = browser.wait(
        "const a = document.getElementById('replay-link'); return a && a.getAttribute('href');",
        max(remaining, 0) + 30,
        "the page to say the broadcast ended",
        interval=0.25,
    )
    assert link == f"/replays/{live['broadcast_id']}"
    text = browser.js("return document.getElementById('message').innerText;")
    assert "ended" in text, text
    assert browser.js("return document.getElementById('live-badge').hidden;")
    browser.screenshot("watch-ended")
    assert_no_console_errors(browser)

    browser.open("/")
    browser.wait(
        "return document.querySelectorAll('#recent-list [data-broadcast]').length >= 2"
        " && document.getElementById('live-empty').hidden === false;",
        10,
        "the home page to list both replays and nobody live",
    )
    browser.screenshot("home-replays")
    assert_no_console_errors(browser)


def test_banner_shows_the_service_phase(tmp_path, browser_driver) -> None:
    """A server winding down: registrations closed yesterday, broadcasts close in a week."""
    now = datetime.now(UTC)
    env = {
        "PERISCOPE_SUNSET__REGISTRATIONS_CLOSE_AT": (now - timedelta(days=1)).isoformat(),
        "PERISCOPE_SUNSET__BROADCASTS_CLOSE_AT": (now + timedelta(days=7)).isoformat(),
        "PERISCOPE_SUNSET__SHUTDOWN_AT": (now + timedelta(days=30)).isoformat(),
    }
    server = ServerProcess(tmp_path / "data", ARTIFACTS / "server-browser-banner.log", **env)
    server.start()
    try:
        assert server.get_json("/api/service")["phase"] == "registrations_closed"
        browser = Browser(browser_driver, server)
        browser.open("/")
        text = browser.wait(
            "const b = document.getElementById('service-banner');"
            " return !b.hidden && b.dataset.phase === 'registrations_closed' && b.innerText;",
            10,
            "the service banner",
        )
        assert "Registrations closed:" in text, text
        assert "Broadcasting ends:" in text and "The server shuts down:" in text, text
        browser.screenshot("banner")
        assert_fits(browser, "banner")
        assert_no_console_errors(browser)
    finally:
        server.stop()
