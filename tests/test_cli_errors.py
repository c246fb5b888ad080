"""Honest errors: one line naming the path and the reason, exit code 2, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from periscope_ingest.media.export import ExportError, export_mp4
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "periscope_ingest", *args],
        env={**os.environ, "PERISCOPE_HTTP_PORT": "0", "PERISCOPE_RTMP_PORT": "0", **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def a_file(path: Path) -> Path:
    path.write_text("")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp: a_file(tmp / "file"), "is a file, not a directory"),
        (lambda tmp: tmp / "missing" / "data", "cannot be created: {tmp}/missing does not exist"),
        (lambda tmp: a_file(tmp / "f") / "data", "{tmp}/f does not exist"),
    ],
)
def test_an_unusable_data_dir_stops_serve_with_one_line(tmp_path: Path, make, reason) -> None:
    data_dir = make(tmp_path)
    result = run("serve", PERISCOPE_DATA_DIR=str(data_dir))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"periscope-ingest: data directory {data_dir} ")
    assert reason.format(tmp=tmp_path) in result.stderr


def test_a_busy_rtmp_port_stops_serve_with_one_line_and_nothing_left_open(tmp_path: Path) -> None:
    # With a publish callback set too: its HTTP client must not be left open (an "Unclosed
    # client session" error after the line).
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = run(
            "serve",
            PERISCOPE_HOST="127.0.0.1",
            PERISCOPE_RTMP_PORT=str(port),
            PERISCOPE_DATA_DIR=str(tmp_path / "data"),
            PERISCOPE_AUTH__PUBLISH_URL="http://127.0.0.1:9/on_publish",
            PERISCOPE_LOG_LEVEL="ERROR",
        )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        f"periscope-ingest: cannot listen for RTMP on 127.0.0.1:{port}:"
    )


def test_export_into_a_missing_directory_names_it(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "talk.mp4"
    result = run("export", "abc123", "-o", str(target), PERISCOPE_DATA_DIR=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == (
        f"periscope-ingest: cannot write {target}: directory {target.parent} does not exist\n"
    )


def test_an_id_that_begins_with_a_dash_is_looked_up_when_given_after_double_dash(
    tmp_path: Path,
) -> None:
    """Ids that begin with '-' (new ones no longer do) stay reachable, the Unix way."""
    data = {"PERISCOPE_DATA_DIR": str(tmp_path)}
    Catalog(DataLayout(tmp_path).catalog_path).close()  # an empty catalog
    output = str(tmp_path / "x.mp4")
    result = run("export", "-o", output, "-2Ns9pIRsGW5", **data)
    assert result.returncode == 2 and "unrecognized arguments: -2Ns9pIRsGW5" in result.stderr
    result = run("export", "-o", output, "--", "-2Ns9pIRsGW5", **data)
    assert (result.returncode, result.stderr) == (
        1,
        "periscope-ingest: no broadcast -2Ns9pIRsGW5\n",
    )


def test_ffmpeg_errors_are_told_in_words_not_numbers(tmp_path: Path) -> None:
    broken = tmp_path / "000001.ts"
    broken.write_bytes(b"not a transport stream" * 100)
    with pytest.raises(ExportError) as caught:
        export_mp4([broken], tmp_path / "out.mp4")
    message = str(caught.value)
    assert "Errno" not in message
    assert message.startswith(f"cannot read segment {broken}: ")


def test_an_unreachable_database_stops_serve_with_one_line_naming_the_host(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    # Nothing listens on that port now: the connection is refused at once.
    result = run(
        "serve",
        PERISCOPE_DATA_DIR=str(tmp_path / "data"),
        PERISCOPE_CATALOG__URL=f"postgresql://periscope:hunter2-secret@127.0.0.1:{port}/catalog",
        PERISCOPE_LOG_LEVEL="ERROR",
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"periscope-ingest: cannot reach the database at 127.0.0.1:{port}/catalog: "
    )
    assert "refused" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_an_unreachable_database_stops_the_cli_commands_with_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    url = f"postgresql://periscope:hunter2-secret@127.0.0.1:{port}/catalog"
    for command in (("accounts", "list"), ("broadcasts", "list"), ("export", "x", "-o", "y")):
        result = run(
            *command, PERISCOPE_DATA_DIR=str(tmp_path / "data"), PERISCOPE_CATALOG__URL=url
        )
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"cannot reach the database at 127.0.0.1:{port}/catalog" in result.stderr
        assert "hunter2" not in result.stderr
