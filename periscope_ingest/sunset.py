"""The sunset lifecycle: open, registrations closed, broadcasts closed, shut down.

Each phase starts at its date in the settings, or earlier when the operator moves on by hand
(the admin API); the service is always in the later of the two. Phases only move forward.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

from periscope_ingest.config_sections import SunsetSettings
from periscope_ingest.storage.atomic import write_atomic


class Phase(IntEnum):
    OPEN = 0
    REGISTRATIONS_CLOSED = 1
    BROADCASTS_CLOSED = 2
    SHUTDOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Phase:
        try:
            return cls[label.upper()]
        except KeyError:
            names = ", ".join(p.label for p in cls)
            raise ValueError(f"unknown phase {label!r}: one of {names}") from None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Lifecycle:
    def __init__(self, settings: SunsetSettings, state_file: Path) -> None:
        self._settings = settings
        self._state_file = state_file
        self._lock = threading.Lock()
        self._manual = Phase.OPEN
        # (phase, valid until): a POSIX time, so that the check on every request is one float
        # comparison (inf: no dated change ahead)
        self._cached: tuple[Phase, float] | None = None
        # No file (or an unreadable one) means nobody moved the phase on by hand.
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            self._manual = Phase.from_label(json.loads(state_file.read_text())["phase"])

    def _dates(self) -> list[tuple[Phase, datetime | None]]:
        s = self._settings
        return [
            (Phase.REGISTRATIONS_CLOSED, s.registrations_close_at),
            (Phase.BROADCASTS_CLOSED, s.broadcasts_close_at),
            (Phase.SHUTDOWN, s.shutdown_at),
        ]

    def phase(self, now: datetime | None = None) -> Phase:
        if now is None:
            # Asked on every HTTP request: the answer holds until the next dated change.
            cached = self._cached
            if cached is not None and time.time() < cached[1]:
                return cached[0]
            now = datetime.now(UTC)
            phase = self._phase_at(now)
            change = self.next_change(now)
            self._cached = (phase, math.inf if change is None else change.timestamp())
            return phase
        return self._phase_at(now)

    def _phase_at(self, now: datetime) -> Phase:
        dated = max(
            (phase for phase, at in self._dates() if at is not None and at <= now),
            default=Phase.OPEN,
        )
        return max(dated, self._manual)

    def next_change(self, now: datetime | None = None) -> datetime | None:
        """When the phase moves on by date next (None: no dated change ahead)."""
        now = now or datetime.now(UTC)
        current = self.phase(now)
        ahead = [
            at for phase, at in self._dates() if at is not None and at > now and phase > current
        ]
        return min(ahead, default=None)

    def advance(self, to: Phase) -> Phase:
        """Move on by hand (never back: a closed service does not reopen by accident)."""
        with self._lock:
            if to < self.phase():
                raise ValueError(
                    f"the service is already {self.phase().label}; phases only move on"
                )
            self._manual = to
            self._cached = None
            write_atomic(self._state_file, json.dumps({"phase": to.label}).encode())
        return self.phase()

    def describe(self) -> dict:
        phase = self.phase()
        s = self._settings
        return {
            "phase": phase.label,
            "registrations_close_at": _iso(s.registrations_close_at),
            "broadcasts_close_at": _iso(s.broadcasts_close_at),
            "shutdown_at": _iso(s.shutdown_at),
            "accepts_registrations": phase < Phase.REGISTRATIONS_CLOSED,
            "accepts_broadcasts": phase < Phase.BROADCASTS_CLOSED,
            "downloads_available": phase < Phase.SHUTDOWN,
        }

    def publish_refusal(self) -> str | None:
        """What a publisher is told once broadcasts are closed; None while they are accepted."""
        if self.phase() < Phase.BROADCASTS_CLOSED:
            return None
        until = self._settings.shutdown_at
        downloads = (
            f"Recordings can be downloaded until {_iso(until)}."
            if until and self.phase() < Phase.SHUTDOWN
            else "Recordings can still be downloaded."
            if self.phase() < Phase.SHUTDOWN
            else "The service has shut down."
        )
        return f"This service no longer accepts broadcasts. {downloads}"

    def registration_refusal(self) -> str | None:
        if self.phase() < Phase.REGISTRATIONS_CLOSED:
            return None
        return "Registrations are closed: this service is winding down and takes no new accounts."
