"""Logs off a terminal are JSON lines with the event's fields, and never carry a secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e


def test_json_lines_with_event_fields(tmp_path: Path) -> None:
    log = ARTIFACTS / "server-json-logs.log"
    log.unlink(missing_ok=True)
    server = ServerProcess(tmp_path / "data", log, PERISCOPE_LOG_FORMAT="auto")
    server.start()
    try:
        push_pyav(server.rtmp_url("jsonlog"), 3, realtime=False)
        server.wait_for(lambda: (p := playlist(server, "jsonlog")) and p.ended, 10)
    finally:
        server.stop()
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert entries and all({"time", "level", "logger"} <= set(e) for e in entries)
    started = next(e for e in entries if e.get("event") == "publish_started")
    assert started["channel"] == "jsonlog" and started["client"].startswith("127.0.0.1:")
    assert len(started["broadcast"]) == 12
    segment = next(e for e in entries if e.get("event") == "segment_published")
    assert isinstance(segment["duration_ms"], int) and segment["size"] > 0
