"""The record of one broadcast (broadcast.json beside its files, and its catalog row), kept by
its worker thread: facts the loop learns, running totals per segment, the final status."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.layout import RECORD_FILE
from periscope_ingest.storage.recordings import write_record

# How stale a live broadcast's duration/size in broadcast.json and the catalog may get.
RECORD_SAVE_EVERY_S = 10.0


class BroadcastRecordKeeper:
    def __init__(
        self,
        record: BroadcastRecord,
        directory: Path,
        catalog: Catalog,
        on_file_complete: Callable[[Path], None] | None = None,
    ) -> None:
        self.record = record
        self._on_file_complete = on_file_complete
        self._directory = directory
        self._catalog = catalog
        self._saved_at = 0.0

    def update(self, changes: dict) -> None:
        self.record = replace(self.record, **changes)
        self.save()

    def segment_added(self, duration_ms: int, size: int, discontinuity: bool) -> None:
        record = self.record
        self.record = replace(
            record,
            duration=round(record.duration + duration_ms / 1000, 3),
            size=record.size + size,
            segments=record.segments + 1,
            discontinuities=record.discontinuities + (1 if discontinuity else 0),
        )
        # The running totals are for listings only (recovery recounts them from the recording
        # playlist): saving them every few segments, not every one, halves the file work per
        # segment.
        if record.segments == 0 or time.monotonic() - self._saved_at >= RECORD_SAVE_EVERY_S:
            self.save()

    def end(self, status: str) -> BroadcastRecord:
        self.record = replace(self.record, status=status, ended_at=iso(datetime.now(UTC)))
        self.save()
        return self.record

    def save(self) -> None:
        try:
            write_record(self._directory, self.record)
            if self._on_file_complete is not None:
                self._on_file_complete(self._directory / RECORD_FILE)
        finally:
            # Also when the directory cannot be written: listings must not show a broadcast
            # that failed as live (the next start recovers the record from the files).
            self._catalog.put(self.record)
            self._saved_at = time.monotonic()
