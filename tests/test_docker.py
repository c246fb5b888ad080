"""The container, checked without a Docker engine (none runs on the test machines): the
Dockerfile's structure, and the health command it uses against a real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    copies = [i for i, (op, arg) in enumerate(steps) if op == "COPY"]
    first_install = next(i for i, (op, arg) in enumerate(steps) if "pip install" in arg)
    assert steps[copies[0]][1].split()[0] == "pyproject.toml"
    assert (
        copies[0]
        < first_install
        < next(i for i, (op, arg) in enumerate(steps) if op == "COPY" and "periscope_ingest" in arg)
    )


def test_a_fixed_user_a_long_stop_and_a_health_check_from_the_settings() -> None:
    steps = dict(instructions())
    assert steps["USER"] == "10001:10001"
    assert "periscope-ingest" in steps["HEALTHCHECK"] and "health" in steps["HEALTHCHECK"]
    readme = (ROOT / "README.md").read_text()
    assert "chown 10001:10001" in readme and "docker stop -t 30" in readme


def test_dockerignore_keeps_data_and_the_venv_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"data", ".venv", "test-artifacts", ".git"} <= set(ignored)


@pytest.mark.e2e  # a real server
def test_the_health_command_reads_the_port_from_the_settings(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        env = {**server.env}
        ok = subprocess.run([sys.executable, "-m", "periscope_ingest", "health"], env=env)
        assert ok.returncode == 0
    finally:
        server.stop()
    down = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "health"], env=env, capture_output=True
    )
    assert down.returncode == 1 and b"no server answers" in down.stderr
