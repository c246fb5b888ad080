"""Enhanced RTMP HEVC and AV1 pushed by PyAV's FFmpeg, packaged without transcoding.

Each stream is encoded once into an in-memory FLV (so the test knows the exact configuration
record the server receives), then published over RTMP. fMP4 segments decode after their init
segment; with the default "ts" format HEVC goes into MPEG-TS and AV1 switches to fMP4.
"""

from __future__ import annotations

import io
import re
from fractions import Fraction
from functools import cache

import av
import pytest

from periscope_ingest.media.av1 import parse_av1c
from periscope_ingest.media.flv import VideoSequenceStart, parse_video
from periscope_ingest.media.hevc import parse_hvcc
from periscope_ingest.storage.layout import init_segment_for
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.hls_check import FRAME_90K, parse_master_playlist, parse_media_playlist
from tests.e2e.server import ServerProcess
from tests.flv_file import read_tags
from tests.scheduling import normal_scheduling

pytestmark = pytest.mark.e2e

SERVER_ENV = {"PERISCOPE_HLS__SEGMENT_FORMAT": "fmp4"}
SIZE, FPS, SECONDS = (320, 240), 30, 5
ENCODERS = {
    "hvc1": (
        "libx265",
        {"preset": "ultrafast", "x265-params": "log-level=error:keyint=60:open-gop=0"},
    ),
    "av01": ("libsvtav1", {"preset": "12", "svtav1-params": "keyint=60"}),
}


@cache
def encoded_flv(codec: str) -> bytes:
    """SECONDS of 320x240 video (2 s GOP) + AAC, as an FLV (Enhanced RTMP video tags)."""
    buffer = io.BytesIO()
    out = av.open(buffer, mode="w", format="flv")
    name, options = ENCODERS[codec]
    video = out.add_stream(name, rate=FPS)
    video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
    video.codec_context.gop_size = 2 * FPS
    video.codec_context.options = options
    audio = out.add_stream("aac", rate=48000)
    audio.layout = "stereo"
    samples = 0
    for i in range(SECONDS * FPS):
        frame = av.VideoFrame(*SIZE, "yuv420p")
        for k, plane in enumerate(frame.planes):
            plane.update(bytes([(i * 3 + k * 40) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        for packet in video.encode(frame):
            out.mux(packet)
        while samples < (i + 1) * 48000 // FPS:
            aframe = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for plane in aframe.planes:
                plane.update(bytes(plane.buffer_size))
            aframe.sample_rate, aframe.pts = 48000, samples
            aframe.time_base = Fraction(1, 48000)
            for packet in audio.encode(aframe):
                out.mux(packet)
            samples += 1024
    for stream in (video, audio):
        for packet in stream.encode(None):
            out.mux(packet)
    out.close()
    normal_scheduling()  # libsvtav1 made this thread real-time: not the ffprobe runs after
    return buffer.getvalue()


def expected_codecs(codec: str) -> str:
    path = ARTIFACTS / f"{codec}.flv"
    path.write_bytes(encoded_flv(codec))
    for tag_type, _, body in read_tags(path):
        if tag_type == 9:
            for item in parse_video(body):
                if isinstance(item, VideoSequenceStart):
                    parse = parse_hvcc if codec == "hvc1" else parse_av1c
                    return parse(item.record).codecs
    raise AssertionError("no sequence header")


def publish(url: str, flv: bytes) -> None:
    """Send the FLV's packets to the server as they are (copied, not re-encoded)."""
    source = av.open(io.BytesIO(flv), format="flv")
    out = av.open(url, mode="w", format="flv")
    streams = {}
    for stream in source.streams:
        opaque = True if stream.codec_context.name in ("av1", "libdav1d") else None
        streams[stream.index] = out.add_stream_from_template(stream, opaque=opaque)
    for packet in source.demux():
        if packet.dts is None:
            continue
        packet.stream = streams[packet.stream.index]
        out.mux(packet)
    out.close()
    source.close()


def ended_playlist(server: ServerProcess, key: str):
    def ready():
        status, _, body = server.get(f"/live/{key}/index.m3u8")
        return status == 200 and b"#EXT-X-ENDLIST" in body and body.decode()

    return server.wait_for(ready, 10, what=f"{key} ENDLIST")


def decode_fmp4(data: bytes) -> list[tuple[int, bool]]:
    """(pts in 90 kHz, keyframe) of every video frame; any decode error raises."""
    container = av.open(io.BytesIO(data), format="mp4")
    stream = container.streams.video[0]
    stream.codec_context.options = {"err_detect": "explode"}
    frames = []
    decoded = 0
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        frames.append((round(packet.pts * packet.time_base * 90_000), packet.is_keyframe))
        decoded += len(packet.decode())
    decoded += len(stream.codec_context.decode(None))
    container.close()
    assert decoded == len(frames)
    return frames


def check_fmp4_stream(server: ServerProcess, key: str, codec: str) -> None:
    text = ended_playlist(server, key)
    playlist = parse_media_playlist(text)
    assert playlist.version == 6 and len(playlist.segments) >= 2
    map_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
    status, _, init = server.get(f"/live/{key}/{map_uri}")
    assert status == 200 and init[4:8] == b"ftyp"
    sample_entry = b"hvc1" if codec == "hvc1" else b"av01"
    assert sample_entry in init
    total = 0.0
    for listed in playlist.segments:
        assert listed.uri.endswith(".m4s")
        status, _, body = server.get(f"/live/{key}/{listed.uri}")
        assert status == 200
        frames = decode_fmp4(init + body)
        assert frames[0][1], "a segment starts with a keyframe"
        pts = sorted(p for p, _ in frames)
        span = pts[-1] - pts[0] + FRAME_90K
        assert abs(span - listed.duration * 90_000) <= FRAME_90K
        total += listed.duration
    assert abs(total - SECONDS) <= 0.1
    status, _, master = server.get(f"/live/{key}/master.m3u8")
    (attributes, _), *_ = parse_master_playlist(master.decode())
    assert attributes["CODECS"].split(",") == [expected_codecs(codec), "mp4a.40.2"]


@pytest.mark.parametrize("codec", ["hvc1", "av01"])
def test_enhanced_rtmp_to_fmp4(server: ServerProcess, codec: str) -> None:
    key = f"fmp4{codec}"
    publish(server.rtmp_url(key), encoded_flv(codec))
    check_fmp4_stream(server, key, codec)
    assert "is not packaged" not in server.log()
    # The recording carries the map too, and exports to MP4 without re-encoding.
    status, _, body = server.get(f"/live/{key}/index.m3u8")
    segment_uri = next(s.uri for s in parse_media_playlist(body.decode()).segments)
    broadcast = segment_uri.split("/")[0]
    status, _, replay = server.get(f"/replays/{broadcast}/index.m3u8")
    assert status == 200 and b"#EXT-X-MAP:URI=" in replay
    status, _, mp4 = server.get(f"/replays/{broadcast}.mp4")
    assert status == 200
    with av.open(io.BytesIO(mp4)) as exported:
        names = sorted(s.codec_context.name for s in exported.streams)
        assert names[0] == "aac" and len(names) == 2


def test_av1_with_ts_format_switches_to_fmp4(tmp_path) -> None:
    proc = ServerProcess(tmp_path / "data", ARTIFACTS / "server-av1-ts.log")
    proc.start()
    try:
        publish(proc.rtmp_url("av1ts"), encoded_flv("av01"))
        check_fmp4_stream(proc, "av1ts", "av01")
        assert "stream_format_switched" in proc.log()
    finally:
        proc.stop()


def test_init_segment_lookup(tmp_path) -> None:
    for name in ("init-000000.mp4", "init-000005.mp4", "000004.m4s", "000007.m4s"):
        (tmp_path / name).write_bytes(b"")
    assert init_segment_for(tmp_path / "000004.m4s") == tmp_path / "init-000000.mp4"
    assert init_segment_for(tmp_path / "000007.m4s") == tmp_path / "init-000005.mp4"
