"""What `-m "not e2e"` promises: a fast subset that needs nothing beyond the venv and starts no
encoder, server or browser.

A test is marked e2e (a module's ``pytestmark``) when it starts ffmpeg, ffprobe, GStreamer,
nginx, Caddy, chromium or strace, runs the server as a process, or pushes over RTMP. The fast
subset keeps what runs inside the test's process (parsers, the pipeline fed from a small FLV
file written with PyAV, in-process HTTP and RTMP on loopback) and quick command-line runs that
exit by themselves: `--help`, `config show`, and a `serve` that refuses to start.

The guard below makes the promise hold for tests added later: a test without the mark that does
one of those things fails, naming what it started.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import av
import pytest

from tests.e2e.pushers import push_pyav
from tests.scheduling import normal_scheduling

EXTERNAL_PROGRAMS = {
    "ffmpeg", "ffprobe", "ffplay", "gst-launch-1.0", "nginx", "caddy", "chromium", "chromedriver",
    "strace", "initdb", "postgres", "pg_ctl",
}  # fmt: skip
# The exit codes of a `serve` that refused to start (cli.main): a usage error, or a failed start.
REFUSED_TO_START = {1, 2}


def command_words(args) -> list[str]:
    return [str(word) for word in args] if isinstance(args, list | tuple) else str(args).split()


def runs_the_server(words: list[str]) -> bool:
    """`python -m periscope_ingest serve ...` or `periscope-ingest serve ...`, but not its help."""
    if "serve" not in words or "--help" in words or "-h" in words:
        return False
    return "periscope_ingest" in words or Path(words[0]).name == "periscope-ingest"


@pytest.fixture(autouse=True)
def _fast_tests_start_no_encoder_server_or_browser(request, monkeypatch):
    if request.node.get_closest_marker("e2e") is not None:
        yield
        return
    name = request.node.nodeid
    real_init = subprocess.Popen.__init__
    servers: list[subprocess.Popen] = []

    def guarded_init(self, args, *more, **options):
        words = command_words(args)
        program = Path(words[0]).name if words else ""
        if program in EXTERNAL_PROGRAMS:
            pytest.fail(f"{name} starts {program}: mark it e2e", pytrace=False)
        real_init(self, args, *more, **options)
        if runs_the_server(words):
            servers.append(self)

    real_open = av.open

    def guarded_open(file, *more, **options):
        if str(file).lower().startswith(("rtmp://", "rtmps://")):
            pytest.fail(f"{name} pushes over RTMP with PyAV: mark it e2e", pytrace=False)
        return real_open(file, *more, **options)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    monkeypatch.setattr(av, "open", guarded_open)
    yield
    for server in servers:
        code = server.poll()
        if code not in REFUSED_TO_START:
            if code is None:
                server.kill()
                server.wait()
            pytest.fail(
                f"{name} ran the server as a process (exit {code}; a fast test may only see"
                f" `serve` refuse to start, exit 1 or 2): mark it e2e",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL for the session (tests/postgres_server.py); each test takes a database of
    its own from it (postgres_url). Tests that use it are e2e: it is a real server process."""
    from tests.postgres_server import PostgresServer, postgres_bin

    if postgres_bin() is None:
        reason = "PostgreSQL is not installed: run scripts/install-test-tools.sh"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """postgresql://... of a new, empty database."""
    return postgres_server.create_database()


@pytest.fixture(scope="module")
def source_flv(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """An FLV file of the module's SECONDS of H.264 + AAC, written by a real encoder (PyAV)
    faster than real time: once per module, since encoding takes most of a test's time."""
    path = tmp_path_factory.mktemp("flv") / "source.flv"
    push_pyav(str(path), request.module.SECONDS, realtime=False)
    return path


@pytest.fixture(autouse=True)
def _normal_scheduling_after_each_test():
    """A test that encoded AV1 leaves the worker real-time (tests/scheduling.py): undo it
    before the next test starts servers, encoders or a browser from this process."""
    yield
    normal_scheduling()
