"""config/nginx-cache.conf in front of a real server: what reaches the origin, counted by the
origin itself (its /metrics request counters by route), while many viewers watch through it.

* 50 viewers reloading the live playlist and fetching its newest segment: each segment is
  fetched from the origin once, the playlist about once per second, and every body that comes
  through the cache is the origin's, byte for byte.
* LL-HLS: blocking playlist reloads and preload-hinted part requests through the cache are held
  until the part exists, answered with it (never with an older playlist), and cost the origin
  one request per part however many viewers wait.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import subprocess
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.nginx_cache import CachingNginx, requests_by_route
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist, push_in_background
from tests.e2e.test_llhls import lists_part, next_part

pytestmark = pytest.mark.e2e

PLAYLIST = "/live/{channel}/index.m3u8"
SEGMENT = "/live/{channel}/{broadcast}/{segment}"
VIEWERS = 50
WATCH_SECONDS = 5.0


def origin_requests(server: ServerProcess) -> dict[str, int]:
    status, _, body = server.get("/metrics")
    assert status == 200
    return requests_by_route(body.decode())


def fetched_since(before: dict[str, int], after: dict[str, int], route: str) -> int:
    return after.get(route, 0) - before.get(route, 0)


def start_server(tmp_path, name: str, **env: str) -> ServerProcess:
    ARTIFACTS.mkdir(exist_ok=True)
    server = ServerProcess(
        tmp_path / "data",
        ARTIFACTS / f"server-cache-{name}.log",
        PERISCOPE_TRUSTED_PROXIES='["127.0.0.1/32"]',
        **env,
    )
    server.start()
    return server


async def _watch(base: str, channel: str, seconds: float) -> tuple[dict[str, set[bytes]], int]:
    """VIEWERS clients, each reloading the playlist and fetching its newest segment in a loop:
    ({segment path: the bodies seen for it}, playlist reloads)."""
    bodies: dict[str, set[bytes]] = {}
    reloads = 0
    deadline = time.monotonic() + seconds

    async def viewer(session: aiohttp.ClientSession) -> None:
        nonlocal reloads
        while time.monotonic() < deadline:
            async with session.get(f"{base}/live/{channel}/index.m3u8") as response:
                assert response.status == 200
                text = (await response.text()).splitlines()
            reloads += 1
            newest = f"/live/{channel}/" + [line for line in text if line.endswith(".ts")][-1]
            async with session.get(base + newest) as response:
                assert response.status == 200
                bodies.setdefault(newest, set()).add(await response.read())
            await asyncio.sleep(0.05)

    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=VIEWERS)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(viewer(session) for _ in range(VIEWERS)))
    return bodies, reloads


def test_many_viewers_cost_the_origin_one_fetch_per_segment(tmp_path) -> None:
    require("nginx")
    require("ffmpeg")
    server = start_server(tmp_path, "viewers")
    try:
        with CachingNginx(server.http_port) as nginx:
            thread, outcome = push_in_background(
                lambda url: subprocess.run(
                    ffmpeg_command(url, 14), capture_output=True, check=True
                ),
                server.rtmp_url("tv"),
            )
            server.wait_for(lambda: (p := playlist(server, "tv")) and len(p.segments) >= 2, 20)
            before = origin_requests(server)
            started = time.monotonic()
            bodies, reloads = asyncio.run(_watch(nginx.http, "tv", WATCH_SECONDS))
            elapsed = time.monotonic() - started
            after = origin_requests(server)

            playlists = fetched_since(before, after, PLAYLIST)
            segments = fetched_since(before, after, SEGMENT)
            print(
                f"\n{VIEWERS} viewers for {elapsed:.1f} s through the cache: {reloads} playlist"
                f" reloads and as many fetches of {len(bodies)} segment(s) cost the origin"
                f" {playlists} playlist and {segments} segment fetch(es)"
            )
            # Enough that without the cache the origin would count hundreds of each.
            assert reloads >= VIEWERS * 5, "the viewers did not load the cache"
            # Each segment once: the first viewer's miss, with the others waiting on the lock.
            assert len(bodies) >= 2 and segments == len(bodies)
            # The playlist's max-age=1 is kept by nginx to the whole second: at most one origin
            # fetch per second, plus the first one.
            assert 1 <= playlists <= math.ceil(elapsed) + 1
            # Byte for byte what the origin serves, and the same for every viewer.
            for path, seen in bodies.items():
                status, _, origin_body = server.get(path)
                assert status == 200 and seen == {origin_body}, path

            thread.join(30)
            assert "error" not in outcome, outcome.get("error")
            # Once the TTL it was given has passed, the cache answers with the origin's ended
            # playlist: a live playlist is not kept longer than its max-age=1 (to the second).
            ended = server.wait_for(
                lambda: (
                    (r := server.get("/live/tv/index.m3u8"))[0] == 200
                    and b"#EXT-X-ENDLIST" in r[2]
                    and r[2]
                ),
                15,
            )
            time.sleep(2.1)  # longer than the cached copy may live (1 s, to nginx's whole second)
            assert fetch(nginx.http + "/live/tv/index.m3u8") == (200, ended)
            check_not_cached_and_forwarded(server, nginx)
    finally:
        server.stop()


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def fetch_text(url: str) -> str:
    status, body = fetch(url)
    assert status == 200
    return body.decode()


def fetch_status(url: str) -> int:
    try:
        return fetch(url)[0]
    except urllib.error.HTTPError as exc:
        return exc.code


def check_not_cached_and_forwarded(server: ServerProcess, nginx: CachingNginx) -> None:
    """/metrics and the API go to the origin every time, with the viewer's address; so does a
    request answered with an error (no Cache-Control: a part missing now may exist soon)."""
    before = origin_requests(server)
    missing_before = requests_by_route(fetch_text(server.http + "/metrics"), status="404")
    for _ in range(3):
        assert fetch(nginx.http + "/metrics")[0] == 200
        assert fetch_status(nginx.http + "/live/tv/AAAAAAAAAAAA/000999.ts") == 404
    after = origin_requests(server)
    missing_after = requests_by_route(fetch_text(server.http + "/metrics"), status="404")
    # Three through nginx, and the two reads of this test before the last.
    assert fetched_since(before, after, "/metrics") == 3 + 2
    assert fetched_since(missing_before, missing_after, SEGMENT) == 3
    connection = http.client.HTTPConnection(
        "127.0.0.1", nginx.port, timeout=10, source_address=("127.0.0.7", 0)
    )
    try:
        connection.request("GET", "/api/client", headers={"X-Forwarded-For": "203.0.113.66"})
        response = connection.getresponse()
        assert response.status == 200
        seen = json.loads(response.read())
    finally:
        connection.close()
    # The proxy is trusted, so its hop is believed: the viewer's own address, not the claim.
    assert seen["address"] == "127.0.0.7"


LOW_LATENCY_ENV = {
    "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
    "PERISCOPE_HLS__LOW_LATENCY": "true",
    "PERISCOPE_HLS__PART_DURATION": "0.5",
}
WAITERS = 20
ROUNDS = 3


async def _blocked_through_cache(
    server: ServerProcess, nginx: CachingNginx, channel: str
) -> list[str]:
    """ROUNDS times: WAITERS blocking reloads for the part the origin's playlist hints next and
    WAITERS requests for that part, all through the cache; returns what each round measured."""
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    rounds: list[str] = []
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def get(url: str) -> tuple[int, bytes, float]:
            async with session.get(url) as response:
                return response.status, await response.read(), time.monotonic()

        for _ in range(ROUNDS):
            # From the origin itself: the part it hints does not exist yet.
            status, body, _ = await get(f"{server.http}/live/{channel}/index.m3u8")
            assert status == 200
            msn, part, hint = next_part(body.decode())
            assert not lists_part(body.decode(), msn, part)
            before = await asyncio.to_thread(origin_requests, server)
            query = f"{nginx.http}/live/{channel}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
            reloads = [asyncio.ensure_future(get(query)) for _ in range(WAITERS)]
            part_url = f"{nginx.http}/live/{channel}/{hint}"
            parts = [asyncio.ensure_future(get(part_url)) for _ in range(WAITERS)]
            reloaded = await asyncio.gather(*reloads)
            fetched = await asyncio.gather(*parts)
            after = await asyncio.to_thread(origin_requests, server)

            for status, body, _ in reloaded:
                # Held until the part existed, and answered with it: never an older playlist.
                assert status == 200
                assert lists_part(body.decode(), msn, part), "answered without the part"
            assert {status for status, _, _ in fetched} == {200}
            datas = {data for _, data, _ in fetched}
            origin_part = (await get(f"{server.http}/live/{channel}/{hint}"))[1]
            assert datas == {origin_part} and origin_part[4:8] == b"moof"
            # However many waited, the origin held one blocking reload and one part request.
            assert fetched_since(before, after, PLAYLIST) == 1
            assert fetched_since(before, after, SEGMENT) == 1
            done = [at for _, _, at in reloaded + fetched]
            rounds.append(f"part {msn}.{part}: answers spread over {max(done) - min(done):.2f} s")
    return rounds


def test_low_latency_requests_wait_through_the_cache_and_cost_one_fetch(tmp_path) -> None:
    require("nginx")
    server = start_server(tmp_path, "llhls", **LOW_LATENCY_ENV)
    try:
        with CachingNginx(server.http_port) as nginx:
            thread, outcome = push_in_background(push_pyav, server.rtmp_url("ll"), 10)
            server.wait_for(
                lambda: b"#EXT-X-PRELOAD-HINT" in server.get("/live/ll/index.m3u8")[2], 15
            )
            rounds = asyncio.run(_blocked_through_cache(server, nginx, "ll"))
            print(f"\n{WAITERS} blocking reloads + {WAITERS} part requests a round: {rounds}")
            thread.join(30)
            assert "error" not in outcome, outcome.get("error")
    finally:
        server.stop()
