"""Real encoders push to a real server; the HLS it publishes is checked over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from tests.e2e.conftest import require
from tests.e2e.hls_check import (
    FRAME_90K,
    analyse_segment,
    parse_master_playlist,
    parse_media_playlist,
    video_duration,
)
from tests.e2e.pushers import (
    HEIGHT,
    SAMPLE_RATE,
    WIDTH,
    ffmpeg_command,
    gstreamer_command,
    push_pyav,
    run_pusher,
)

pytestmark = pytest.mark.e2e

SECONDS = 10


def playlist(server, key: str):
    status, _, body = server.get(f"/live/{key}/index.m3u8")
    return parse_media_playlist(body.decode()) if status == 200 else None


def push_in_background(target, *args) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:
            outcome["error"] = exc
        outcome["ended_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def check_live_then_ended(server, key: str, thread: threading.Thread, outcome: dict) -> None:
    """While the push runs: listed, live, in /api/streams. After it: ENDLIST within 1 s."""
    first = server.wait_for(
        lambda: (p := playlist(server, key)) and p.segments and p, timeout=SECONDS, what="segment"
    )
    assert thread.is_alive(), "the first segment should be listed while the publisher is live"
    assert not first.ended
    streams = server.get_json("/api/streams")["streams"]
    mine = [s for s in streams if s["key"] == key]
    assert len(mine) == 1
    assert mine[0]["video_codec"].startswith("avc1.")
    assert mine[0]["audio_codec"] == "mp4a.40.2"
    assert mine[0]["resolution"] == f"{WIDTH}x{HEIGHT}"
    assert mine[0]["audio_sample_rate"] == SAMPLE_RATE
    thread.join(SECONDS + 30)
    assert "error" not in outcome, outcome.get("error")
    ended = server.wait_for(
        lambda: (p := playlist(server, key)) and p.ended and p, timeout=5, what="ENDLIST"
    )
    listed_after = time.monotonic() - outcome["ended_at"]
    # Polling adds up to one interval (50 ms) to what we measure.
    assert listed_after <= 1.0, f"ENDLIST came {listed_after:.2f} s after the publisher stopped"
    assert ended.segments
    assert all(s["key"] != key for s in server.get_json("/api/streams")["streams"])


def check_recording(server, key: str, seconds: float = SECONDS) -> None:
    pl = playlist(server, key)
    assert pl is not None and pl.ended
    assert pl.version == 3
    assert pl.media_sequence == 0  # nothing left the window of a 6-segment playlist... yet
    assert pl.target_duration == 2
    assert all(round(s.duration) <= pl.target_duration for s in pl.segments)
    assert all(s.program_date_time for s in pl.segments)

    total = sum(s.duration for s in pl.segments)
    assert abs(total - seconds) <= 0.1, f"{total} s listed for a {seconds} s push"
    # 2 s GOPs and a 2 s target: every segment but the last is one GOP.
    for s in pl.segments[:-1]:
        assert abs(s.duration - 2.0) <= 0.034, [x.duration for x in pl.segments]

    last_dts = None
    last_audio_end = None
    for listed in pl.segments:
        status, headers, body = server.get(f"/live/{key}/{listed.uri}")
        assert status == 200
        assert headers["Content-Type"] == "video/mp2t"
        media = analyse_segment(body)
        assert media.video, f"{listed.uri} has no video"
        assert media.video[0][2], f"{listed.uri} does not start with a keyframe"
        assert media.decoded_video_frames == len(media.video)
        assert (media.width, media.height) == (WIDTH, HEIGHT)
        assert media.audio_rate == SAMPLE_RATE and media.audio_channels == 2
        measured = video_duration(media)
        assert abs(listed.duration * 90_000 - measured) <= FRAME_90K, (
            f"{listed.uri}: EXTINF {listed.duration} s, video spans {measured / 90_000:.3f} s"
        )
        for dts, _, _ in media.video:
            assert last_dts is None or dts > last_dts, "video DTS must strictly increase"
            last_dts = dts
        for pts, duration in media.audio:
            if last_audio_end is not None:
                # Audio is one unbroken sample clock across segment boundaries.
                assert abs(pts - last_audio_end) <= 2, f"audio gap/overlap at {pts}"
            last_audio_end = pts + duration

    status, _, body = server.get(f"/live/{key}/master.m3u8")
    assert status == 200
    ((attrs, uri),) = parse_master_playlist(body.decode())
    assert uri == "index.m3u8"
    assert attrs["RESOLUTION"] == f"{WIDTH}x{HEIGHT}"
    video_codec, audio_codec = attrs["CODECS"].split(",")
    assert video_codec.startswith("avc1.") and len(video_codec) == len("avc1.64001e")
    assert audio_codec == "mp4a.40.2"
    assert int(attrs["BANDWIDTH"]) > 50_000


def test_pyav_push(server) -> None:
    key = "pyav"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(key), SECONDS)
    check_live_then_ended(server, key, thread, outcome)
    check_recording(server, key)


def test_ffmpeg_push(server) -> None:
    require("ffmpeg")
    key = "ffmpeg"
    command = ffmpeg_command(server.rtmp_url(key), SECONDS)
    thread, outcome = push_in_background(run_pusher, command, SECONDS + 30)
    check_live_then_ended(server, key, thread, outcome)
    check_recording(server, key)


def test_gstreamer_push(server) -> None:
    require("gst-launch-1.0")
    key = "gstreamer"
    command = gstreamer_command(server.rtmp_url(key), SECONDS)
    thread, outcome = push_in_background(run_pusher, command, SECONDS + 30)
    check_live_then_ended(server, key, thread, outcome)
    check_recording(server, key)
