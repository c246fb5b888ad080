"""Operating the server: one publisher per key, odd pushes, bad input, signals, settings, ports."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.hls_check import analyse_segment, parse_media_playlist
from tests.e2e.pushers import ffmpeg_command, push_pyav
from tests.e2e.server import ServerProcess, free_port
from tests.e2e.test_live_push import playlist, push_in_background

pytestmark = pytest.mark.e2e

GRACE = 1.0
SERVER_ENV = {"PERISCOPE_RECORDING__RECONNECT_GRACE": str(GRACE)}


def wait_first_segment(server: ServerProcess, key: str, timeout: float = 15):
    return server.wait_for(
        lambda: (p := playlist(server, key)) and p.segments and p, timeout, what=f"{key} segment"
    )


def test_second_publisher_on_a_live_key_gets_badname(server: ServerProcess) -> None:
    require("ffmpeg")
    key = "taken"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(key), 6)
    wait_first_segment(server, key)
    result = subprocess.run(
        ffmpeg_command(server.rtmp_url(key), 2), capture_output=True, timeout=30
    )
    assert result.returncode != 0, "ffmpeg should be refused"
    assert "publish_refused channel=taken" in server.log()
    assert 'reason="this stream key is already live"' in server.log()
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    # The first publisher was not disturbed: its playlist ends normally and covers its 6 s.
    ended = server.wait_for(lambda: (p := playlist(server, key)) and p.ended and p, 5)
    assert abs(sum(s.duration for s in ended.segments) - 6) <= 0.1


@pytest.mark.parametrize(("video", "audio"), [(False, True), (True, False)])
def test_single_track_pushes(server: ServerProcess, video: bool, audio: bool) -> None:
    key = "audioonly" if not video else "videoonly"
    push_pyav(server.rtmp_url(key), 5, video=video, audio=audio)
    ended = server.wait_for(lambda: (p := playlist(server, key)) and p.ended and p, 5)
    assert abs(sum(s.duration for s in ended.segments) - 5) <= 0.1
    for listed in ended.segments:
        status, _, body = server.get(f"/live/{key}/{listed.uri}")
        assert status == 200
        media = analyse_segment(body)
        assert bool(media.video) == video and bool(media.audio) == audio
        if not video:
            span = media.audio[-1][0] + media.audio[-1][1] - media.audio[0][0]
            assert abs(span - listed.duration * 90_000) <= 1920  # one AAC frame
    status, _, body = server.get(f"/live/{key}/master.m3u8")
    assert status == 200
    assert ("avc1." in body.decode()) == video and ("mp4a.40.2" in body.decode()) == audio


def test_hevc_push_is_packaged_in_ts_with_audio(server: ServerProcess) -> None:
    import av

    key = "hevc"
    out = av.open(server.rtmp_url(key), mode="w", format="flv")
    video = out.add_stream("libx265", rate=30)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    video.codec_context.options = {"preset": "ultrafast", "x265-params": "log-level=error"}
    audio_stream = out.add_stream("aac", rate=48000)
    audio_stream.layout = "stereo"
    for i in range(90):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([i % 256]) * plane.buffer_size)
        frame.pts = i
        for packet in video.encode(frame):
            out.mux(packet)
        if i % 2 == 0:
            for _ in range(3):
                aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
                for plane in aframe.planes:
                    plane.update(bytes(plane.buffer_size))
                aframe.sample_rate = 48000
                for packet in audio_stream.encode(aframe):
                    out.mux(packet)
    for stream in (video, audio_stream):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()
    ended = server.wait_for(lambda: (p := playlist(server, key)) and p.ended and p, 5)
    assert "is not packaged" not in server.log()
    assert ended.segments[0].uri.endswith(".ts")  # the default format: HEVC goes into MPEG-TS
    status, _, body = server.get(f"/live/{key}/{ended.segments[0].uri}")
    assert status == 200
    assert b"\x24" in body[:1000] and analyse_segment(body).video[0][2]
    container = av.open(io.BytesIO(body), format="mpegts")
    assert {s.type: s.codec_context.name for s in container.streams} == {
        "video": "hevc",
        "audio": "aac",
    }
    container.close()
    media = analyse_segment(body)
    assert media.audio and media.video and media.decoded_video_frames == len(media.video)
    status, _, master = server.get(f"/live/{key}/master.m3u8")
    assert 'CODECS="hvc1.' in master.decode()


def test_malformed_rtmp_closes_only_that_connection(server: ServerProcess) -> None:
    key = "steady"
    thread, outcome = push_in_background(push_pyav, server.rtmp_url(key), 6)
    wait_first_segment(server, key)
    with socket.create_connection(("127.0.0.1", server.rtmp_port), timeout=5) as bad:
        bad.sendall(b"\x03" + bytes(1536))
        handshake = b""
        while len(handshake) < 1 + 1536 * 2:
            chunk = bad.recv(65536)
            assert chunk, "server closed during the handshake"
            handshake += chunk
        # C2, then a chunk header announcing a 2 GB... no: a type-1 header on a new chunk stream.
        bad.sendall(bytes(1536) + b"\x45" + bytes(7))
        assert bad.recv(65536) == b"", "the server should close the connection"
    server.wait_for(lambda: "rtmp_closed" in server.log(), 5, what="log line")
    line = next(x for x in server.log().splitlines() if "rtmp_closed" in x)
    assert "protocol error" in line and "chunk stream 5" in line
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    ended = server.wait_for(lambda: (p := playlist(server, key)) and p.ended and p, 5)
    assert abs(sum(s.duration for s in ended.segments) - 6) <= 0.1


def test_sigterm_ends_live_playlists_and_exits_zero(tmp_path) -> None:
    proc = ServerProcess(tmp_path / "data", ARTIFACTS / "server-sigterm.log")
    proc.start()
    key = "term"
    thread, outcome = push_in_background(push_pyav, proc.rtmp_url(key), 30)
    first = wait_first_segment(proc, key)
    assert not first.ended
    stopped_at = time.monotonic()
    assert proc.stop(signal.SIGTERM) == 0
    assert time.monotonic() - stopped_at < 5
    text = (tmp_path / "data" / "channels" / key / "index.m3u8").read_text()
    final = parse_media_playlist(text)
    assert final.ended
    for listed in final.segments:
        analyse_segment((tmp_path / "data" / "channels" / key / listed.uri).read_bytes())
    # Only an MP4 export cut short by the exit may be left (hidden); the next start redoes it.
    leftovers = [p for p in (tmp_path / "data").rglob(".*") if p.name != ".recording.mp4.part"]
    assert leftovers == [], leftovers
    thread.join(30)
    assert "error" in outcome, "the pusher should see the server close its connection"
    # The recording was finalised by the SIGTERM, not recovered as interrupted later.
    restarted = ServerProcess(tmp_path / "data", ARTIFACTS / "server-sigterm.log")
    restarted.start()
    try:
        (record,) = restarted.get_json(f"/api/broadcasts?channel={key}")["broadcasts"]
        assert record["status"] == "ended"
        assert abs(record["duration"] - sum(s.duration for s in final.segments)) < 0.01
        restarted.wait_for(
            lambda: restarted.get_json(f"/api/broadcasts/{record['id']}")["mp4_ready"], 30
        )
        status, _, mp4 = restarted.get(f"/replays/{record['id']}.mp4")
        assert status == 200 and mp4[4:8] == b"ftyp"
        assert not list((tmp_path / "data").rglob(".recording.mp4.part"))
    finally:
        restarted.stop()


def _serve(env: dict[str, str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_invalid_setting_is_one_clear_line(tmp_path) -> None:
    result = _serve({"PERISCOPE_HLS__WINDOW": "zero", "PERISCOPE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "hls.window" in lines[0]


def test_taken_port_is_one_line_not_a_traceback(tmp_path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _serve(
            {
                "PERISCOPE_HOST": "127.0.0.1",
                "PERISCOPE_RTMP_PORT": str(port),
                "PERISCOPE_HTTP_PORT": str(free_port()),
                "PERISCOPE_DATA_DIR": str(tmp_path),
            }
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [x for x in result.stderr.splitlines() if "periscope-ingest:" in x]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], result.stderr


def test_publisher_that_drops_off_gets_endlist(server: ServerProcess) -> None:
    """A killed encoder sends no FCUnpublish: once the reconnect grace has passed, the closed
    TCP connection alone ends the stream."""
    require("ffmpeg")
    key = "dropped"
    pusher = subprocess.Popen(ffmpeg_command(server.rtmp_url(key), 30), stderr=subprocess.DEVNULL)
    try:
        wait_first_segment(server, key)
    finally:
        pusher.kill()
        pusher.wait()
    killed_at = time.monotonic()
    ended = server.wait_for(lambda: (p := playlist(server, key)) and p.ended and p, 5)
    assert GRACE <= time.monotonic() - killed_at <= GRACE + 1.0
    line = server.wait_for(
        lambda: next(
            (x for x in server.log().splitlines() if "broadcast_ended channel=dropped" in x), None
        ),
        5,
    )
    assert "no reconnect within reconnect_grace=1 s" in line
    for listed in ended.segments:
        status, _, body = server.get(f"/live/{key}/{listed.uri}")
        assert status == 200
        analyse_segment(body)
