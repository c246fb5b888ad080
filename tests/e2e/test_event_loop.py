"""The event_loop setting picks the loop the server runs on (uvloop by default, asyncio on
request), and a stream goes through on each: the server's start line says which loop runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from periscope_ingest.web.replays import SENDFILE_PART
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist
from tests.e2e.test_recordings import wait_mp4_ready

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("setting", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_server_runs_on_the_loop_the_setting_names(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    log = ARTIFACTS / f"server-event-loop-{expected}.log"
    ARTIFACTS.mkdir(exist_ok=True)
    log.unlink(missing_ok=True)
    env = {} if setting is None else {"PERISCOPE_EVENT_LOOP": setting}
    server = ServerProcess(tmp_path / "data", log, **env)
    try:
        server.start()  # inside: a server that never answers is stopped too
        push_pyav(server.rtmp_url("loop"), 30, realtime=False)
        ended = server.wait_for(lambda: (p := playlist(server, "loop")) and p.ended and p, 20)
        # The MP4 download goes out in 256 KiB parts: by sendfile on asyncio's loop, copied
        # through the transport on uvloop's (web/file_parts.py). Both must give the file.
        broadcast = server.get_json("/api/broadcasts?channel=loop")["broadcasts"][0]["id"]
        wait_mp4_ready(server, broadcast)
        (on_disk,) = (tmp_path / "data").rglob("*.mp4")
        expected_mp4 = on_disk.read_bytes()
        assert len(expected_mp4) > 2 * SENDFILE_PART
        status, _, mp4 = server.get(f"/replays/{broadcast}.mp4")
        assert status == 200 and mp4 == expected_mp4
        last = len(expected_mp4) - 1000
        status, _, part = server.get(
            f"/replays/{broadcast}.mp4", headers={"Range": f"bytes=1000-{last}"}
        )
        assert status == 206 and part == expected_mp4[1000 : last + 1]
    finally:
        code = server.stop()
    assert code == 0
    assert len(ended.segments) >= 1
    loops = re.findall(r"server_started .*event_loop=(\w+)", server.log())
    assert loops == [expected]
    # Once started, the server takes what start-up made out of the garbage collector's way.
    settled = re.findall(r"collector_settled frozen=(\d+) young_threshold=(\d+)", server.log())
    assert len(settled) == 1 and int(settled[0][0]) > 10_000 and settled[0][1] == "7000"
    assert "Traceback" not in server.log()
