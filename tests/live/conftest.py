"""Fixtures shared by the tests of live/: the FLV source most of them feed the pipeline from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.pushers import push_pyav


@pytest.fixture(scope="module")
def source_flv(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """An FLV file of the module's SECONDS of H.264 + AAC, written by a real encoder (PyAV)
    faster than real time: once per module, since encoding takes most of a test's time."""
    path = tmp_path_factory.mktemp("flv") / "source.flv"
    push_pyav(str(path), request.module.SECONDS, realtime=False)
    return path
