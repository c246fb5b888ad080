"""The replay of a broadcast still live on another node (shared catalog, catalog.url; shared
object store, storage.url): node B lists it and answers its growing recording playlist and its
segments from the store, with node A's bytes, and makes its MP4 from them; once it ends, the VOD
playlist is A's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.hls_check import parse_media_playlist
from tests.e2e.moto_s3 import MotoS3
from tests.e2e.pushers import ffmpeg_command
from tests.e2e.server import ServerProcess
from tests.e2e.test_recordings import probe_mp4

pytestmark = pytest.mark.e2e

BUCKET = "elsewhere"


def replay(server: ServerProcess, broadcast_id: str) -> tuple[str, dict] | None:
    status, headers, body = server.get(f"/replays/{broadcast_id}/index.m3u8")
    return (body.decode(), headers) if status == 200 else None


def test_the_replay_of_a_broadcast_live_on_another_node(
    tmp_path: Path, moto: MotoS3, postgres_server, postgres_url: str
) -> None:
    require("ffmpeg")
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"PERISCOPE_CATALOG__URL": postgres_url, **moto.env(BUCKET, "shared")}
    # A puts the recording playlist whole once, then only its new lines (recording.tail), as
    # for a long broadcast: B's replay grows only if B joins the two.
    a = ServerProcess(
        tmp_path / "a",
        ARTIFACTS / "server-elsewhere-a.log",
        PERISCOPE_STORAGE__RECORDING_PLAYLIST_KIB_S="0.001",
        **env,
    )
    b = ServerProcess(tmp_path / "b", ARTIFACTS / "server-elsewhere-b.log", **env)
    a.start()
    b.start()
    pusher = subprocess.Popen(
        ffmpeg_command(a.rtmp_url("away"), 14),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listed = b.wait_for(
            lambda: b.get_json("/api/broadcasts?channel=away")["broadcasts"], 30, what="a row"
        )
        broadcast_id = listed[0]["id"]
        assert listed[0]["status"] == "live"
        first = b.wait_for(
            lambda: (r := replay(b, broadcast_id)) and "#EXTINF" in r[0] and r,
            30,
            what="B's replay playlist",
        )
        text, headers = first
        assert "#EXT-X-PLAYLIST-TYPE:EVENT" in text and "#EXT-X-ENDLIST" not in text
        assert (
            headers["Cache-Control"]
            == a.get(f"/replays/{broadcast_id}/index.m3u8")[1]["Cache-Control"]
        )
        # It grows on B as A records (read again from the store).
        count = len(parse_media_playlist(text).segments)
        b.wait_for(
            lambda: len(parse_media_playlist(replay(b, broadcast_id)[0]).segments) > count,
            15,
            what="the replay growing on B",
        )
        stored = moto.objects(BUCKET, f"shared/channels/away/{broadcast_id}/")
        assert stored["recording.tail"].startswith(b"#PERISCOPE-TAIL:")
        whole = parse_media_playlist(stored["recording.m3u8"].decode())
        assert len(whole.segments) < len(parse_media_playlist(replay(b, broadcast_id)[0]).segments)
        # An MP4 of it made on B now holds what the store lists now, the tail's entries too
        # (and leaves no copy of the growing playlist where the VOD one goes: checked below).
        listed = parse_media_playlist(replay(b, broadcast_id)[0])
        status, _, mp4 = b.get(f"/replays/{broadcast_id}.mp4")
        assert status == 200
        made = probe_mp4(mp4)["duration"]
        assert made >= sum(s.duration for s in listed.segments) - 0.5, (made, listed.segments)
        segment = parse_media_playlist(text).segments[0].uri
        status, _, on_b = b.get(f"/replays/{broadcast_id}/{segment}")
        assert status == 200 and on_b == a.get(f"/replays/{broadcast_id}/{segment}")[2]
        assert pusher.wait(60) == 0
        # Ended: B's replay becomes A's VOD playlist, byte for byte.
        a.wait_for(
            lambda: "#EXT-X-ENDLIST" in (replay(a, broadcast_id) or ("",))[0], 20, what="VOD"
        )
        vod = replay(a, broadcast_id)[0]
        b.wait_for(lambda: replay(b, broadcast_id)[0] == vod, 20, what="B's VOD playlist")
        assert "recording.tail" not in moto.objects(BUCKET, f"shared/channels/away/{broadcast_id}/")
    finally:
        pusher.kill()
        a.stop()
        b.stop()
