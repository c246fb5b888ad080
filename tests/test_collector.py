"""collector.settle_collector, each case in a fresh interpreter (the collector is process-wide),
and its setting. That the server settles it once started: tests/e2e/test_event_loop.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from periscope_ingest.config import Settings

PROBE = """
import gc, sys
from periscope_ingest.collector import settle_collector
before = gc.get_threshold()
frozen = settle_collector(int(sys.argv[1]))
print(frozen == gc.get_freeze_count(), frozen > 1000, *gc.get_threshold())
garbage = []
garbage.append(garbage)  # a cycle made after start is still collected
del garbage
print(gc.collect())
print(before == (700, 10, 10))
"""


def _run(threshold: int) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(threshold)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def test_settled_freezes_start_up_and_collects_the_young_less_often() -> None:
    reported, frozen, young, middle, old, collected, defaults = _run(7000)
    assert defaults == "True"
    assert (reported, frozen, young, middle, old) == ("True", "True", "7000", "10", "10")
    assert int(collected) >= 1


def test_zero_leaves_the_collector_alone() -> None:
    reported, frozen, young, middle, old, collected, _ = _run(0)
    assert (reported, frozen, young, middle, old) == ("True", "False", "700", "10", "10")
    assert int(collected) >= 1


def test_the_setting_is_on_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().memory.gc_threshold == 7000
    monkeypatch.setenv("PERISCOPE_MEMORY__GC_THRESHOLD", "0")
    assert Settings().memory.gc_threshold == 0
