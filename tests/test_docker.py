"""The container, checked without a Docker engine (none runs on the test machines): the
Dockerfile's structure, and the health command it uses against a real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from periscope_ingest.config import load_settings
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


def dockerignore() -> set[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


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


def test_the_package_is_built_from_everything_its_build_reads_with_the_pinned_hls_js() -> None:
    """setup.py (the step that packs hls.js into the wheel), pyproject.toml and the README are in
    the image before `pip install .`; then the pinned hls.js is fetched by the same command."""
    steps = instructions()
    install = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and "install" in arg
                   and arg.split("&&")[0].split()[-1] == ".")  # fmt: skip
    copied = {source for op, arg in steps[:install] if op == "COPY" for source in arg.split()[:-1]}
    assert {"pyproject.toml", "setup.py", "README.md", "periscope_ingest"} <= copied
    assert "periscope-ingest fetch-hlsjs" in steps[install][1]
    assert not copied & dockerignore()


def test_a_fixed_user_a_long_stop_and_a_health_check_from_the_settings() -> None:
    steps = dict(instructions())
    assert steps["USER"] == "10001:10001"
    assert "periscope-ingest" in steps["HEALTHCHECK"] and "health" in steps["HEALTHCHECK"]
    readme = (ROOT / "README.md").read_text()
    assert "chown 10001:10001" in readme
    grace = re.search(r"docker stop -t (\d+)", readme)
    assert grace and int(grace.group(1)) > load_settings().shutdown_timeout


def test_dockerignore_keeps_data_and_the_venv_out() -> None:
    assert {"data", ".venv", "test-artifacts", ".git"} <= dockerignore()


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
