"""/metrics scraped during a real push: the counters move by the right amounts."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.conftest import require
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist
from tests.flv_file import read_tags

pytestmark = pytest.mark.e2e
SECONDS = 8  # of the pushed source (source_flv)


def scrape(server: ServerProcess) -> dict[str, float]:
    status, headers, body = server.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_counters_follow_a_real_push(source_flv: Path, server: ServerProcess) -> None:
    require("ffmpeg")
    source = source_flv
    sent = sum(len(body) for kind, _, body in read_tags(source) if kind in (8, 9))
    messages = sum(1 for kind, _, _ in read_tags(source) if kind in (8, 9))
    pusher = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(source), "-c", "copy",
         "-f", "flv", server.rtmp_url("metered")],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    watcher = threading.Thread(target=pusher.wait, daemon=True)
    watcher.start()
    try:
        server.wait_for(lambda: (p := playlist(server, "metered")) and p.segments, 15)
        during = scrape(server)
        assert during["periscope_publishers"] == 1
        assert during["periscope_live_streams"] == 1
        assert during["periscope_rtmp_connections"] == 1
        assert during['periscope_viewers{channel="metered"}'] == 1  # our own playlist polling
        assert during['periscope_ingest_bytes_total{channel="metered"}'] > 0
        status = subprocess.run(
            [sys.executable, "-m", "periscope_ingest", "status"],
            env=server.env, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        (line,) = [x for x in status.stdout.splitlines() if x.startswith("metered")]
        assert "640x360" in line and line.split()[-1] == "1"  # one viewer: this test
    finally:
        watcher.join(30)
    assert pusher.returncode == 0, pusher.stderr.read() if pusher.stderr else ""
    ended = server.wait_for(lambda: (p := playlist(server, "metered")) and p.ended and p, 10)
    # The ended playlist is published a moment before the broadcast's record is closed and its
    # per-channel series are dropped (on the event loop): wait for that, bounded.
    series = 'periscope_ingest_bytes_total{channel="metered"}'
    after = server.wait_for(lambda: (m := scrape(server)) and series not in m and m, 10)
    assert after["periscope_segments_written_total"] == len(ended.segments)
    assert after["periscope_segment_write_seconds_count"] == len(ended.segments)
    assert after["periscope_listing_delay_seconds_count"] == len(ended.segments)
    assert after["periscope_publishers"] == 0
    # What the client sent, within 5 %, counted over all channels (this one was alone).
    assert abs(after["periscope_ingest_all_bytes_total"] - sent) <= 0.05 * sent
    assert abs(after["periscope_ingest_all_messages_total"] - messages) <= 0.05 * messages
    text = server.get("/metrics")[2].decode()
    assert not re.search(r"127\.0\.0\.1", text)
    assert re.search(
        r'periscope_http_requests_total\{route="/live/\{channel\}/index.m3u8",status="200"\} [1-9]',
        text,
    )
