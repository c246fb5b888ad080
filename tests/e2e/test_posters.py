"""Posters from a real server: live (refreshed every poster_interval), replays, limits, 404s.

push_pyav's picture changes brightness every frame, so its keyframes (every 2 s) have known
lumas: a poster showing one of them is a picture taken from the stream.
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import av
import pytest

from tests.e2e.pushers import FPS, HEIGHT, WIDTH, push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import push_in_background

pytestmark = pytest.mark.e2e

SERVER_ENV = {"PERISCOPE_HLS__POSTER_INTERVAL": "1"}
# push_pyav: luma (i * 4) % 200 + 20 at frame i, keyframes every 2 s; a JPEG shows it full range.
KEYFRAME_LUMAS = sorted({((i * 4) % 200 + 20 - 16) * 255 / 219 for i in range(0, 3000, 2 * FPS)})


def decode_jpeg(data: bytes) -> av.VideoFrame:
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a JPEG"
    with av.open(io.BytesIO(data), format="image2pipe") as container:
        return next(container.decode(video=0))


def mean_luma(frame: av.VideoFrame) -> float:
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    total = sum(sum(data[row * stride : row * stride + frame.width]) for row in range(frame.height))
    return total / (frame.width * frame.height)


def check_poster(data: bytes) -> float:
    """A JPEG of the stream's size showing one of its keyframes; returns its luma."""
    frame = decode_jpeg(data)
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    luma = mean_luma(frame)
    assert min(abs(luma - k) for k in KEYFRAME_LUMAS) < 5, (luma, KEYFRAME_LUMAS)
    return luma


def decodes(server: ServerProcess, broadcast_id: str) -> int:
    return len(re.findall(rf"poster_made .*broadcast={broadcast_id}\b", server.log()))


def burst(server: ServerProcess, path: str, count: int = 20) -> list[tuple[int, dict, bytes]]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: server.get(path), range(count)))


def test_posters(server: ServerProcess) -> None:
    channel = "poster"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(channel), 8)
    radio, radio_outcome = push_in_background(push_pyav, server.rtmp_url("radio"), 5, False, True)
    live = server.wait_for(
        lambda: server.get_json(f"/api/broadcasts?channel={channel}")["broadcasts"], 10
    )
    broadcast_id = live[0]["id"]

    # While live: the newest keyframe, as soon as a segment is complete.
    path = f"/live/{channel}/poster.jpg"
    status, headers, first = server.wait_for(
        lambda: (r := server.get(path))[0] == 200 and r, 10, interval=0.1, what="a live poster"
    )
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "public, max-age=10"
    first_luma = check_poster(first)
    # The same broadcast's poster by id, while it is live: the same picture.
    status, headers, by_id = server.get(f"/replays/{broadcast_id}/poster.jpg")
    assert status == 200 and headers["Cache-Control"] == "public, max-age=10"
    assert by_id == first

    # Many viewers at once: every request answered, no decoding in parallel or repeated for the
    # same segment (at most one more, if a segment completed during the burst).
    before = decodes(server, broadcast_id)
    results = burst(server, path)
    assert all(r[0] == 200 for r in results)
    assert decodes(server, broadcast_id) - before <= 1

    # After poster_interval (1 s) and a new segment (every 2 s): a new picture.
    changed = server.wait_for(
        lambda: (r := server.get(path))[0] == 200 and r[2] != first and r[2],
        6,
        interval=0.2,
        what="a newer live poster",
    )
    assert abs(check_poster(changed) - first_luma) > 10

    thread.join(30)
    radio.join(30)
    assert "error" not in outcome and "error" not in radio_outcome, (outcome, radio_outcome)
    server.wait_for(
        lambda: server.get_json(f"/api/broadcasts/{broadcast_id}")["status"] == "ended", 5
    )

    # A finished broadcast: a keyframe a third in, made once for 20 simultaneous requests.
    before = decodes(server, broadcast_id)
    results = burst(server, f"/replays/{broadcast_id}/poster.jpg")
    assert {r[0] for r in results} == {200}
    assert len({r[2] for r in results}) == 1
    assert decodes(server, broadcast_id) - before == 1
    status, headers, replay = server.get(f"/replays/{broadcast_id}/poster.jpg")
    assert status == 200 and replay == results[0][2]
    assert headers["Content-Type"] == "image/jpeg"
    assert headers["Cache-Control"] == "public, max-age=86400"
    check_poster(replay)
    assert decodes(server, broadcast_id) - before == 1  # served from the file

    # The channel, no longer live, shows its last broadcast's poster.
    status, headers, last = server.get(path)
    assert status == 200 and last == replay
    assert headers["Cache-Control"] == "public, max-age=10"

    # Audio only: no poster, live or replay.
    radio_id = server.get_json("/api/broadcasts?channel=radio")["broadcasts"][0]["id"]
    assert server.get(f"/replays/{radio_id}/poster.jpg")[0] == 404
    assert server.get("/live/radio/poster.jpg")[0] == 404
    assert decodes(server, radio_id) == 0

    # Unknown channels and broadcasts.
    assert server.get("/live/nobody/poster.jpg")[0] == 404
    assert server.get("/live/bad.name/poster.jpg")[0] == 404
    assert server.get("/replays/AAAAAAAAAAAA/poster.jpg")[0] == 404
    assert server.get("/replays/short/poster.jpg")[0] == 404
