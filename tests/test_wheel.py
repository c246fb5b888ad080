"""`pip install .` alone gives pages that play: the wheel carries the pinned hls.js (setup.py's
build step), and without the npm registry it is still built, saying what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from periscope_ingest.web import hlsjs

ROOT = Path(__file__).resolve().parents[1]
VENDOR = "periscope_ingest/web/static/vendor/"
CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens, refused at once


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def build_requirements(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build backend as wheels on disk, so that a build needs no package index."""
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
         "--dest", str(wheelhouse), "setuptools>=77"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if download.returncode != 0:
        pytest.skip(f"the package index is not reachable for the build backend: {download.stderr}")
    return wheelhouse


def build_wheel(tmp_path: Path, wheelhouse: Path, **env: str) -> tuple[Path, str]:
    """A wheel of a clean checkout (no hls.js in the tree, as git gives it), and pip's output."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "periscope_ingest",
        source / "periscope_ingest",
        ignore=shutil.ignore_patterns("vendor", "__pycache__"),
    )
    environment = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    environment.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse), **env)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(source)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = tmp_path.glob("periscope_ingest-*.whl")
    return wheel, result.stdout + result.stderr


def test_the_wheel_carries_the_pinned_hls_js(tmp_path: Path, build_requirements: Path) -> None:
    if not reachable(hlsjs.HLSJS_TARBALL):
        pytest.skip(f"the npm registry is not reachable from here ({hlsjs.HLSJS_TARBALL})")
    wheel, _ = build_wheel(tmp_path, build_requirements)
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(VENDOR + "hls.js-VERSION").decode() == f"{hlsjs.HLSJS_VERSION}\n"
        script = archive.read(VENDOR + hlsjs.SCRIPT_NAME)
    assert len(script) > 100_000 and b"Hls" in script  # the hash was checked when fetched


def test_offline_the_wheel_is_built_without_hls_js_and_says_so(
    tmp_path: Path, build_requirements: Path
) -> None:
    wheel, output = build_wheel(
        tmp_path, build_requirements, https_proxy=CLOSED_PORT_PROXY, HTTPS_PROXY=CLOSED_PORT_PROXY
    )
    with zipfile.ZipFile(wheel) as archive:
        assert not [name for name in archive.namelist() if name.startswith(VENDOR)]
    assert f"building without hls.js (cannot download {hlsjs.HLSJS_TARBALL}" in output
    assert f"until '{hlsjs.FETCH_COMMAND}' is run" in output
