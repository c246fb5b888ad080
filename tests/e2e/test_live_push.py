"""Real encoders push to a real server; the HLS it publishes is checked over real HTTP."""

from __future__ import annotations

import threading
import time

import pytest

from periscope_ingest.storage.layout import DataLayout
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


# A 3-segment window over a 10 s push: segments leave the live playlist while it is followed.
SERVER_ENV = {"PERISCOPE_HLS__WINDOW": "3"}


def follow_live(server, key: str, thread: threading.Thread, outcome: dict) -> list:
    """Follow the live playlist like a player until ENDLIST; return every segment ever listed.

    On every reload, RFC 8216 6.2.2 must hold: a media sequence number always names the same
    segment (URI, duration) and the same discontinuity sequence number.
    """
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
    # Measured from the frames received: a live GStreamer source on a loaded machine drops
    # frames, so only a file-paced encoder (PyAV) gives exactly 30.
    exact_rate = key == "pyav"
    assert (
        abs(mine[0]["frame_rate"] - 30) < 0.5 if exact_rate else 0 < mine[0]["frame_rate"] <= 30.5
    )
    assert mine[0]["bitrate"] > 50_000

    seen: dict[int, tuple] = {}
    target_durations = set()
    last_media_sequence = 0
    ended_seen_at = None
    while ended_seen_at is None:
        pl = playlist(server, key)
        now = time.monotonic()
        assert pl is not None
        target_durations.add(pl.target_duration)
        assert pl.media_sequence >= last_media_sequence
        last_media_sequence = pl.media_sequence
        discontinuity_sequence = pl.discontinuity_sequence
        for offset, segment in enumerate(pl.segments):
            if segment.discontinuity:
                discontinuity_sequence += 1
            entry = (segment.uri, segment.duration, discontinuity_sequence, segment.discontinuity)
            if pl.media_sequence + offset not in seen and not pl.ended:
                check_live_segment(server, key, segment.uri)
            assert seen.setdefault(pl.media_sequence + offset, entry) == entry
        if pl.ended:
            ended_seen_at = now
        else:
            assert now - outcome.get("ended_at", now) < 5, "no ENDLIST after the push ended"
            time.sleep(0.05)
    thread.join(SECONDS + 30)
    assert "error" not in outcome, outcome.get("error")
    listed_after = ended_seen_at - outcome["ended_at"]
    # Polling adds up to one interval (50 ms) to what we measure.
    assert listed_after <= 1.0, f"ENDLIST came {listed_after:.2f} s after the publisher stopped"
    assert len(target_durations) == 1, "EXT-X-TARGETDURATION must never change"
    assert last_media_sequence > 0, "the 3-segment window should have slid"
    assert sorted(seen) == list(range(len(seen)))
    assert all(s["key"] != key for s in server.get_json("/api/streams")["streams"])
    return [seen[n] for n in sorted(seen)]


def check_live_segment(server, key: str, uri: str) -> None:
    """A just-listed segment, as a player fetches it (served from memory while watched), and
    with a Range (served from the file): the same bytes as on disk."""
    on_disk = (DataLayout(server.data_dir).channel_dir(key) / uri).read_bytes()
    status, headers, body = server.get(f"/live/{key}/{uri}")
    assert status == 200 and headers["Content-Type"] == "video/mp2t"
    assert int(headers["Content-Length"]) == len(body) and body == on_disk
    assert headers["Accept-Ranges"] == "bytes"  # and a Range is answered:
    status, headers, body = server.get(f"/live/{key}/{uri}", {"Range": "bytes=188-375"})
    assert status == 206 and body == on_disk[188:376]


def check_recording(server, key: str, segments: list, seconds: float = SECONDS) -> None:
    pl = playlist(server, key)
    assert pl is not None and pl.ended
    assert pl.version == 3
    assert pl.target_duration == 2
    assert len(pl.segments) == 3
    assert all(round(s.duration) <= pl.target_duration for s in pl.segments)
    assert all(s.program_date_time for s in pl.segments)

    durations = [duration for _, duration, _, _ in segments]
    assert abs(sum(durations) - seconds) <= 0.1, f"{sum(durations)} s listed for {seconds} s"
    # 2 s GOPs and a 2 s target: every segment but the last is one GOP.
    assert all(abs(d - 2.0) <= 0.034 for d in durations[:-1]), durations

    last_dts = None
    last_audio_end = None
    for uri, duration, _, _ in segments:
        # Segments that left the window are still downloadable.
        status, headers, body = server.get(f"/live/{key}/{uri}")
        assert status == 200, uri
        assert headers["Content-Type"] == "video/mp2t"
        media = analyse_segment(body)
        assert media.video, f"{uri} has no video"
        assert media.video[0][2], f"{uri} does not start with a keyframe"
        assert media.decoded_video_frames == len(media.video)
        assert (media.width, media.height) == (WIDTH, HEIGHT)
        assert media.audio_rate == SAMPLE_RATE and media.audio_channels == 2
        measured = video_duration(media)
        assert abs(duration * 90_000 - measured) <= FRAME_90K, (
            f"{uri}: EXTINF {duration} s, video spans {measured / 90_000:.3f} s"
        )
        for dts, _, _ in media.video:
            assert last_dts is None or dts > last_dts, "video DTS must strictly increase"
            last_dts = dts
        for pts, audio_duration in media.audio:
            if last_audio_end is not None:
                # Audio is one unbroken sample clock across segment boundaries.
                assert abs(pts - last_audio_end) <= 2, f"audio gap/overlap at {pts}"
            last_audio_end = pts + audio_duration

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
    check_recording(server, key, follow_live(server, key, thread, outcome))


def test_ffmpeg_push(server) -> None:
    require("ffmpeg")
    key = "ffmpeg"
    command = ffmpeg_command(server.rtmp_url(key), SECONDS)
    thread, outcome = push_in_background(run_pusher, command, SECONDS + 30)
    check_recording(server, key, follow_live(server, key, thread, outcome))


def test_gstreamer_push(server) -> None:
    require("gst-launch-1.0")
    key = "gstreamer"
    command = gstreamer_command(server.rtmp_url(key), SECONDS)
    thread, outcome = push_in_background(run_pusher, command, SECONDS + 30)
    check_recording(server, key, follow_live(server, key, thread, outcome))
