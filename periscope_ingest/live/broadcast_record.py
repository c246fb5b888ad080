"""The record of one broadcast (broadcast.json beside its files, and its catalog row), kept by
its worker thread: facts the loop learns, running totals per segment, the final status.

broadcast.json is what recovery trusts; the catalog row is for listings. A catalog that cannot
be written for a while (PostgreSQL restarting, catalog.url) costs listings that lag, never the
recording: the failure is logged once, the row is written again at the next save, and the final
one is retried for a few seconds before it is left to recovery at the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.layout import RECORD_FILE
from periscope_ingest.storage.recordings import write_record

log = logging.getLogger(__name__)

# How stale a live broadcast's duration/size in broadcast.json and the catalog may get.
RECORD_SAVE_EVERY_S = 10.0
# The final row (status ended) is tried this many times, this far apart, before giving up.
FINAL_ATTEMPTS = 5
FINAL_RETRY_S = 1.0


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
        self._catalog_failing = False

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
        try:
            write_record(self._directory, self.record)
        finally:
            for attempt in range(FINAL_ATTEMPTS):
                if self._put():
                    break
                if attempt + 1 < FINAL_ATTEMPTS:
                    time.sleep(FINAL_RETRY_S)
        return self.record

    def save(self) -> None:
        try:
            write_record(self._directory, self.record)
            if self._on_file_complete is not None:
                self._on_file_complete(self._directory / RECORD_FILE)
        finally:
            # Also when the directory cannot be written: listings must not show a broadcast
            # that failed as live (the next start recovers the record from the files).
            self._put()
            self._saved_at = time.monotonic()

    def _put(self) -> bool:
        try:
            self._catalog.put(self.record)
        except Exception as exc:  # any backend's error: the database is away, not the disk
            if not self._catalog_failing:
                self._catalog_failing = True
                log_event(
                    log,
                    logging.WARNING,
                    "catalog_write_failed",
                    broadcast=self.record.id,
                    reason=f"{type(exc).__name__}: the row is written again at the next save",
                )
            return False
        if self._catalog_failing:
            self._catalog_failing = False
            log_event(log, logging.INFO, "catalog_write_recovered", broadcast=self.record.id)
        return True
