"""scripts/setup.sh on a checkout whose first try failed: the half-made .venv is made again."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # a pip install of the project


def test_a_half_made_venv_is_repaired(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".venv", ".git", "test-artifacts", "data", "__pycache__"),
        symlinks=True,
    )
    broken = checkout / ".venv"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "python").write_text("#!/bin/sh\nexit 1\n")  # a venv cut off midway
    (broken / "bin" / "python").chmod(0o755)
    result = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=checkout,
        # The interpreter this venv was made from, as a fresh checkout's setup would use.
        env={**os.environ, "PYTHON": sys._base_executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "making it again" in result.stderr
    check = subprocess.run(
        [str(checkout / ".venv" / "bin" / "periscope-ingest"), "--version"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.strip()
