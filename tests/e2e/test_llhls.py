"""LL-HLS against a real server: parts, blocking playlist reload, preload hints, many waiters.

A PyAV encoder publishes H.264 + AAC in real time to a server with hls.low_latency; the checks
are about order (a held request never answers before its part is listed, and answers with it),
never about wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import time

import aiohttp
import av
import pytest

from tests.e2e.conftest import require
from tests.e2e.hls_check import FRAME_90K, check_part_durations
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import push_in_background

pytestmark = pytest.mark.e2e

SERVER_ENV = {
    "PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4",
    "PERISCOPE_HLS__LOW_LATENCY": "true",
    "PERISCOPE_HLS__PART_DURATION": "0.5",
}
PART_RE = re.compile(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?')


def parts_by_segment(text: str) -> tuple[int, dict[int, list[tuple[float, str, bool]]]]:
    """(media sequence, {msn: [(duration, uri, independent)]}) of an LL-HLS playlist."""
    media_sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    parts: dict[int, list[tuple[float, str, bool]]] = {}
    msn = media_sequence
    for line in text.splitlines():
        if m := PART_RE.match(line):
            parts.setdefault(msn, []).append((float(m.group(1)), m.group(2), bool(m.group(3))))
        elif line and not line.startswith("#"):
            msn += 1
    return media_sequence, parts


def next_part(text: str) -> tuple[int, int, str]:
    """The part the preload hint names: (msn, part index, uri)."""
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', text).group(1)
    msn, index = re.search(r"(\d+)\.(\d+)\.m4s$", hint).groups()
    return int(msn), int(index), hint


def lists_part(text: str, msn: int, part: int) -> bool:
    _, parts = parts_by_segment(text)
    later = any(m > msn for m in parts) or re.search(rf"/{msn:06d}\.m4s$", text, re.M)
    return bool(later) or len(parts.get(msn, [])) > part


def ended_playlist(server: ServerProcess, key: str) -> str:
    """The stream's media playlist once it carries EXT-X-ENDLIST (the push has ended)."""
    return server.wait_for(
        lambda: (
            (r := server.get(f"/live/{key}/index.m3u8"))[0] == 200
            and b"#EXT-X-ENDLIST" in r[2]
            and r[2].decode()
        ),
        10,
        what=f"#EXT-X-ENDLIST in {key}'s playlist",
    )


async def _blocked_requests(server: ServerProcess, key: str) -> None:
    base = f"{server.http}/live/{key}"
    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> tuple[int, bytes]:
            async with session.get(base + path) as response:
                return response.status, await response.read()

        # Wait (blocking, not polling) for the first listed part of segment 1.
        status, body = await get("/index.m3u8?_HLS_msn=1&_HLS_part=0")
        assert status == 200
        text = body.decode()
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text
        # 0.5 s snapped up to five 100 ms steps (30 fps, two B-frames), with the 85 % rule kept.
        assert check_part_durations(text) == 506
        msn, part, hint = next_part(text)
        assert not lists_part(text, msn, part)

        # The hinted part, requested before it exists, is held until it exists.
        hinted = asyncio.ensure_future(get(f"/{hint}"))
        # 200 blocked reloads for that same part, all held without polling.
        query = f"/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
        blocked = [asyncio.ensure_future(get(query)) for _ in range(200)]
        results = await asyncio.gather(*blocked)
        for status, body in results:
            assert status == 200
            assert lists_part(body.decode(), msn, part), "answered before the part was listed"
        status, data = await hinted
        assert status == 200 and data[4:8] == b"moof"
        status, again = await get(f"/{hint}")
        assert status == 200 and again == data

        # Delta update request: a valid playlist either way (skipping needs a longer window).
        status, body = await get(f"/index.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES")
        assert status == 200 and body.startswith(b"#EXTM3U")

        # Malformed or far-ahead requests are refused at once.
        assert (await get("/index.m3u8?_HLS_part=1"))[0] == 400
        assert (await get("/index.m3u8?_HLS_msn=x"))[0] == 400
        assert (await get(f"/index.m3u8?_HLS_msn={msn + 50}"))[0] == 400


def test_parts_blocking_reload_and_preload_hint(server: ServerProcess) -> None:
    key = "lowlat"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(key), 8)
    server.wait_for(lambda: key in str(server.get_json("/api/streams")), 10, what="publish")
    asyncio.run(_blocked_requests(server, key))
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")

    ended = ended_playlist(server, key)
    assert "#EXT-X-PRELOAD-HINT" not in ended
    assert check_part_durations(ended) == 506
    _, parts = parts_by_segment(ended)
    init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', ended).group(1)
    init = server.get(f"/live/{key}/{init_uri}")[2]
    extinfs = [float(x) for x in re.findall(r"#EXTINF:([\d.]+),", ended)]
    segments = [line for line in ended.splitlines() if line.endswith(".m4s")]
    media_sequence, _ = parts_by_segment(ended)
    checked = 0
    for offset, (uri, extinf) in enumerate(zip(segments, extinfs, strict=True)):
        listed = parts.get(media_sequence + offset)
        if not listed:
            continue  # old segments lose their parts in the playlist
        # Parts sum exactly to EXTINF, and the segment is the concatenation of its parts.
        assert round(sum(d for d, _, _ in listed), 3) == extinf
        assert listed[0][2], "a segment's first part starts with a keyframe"
        whole = server.get(f"/live/{key}/{uri}")[2]
        fragments = [server.get(f"/live/{key}/{u}")[2] for _, u, _ in listed]
        assert b"".join(fragments) == whole
        for (duration, _, _), fragment in zip(listed[:-1], fragments[:-1], strict=True):
            # Each part's video spans its listed duration within one frame.
            assert abs(_video_span(init + fragment) - duration * 90_000) <= FRAME_90K
            assert duration <= 0.506
        checked += 1
    assert checked >= 2


def _video_span(data: bytes) -> int:
    with av.open(io.BytesIO(data), format="mp4") as container:
        stream = container.streams.video[0]
        pts = [
            round(p.pts * p.time_base * 90_000)
            for p in container.demux(stream)
            if p.pts is not None
        ]
    return max(pts) - min(pts) + FRAME_90K


def test_ffmpeg_parts_keep_the_85_percent_rule(server: ServerProcess) -> None:
    """draft-pantos-hls-rfc8216bis 4.4.4.9 on every playlist of a real ffmpeg push (30 fps, two
    B-frames: parts can only end every 100 ms), read while it is live and once it has ended."""
    require("ffmpeg")
    key = "rhythm"
    pusher = subprocess.Popen(
        ffmpeg_command(server.rtmp_url(key), 7), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    texts: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while pusher.poll() is None and time.monotonic() < deadline:
            status, _, body = server.get(f"/live/{key}/index.m3u8")
            if status == 200 and "#EXT-X-PART:" in (text := body.decode()):
                texts.append(text)
            time.sleep(0.1)
        assert pusher.wait(10) == 0, pusher.stderr.read() if pusher.stderr else ""
    finally:
        pusher.kill()
        pusher.wait()
    ended = ended_playlist(server, key)
    assert len(texts) >= 10, texts
    assert {check_part_durations(text) for text in [*texts, ended]} == {506}
    _, parts = parts_by_segment(ended)
    # Parts of a whole 100 ms rhythm are five steps long: most are 0.5 s (and none is 0.4 s).
    durations = [d for listed in parts.values() for d, _, independent in listed[1:-1]]
    assert durations and durations.count(0.5) >= len(durations) // 2, durations
