"""The sunset phase as every HTTP request asks for it (cached until the next dated change)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from periscope_ingest.config_sections import SunsetSettings
from periscope_ingest.sunset import Lifecycle, Phase


def test_a_dated_change_takes_effect_at_its_date_although_the_phase_is_cached(
    tmp_path: Path,
) -> None:
    closes_at = datetime.now(UTC) + timedelta(seconds=0.5)
    lifecycle = Lifecycle(SunsetSettings(registrations_close_at=closes_at), tmp_path / "phase")
    assert lifecycle.phase() is Phase.OPEN
    assert lifecycle.phase() is Phase.OPEN  # from the cache
    deadline = time.monotonic() + 5
    while lifecycle.phase() is Phase.OPEN and time.monotonic() < deadline:
        time.sleep(0.01)
    assert datetime.now(UTC) >= closes_at
    assert lifecycle.phase() is Phase.REGISTRATIONS_CLOSED
    assert datetime.now(UTC) - closes_at < timedelta(seconds=1)


def test_moving_on_by_hand_is_seen_at_once(tmp_path: Path) -> None:
    lifecycle = Lifecycle(SunsetSettings(), tmp_path / "phase")
    assert lifecycle.phase() is Phase.OPEN
    lifecycle.advance(Phase.BROADCASTS_CLOSED)
    assert lifecycle.phase() is Phase.BROADCASTS_CLOSED
    # Earlier dates still count: the later of the two wins.
    past = datetime.now(UTC) - timedelta(days=1)
    dated = Lifecycle(SunsetSettings(shutdown_at=past), tmp_path / "other")
    assert dated.phase() is Phase.SHUTDOWN
