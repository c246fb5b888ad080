"""The pinned hls.js: checked against its hash before it is installed; missing, it is said."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from periscope_ingest.web import hlsjs


def tarball(script: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in (("package/dist/hls.min.js", script), ("package/LICENSE", b"MIT")):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def test_a_tarball_that_is_not_the_pinned_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(hlsjs.HlsJsError, match="does not match its published integrity hash"):
        hlsjs.install_from_tarball(tarball(b"alert('not hls.js')"), tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_pinned_release_installs(tmp_path: Path) -> None:
    """Against the real registry (what setup.sh and the Dockerfile do)."""
    try:
        hlsjs.fetch(tmp_path, timeout=30)
    except hlsjs.HlsJsError as exc:
        if "cannot download" in str(exc):
            pytest.skip(f"the npm registry is not reachable from here: {exc}")
        raise
    assert (tmp_path / "hls.js-VERSION").read_text() == f"{hlsjs.HLSJS_VERSION}\n"
    assert b"Hls" in (tmp_path / "hls.min.js").read_bytes()  # the hash was checked; a sanity look


@pytest.mark.e2e  # a real server
def test_the_server_says_when_hls_js_is_missing(tmp_path: Path) -> None:
    """A `pip install .` without the fetch: the start names the file and the command."""
    package = tmp_path / "periscope_ingest"
    source = Path(hlsjs.__file__).resolve().parents[1]
    # The package as `pip install .` alone leaves it: no static/vendor.
    shutil.copytree(source, package, ignore=shutil.ignore_patterns("vendor", "__pycache__"))
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "PERISCOPE_DATA_DIR": str(tmp_path / "data"),
        "PERISCOPE_HTTP_PORT": "0",
        "PERISCOPE_RTMP_PORT": "0",
        "PERISCOPE_HOST": "127.0.0.1",
        "PERISCOPE_LOG_FORMAT": "text",
        "PERISCOPE_OPEN_PUBLISH": "true",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "server_started" not in line:
            line = server.stderr.readline()
            assert line, "the server stopped"
            if "hls_js_missing" in line:
                break
    finally:
        server.terminate()
        server.wait(20)
    assert "hls_js_missing" in line
    assert f"path={package / 'web' / 'static' / 'vendor' / 'hls.min.js'}" in line
    assert 'fix="periscope-ingest fetch-hlsjs"' in line
