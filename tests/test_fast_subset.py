"""The guard behind `-m "not e2e"` (tests/conftest.py): an unmarked test that starts an encoder,
pushes over RTMP or runs the server as a process fails, naming it; a quick command-line run
that exits by itself, and the same things under the mark, pass. Checked by running pytest on
small test files with the guard loaded as a plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAST_CASES = """
import subprocess, sys
import pytest
from tests.e2e.pushers import push_pyav

def test_starts_ffmpeg():
    subprocess.run(["ffmpeg", "-version"], capture_output=True)

def test_starts_gstreamer_from_asyncio():
    import asyncio
    async def start():
        await asyncio.create_subprocess_exec("/usr/bin/gst-launch-1.0", "fakesrc")
    asyncio.run(start())

def test_pushes_over_rtmp():
    push_pyav("rtmp://127.0.0.1:9/live/key", 0.1, realtime=False)

def test_writes_an_flv_file(tmp_path):
    push_pyav(str(tmp_path / "a.flv"), 0.1, realtime=False)

def test_sees_serve_refuse_to_start(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        env={"PERISCOPE_DATA_DIR": str(tmp_path / "missing" / "data"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    assert result.returncode == 2

def test_reads_the_help():
    subprocess.run([sys.executable, "-m", "periscope_ingest", "serve", "--help"], check=True,
                   capture_output=True)
"""

SERVER_CASES = """
import pytest
from tests.e2e.server import ServerProcess

def run_a_server(tmp_path):
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    server.stop()

def test_runs_the_server(tmp_path):
    run_a_server(tmp_path)

@pytest.mark.e2e
def test_runs_the_server_marked(tmp_path):
    run_a_server(tmp_path)
"""


def outcomes(tmp_path: Path, source: str) -> dict[str, str]:
    """Each test's outcome ("passed", or "failed: ..."/"error: ..." with the message)."""
    module = tmp_path / "test_cases.py"
    module.write_text(source)
    report = tmp_path / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
         "--rootdir", str(tmp_path), f"--junitxml={report}", str(module)],
        cwd=ROOT, capture_output=True, timeout=120,
    )  # fmt: skip
    seen = {}
    for case in ElementTree.parse(report).iter("testcase"):
        results = [f"{r.tag}: {r.get('message')}" for r in case if r.tag in ("failure", "error")]
        seen[case.get("name")] = " ".join(results) or "passed"
    return seen


def test_unmarked_tests_that_start_encoders_or_push_fail_and_quick_ones_pass(
    tmp_path: Path,
) -> None:
    seen = outcomes(tmp_path, FAST_CASES)
    assert "starts ffmpeg: mark it e2e" in seen["test_starts_ffmpeg"]
    assert "starts gst-launch-1.0: mark it e2e" in seen["test_starts_gstreamer_from_asyncio"]
    assert "pushes over RTMP with PyAV: mark it e2e" in seen["test_pushes_over_rtmp"]
    for quick in (
        "test_writes_an_flv_file",
        "test_sees_serve_refuse_to_start",
        "test_reads_the_help",
    ):
        assert seen[quick] == "passed", seen[quick]


@pytest.mark.e2e  # it runs the server twice
def test_an_unmarked_test_that_runs_the_server_fails(tmp_path: Path) -> None:
    seen = outcomes(tmp_path, SERVER_CASES)
    assert "ran the server as a process (exit 0" in seen["test_runs_the_server"]
    assert "mark it e2e" in seen["test_runs_the_server"]
    assert seen["test_runs_the_server_marked"] == "passed"
