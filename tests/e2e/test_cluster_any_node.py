"""Any node serves any viewer (issue #15): what test_cluster.py does not cover yet.

Two real nodes share a real Redis (tests/e2e/redis_server.py); ffmpeg pushes to A. B answers the
master playlist, the live poster (whichever node is asked first) and an fMP4 stream's init
segment with A's bytes and headers, and the watch page on B is A's page, whose player finds the
stream and its media on B.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.pushers import HEIGHT, WIDTH
from tests.e2e.test_cluster import node, push

pytestmark = pytest.mark.e2e

# Long enough that the shared poster is not renewed while the test compares the nodes'.
POSTER_INTERVAL = {"PERISCOPE_HLS__POSTER_INTERVAL": "600"}


def served(server, path: str) -> tuple[int, dict, bytes] | None:
    answer = server.get(path)
    return answer if answer[0] == 200 else None


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a baseline JPEG's SOF0 marker."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    at = data.index(b"\xff\xc0")
    height = int.from_bytes(data[at + 5 : at + 7], "big")
    width = int.from_bytes(data[at + 7 : at + 9], "big")
    return width, height


def test_master_playlist_poster_and_pages_from_the_other_node(tmp_path: Path, redis) -> None:
    a = node(tmp_path, "ma", redis, **POSTER_INTERVAL)
    b = node(tmp_path, "mb", redis, **POSTER_INTERVAL)
    pusher = push(a, "anynode", 20)
    try:
        # The master playlist is written after the first segments: then B has A's, byte for byte.
        _, headers_a, master_a = a.wait_for(
            lambda: served(a, "/live/anynode/master.m3u8"), 30, what="A's master playlist"
        )
        assert b"#EXT-X-STREAM-INF:" in master_a and b"index.m3u8" in master_a
        _, headers_b, _ = b.wait_for(
            lambda: (found := served(b, "/live/anynode/master.m3u8")) and found[2] == master_a
            and found,
            15,
            what="A's master playlist on B",
        )  # fmt: skip
        for header in ("Content-Type", "Cache-Control"):
            assert headers_b[header] == headers_a[header], header
        assert headers_b["Content-Type"] == "application/vnd.apple.mpegurl"

        # The live poster, asked of B first: made there from the segment A mirrored, then
        # served by A too (one poster per broadcast across the nodes).
        _, poster_headers_b, poster_b = b.wait_for(
            lambda: served(b, "/live/anynode/poster.jpg"), 20, what="B's live poster"
        )
        assert jpeg_size(poster_b) == (WIDTH, HEIGHT) and len(poster_b) > 1000
        status, poster_headers_a, poster_a = a.get("/live/anynode/poster.jpg")
        assert status == 200 and poster_a == poster_b
        for header in ("Content-Type", "Cache-Control"):
            assert poster_headers_b[header] == poster_headers_a[header], header
        assert poster_headers_b["Content-Type"] == "image/jpeg"
        assert b.get("/live/anynode/poster.jpg")[2] == poster_a  # B's cached copy: the same

        # The web pages are the same on both nodes.
        for path in ("/watch/anynode", "/", "/channels/anynode"):
            status_a, _, page_a = a.get(path)
            status_b, _, page_b = b.get(path)
            assert (status_a, status_b) == (200, 200) and page_b == page_a, path
        # What the watch page loads on B: its scripts, the stream from /api/streams, and the
        # playlist and media the player then asks for.
        page = b.get("/watch/anynode")[2].decode()
        for script in re.findall(r'src="(/static/[^"]+)"', page):
            assert b.get(script)[0] == 200, script
        assert b.get("/static/js/common.js")[0] == 200  # watch.js imports it
        found = [s for s in b.get_json("/api/streams")["streams"] if s["channel"] == "anynode"]
        assert len(found) == 1
        status, _, body = b.get(found[0]["playlist"])
        assert status == 200
        playlist = parse_media_playlist(body.decode())
        assert playlist.segments
        uri = playlist.segments[-1].uri
        segment_b = b.get(f"/live/anynode/{uri}")
        assert segment_b[0] == 200 and segment_b[2] == a.get(f"/live/anynode/{uri}")[2]
    finally:
        pusher.kill()
        pusher.wait()
        a.stop()
        b.stop()


def test_fmp4_init_segment_and_poster_from_the_other_node(tmp_path: Path, redis) -> None:
    fmp4 = {"PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4", **POSTER_INTERVAL}
    a = node(tmp_path, "fa4", redis, **fmp4)
    b = node(tmp_path, "fb4", redis, **fmp4)
    pusher = push(a, "fmp4", 15)
    try:
        text = b.wait_for(
            lambda: (found := served(b, "/live/fmp4/index.m3u8")) and b".m4s" in found[2]
            and found[2].decode(),
            30,
            what="B's fMP4 playlist with a segment",
        )  # fmt: skip
        maps = re.findall(r'#EXT-X-MAP:URI="([^"]+)"', text)
        assert maps, text
        # The init segment the player needs before any fMP4 segment: A's bytes, from B.
        status_a, headers_a, init_a = a.get(f"/live/fmp4/{maps[-1]}")
        status_b, headers_b, init_b = b.get(f"/live/fmp4/{maps[-1]}")
        assert (status_a, status_b) == (200, 200)
        assert init_b == init_a and b"ftyp" in init_a[:16]
        assert headers_b["Content-Type"] == headers_a["Content-Type"] == "video/mp4"
        # The poster asked of A first this time: made from A's files, shared, served by B.
        _, _, poster_a = a.wait_for(
            lambda: served(a, "/live/fmp4/poster.jpg"), 20, what="A's live poster"
        )
        assert jpeg_size(poster_a) == (WIDTH, HEIGHT)
        assert b.get("/live/fmp4/poster.jpg")[2] == poster_a
    finally:
        pusher.kill()
        pusher.wait()
        a.stop()
        b.stop()
