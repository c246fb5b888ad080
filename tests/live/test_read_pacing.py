"""rtmp.read_interval_ms: a publisher's connection is read a few frames at a time once its
first segment is listed, losing nothing.

A real `ffmpeg -re` push (one write per frame, about 77 a second with audio) into a server in
this process; the session's read count and the recorded media are compared with and without
the pacing.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import pytest

from periscope_ingest.live.read_pacing import read_interval_s
from periscope_ingest.service import Service
from tests.e2e.conftest import require
from tests.e2e.hls_check import parse_media_playlist
from tests.in_process import local_settings

pytestmark = pytest.mark.e2e  # an ffmpeg -re push

SECONDS = 6  # of the source_flv fixture (tests/conftest.py)


async def push_and_count(
    tmp_path: Path, source: Path, interval_ms: int, pacing: str = "lowat"
) -> tuple[int, str, int]:
    """Reads of the publisher's connection while it pushed, the recording playlist, and the
    highest low-water mark its socket had."""
    require("ffmpeg")
    settings = local_settings(
        tmp_path / f"d{interval_ms}{pacing}",
        rtmp={"read_interval_ms": interval_ms, "read_pacing": pacing},
    )
    service = Service(settings)
    await service.start()
    assert service.rtmp is not None
    try:
        pusher = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(source),
            "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{service.rtmp.port}/live/paced",
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        reads = mark = 0
        while pusher.returncode is None:  # the session is gone once ffmpeg closes it
            reads = max([reads, *(s.reads for s in service.rtmp.sessions)])
            for session in service.rtmp.sessions:
                if (low_water := service.rtmp.pacer.low_water(session)) is not None:
                    mark = max(mark, low_water.mark)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pusher.wait(), 0.05)
        assert pusher.returncode == 0
        record = None
        deadline = time.monotonic() + 15
        while record is None or record.status == "live":
            assert time.monotonic() < deadline, "the broadcast did not end"
            await asyncio.sleep(0.05)
            assert service.catalog is not None
            record = next(iter(service.catalog.all()), None)
        layout = service.layout
        playlist = layout.recording_playlist(record.channel, record.id).read_text()
        return reads, playlist, mark
    finally:
        await service.stop()


async def test_paced_reads_are_fewer_and_record_the_same_media(
    tmp_path: Path, source_flv: Path
) -> None:
    # One unpaced push to compare both ways of pacing with (each push takes SECONDS).
    immediate_reads, immediate, _ = await push_and_count(tmp_path, source_flv, 0)
    assert immediate_reads > 60 * SECONDS, immediate_reads
    before = [
        (s.uri.rsplit("/", 1)[-1], s.duration) for s in parse_media_playlist(immediate).segments
    ]
    assert len(before) >= SECONDS // 2
    for pacing in ("lowat", "pause"):
        paced_reads, paced, mark = await push_and_count(tmp_path, source_flv, 100, pacing)
        # The kernel was asked to hold reads back (lowat), or never (pause).
        assert (mark > 1000) if pacing == "lowat" else mark == 0, (pacing, mark)
        # ffmpeg -re writes about 77 times a second. Paced, the connection is read at once
        # until the first segment is listed (about 2 s in), then, paused, at most 10 times a
        # second; by the low-water mark, about once per 3/4 of a tick's bytes, plus the read
        # after a tick too quiet to reach the mark (this test stream is a bursty 20 KB/s); and
        # at once for one interval before each later cut (live/next_cut.py: about 8 reads each).
        per_second = 12 if pacing == "pause" else 25
        bound = 80 * 2.5 + per_second * (SECONDS - 2) + 8 * (SECONDS // 2) + 20
        assert paced_reads < bound, (pacing, paced_reads)
        assert paced_reads < 0.6 * immediate_reads, (pacing, paced_reads)
        # Nothing lost: the same segments with the same durations.
        after = [
            (s.uri.rsplit("/", 1)[-1], s.duration) for s in parse_media_playlist(paced).segments
        ]
        assert before == after, pacing


def test_low_latency_reads_at_least_four_times_a_part(tmp_path: Path) -> None:
    plain = local_settings(tmp_path / "plain")
    assert read_interval_s(plain) == 0.1  # the default
    ll_hls = {"segment_format": "fmp4", "low_latency": True, "part_duration": 0.2}
    assert read_interval_s(local_settings(tmp_path / "ll", hls=ll_hls)) == 0.05
    ll_hls["part_duration"] = 1.0  # parts longer than four intervals: the setting's
    assert read_interval_s(local_settings(tmp_path / "ll1", hls=ll_hls)) == 0.1
    unpaced = local_settings(tmp_path / "u", rtmp={"read_interval_ms": 0}, hls=ll_hls)
    assert read_interval_s(unpaced) == 0
