"""What recovery reads after a power cut must be on the disk before its new name is.

A rename can reach the file system's journal before the data of the renamed file does: after a
power cut the name then points at an empty file. For broadcast.json and the recording playlist
that loses the whole recording, so the server syncs a file before the rename that publishes it,
and the directory after. The live playlist is the exception while the broadcast goes on: its
fsyncs would be listing delay, and recovery removes one left empty; its last version (ENDLIST)
is synced. Checked on the real server's system calls (strace).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ARTIFACTS, require
from tests.e2e.pushers import push_pyav
from tests.e2e.server import ServerProcess
from tests.e2e.test_live_push import playlist

pytestmark = pytest.mark.e2e

CALL = re.compile(r"^\d+\s+(fsync|rename)\((.*)\)\s+= 0$")
PATH = re.compile(r'<([^>]*)>|"([^"]*)"')
UNFINISHED = " <unfinished ...>"
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$")


def whole_calls(lines: list[str]) -> list[str]:
    """strace's lines with each call whole: a call another thread interrupted is printed as
    "PID call(args <unfinished ...>" and later "PID <... call resumed>rest"; joined here."""
    pending: dict[str, str] = {}
    calls = []
    for line in lines:
        if line.endswith(UNFINISHED):
            pending[line.split()[0]] = line.removesuffix(UNFINISHED)
        elif (resumed := RESUMED.match(line)) is not None and resumed.group(1) in pending:
            calls.append(pending.pop(resumed.group(1)) + resumed.group(2))
        else:
            calls.append(line)
    return calls


def test_playlists_and_records_are_synced_before_they_are_published(tmp_path: Path) -> None:
    require("strace")
    trace = tmp_path / "strace.txt"
    ARTIFACTS.mkdir(exist_ok=True)
    server = ServerProcess(tmp_path / "data", ARTIFACTS / "server-durability.log")
    server.start()
    assert server.process is not None
    # Attached to the running server (every thread, -f); -y names each descriptor's file; only
    # the calls that matter, filtered in the kernel.
    tracer = subprocess.Popen(
        [
            *("strace", "-f", "-y", "--seccomp-bpf", "-e", "trace=fsync,rename"),
            *("-o", str(trace), "-p", str(server.process.pid)),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tracer.stderr is not None
        deadline = time.monotonic() + 10
        while "attached" not in tracer.stderr.readline() and time.monotonic() < deadline:
            pass
        push_pyav(server.rtmp_url("synced"), 5, realtime=False)
        server.wait_for(lambda: (p := playlist(server, "synced")) and p.ended, 20)
    finally:
        server.stop()
        tracer.wait(20)
    synced: set[str] = set()  # files fsynced so far
    awaiting_directory_sync: dict[str, str] = {}  # thread -> directory of its last publish
    published: dict[str, int] = {}
    live_synced: list[bool] = []  # each publish of the live playlist: was it synced first?
    for line in whole_calls(trace.read_text().splitlines()):
        match = CALL.match(line)
        if match is None:
            continue
        thread, call = line.split()[0], match.group(1)
        paths = [a or b for a, b in PATH.findall(match.group(2))]
        if thread in awaiting_directory_sync:
            # The rename itself must be durable before the writer goes on.
            directory = awaiting_directory_sync.pop(thread)
            assert (call, paths) == ("fsync", [directory]), f"no directory sync after: {line}"
        if call == "fsync":
            synced.update(paths)
            continue
        source, target = paths
        name = Path(target).name
        if name == "index.m3u8":
            live_synced.append(source in synced)
            if source in synced:
                awaiting_directory_sync[thread] = str(Path(target).parent)
            continue
        if name in {"broadcast.json", "recording.m3u8", "master.m3u8"}:
            assert source in synced, f"{target} published before its data was synced"
            published[name] = published.get(name, 0) + 1
            awaiting_directory_sync[thread] = str(Path(target).parent)
    assert published.keys() >= {"broadcast.json", "recording.m3u8"}, published
    # Listing a segment waits for no fsync; the ended playlist is durable.
    assert len(live_synced) >= 2, live_synced
    assert not any(live_synced[:-1]), live_synced
    assert live_synced[-1], live_synced
