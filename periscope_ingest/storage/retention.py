"""Which recordings to delete, and deleting them (files and catalog row together)."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta

from periscope_ingest.config_sections import RecordingSettings
from periscope_ingest.logs import log_event
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.replay_cache import ReplayCache

log = logging.getLogger(__name__)


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def select_expired(
    records: list[BroadcastRecord], now: datetime, max_age_days: float, max_total_bytes: int
) -> list[BroadcastRecord]:
    """Oldest first: ended broadcasts past the age limit, then more until under the size limit.

    A broadcast that is live is never selected.
    """
    finished = sorted(
        (r for r in records if r.status in ("ended", "interrupted")), key=lambda r: r.started_at
    )
    chosen: dict[str, BroadcastRecord] = {}
    if max_age_days > 0:
        cutoff = now - timedelta(days=max_age_days)
        for record in finished:
            if _parse(record.ended_at or record.started_at) < cutoff:
                chosen[record.id] = record
    if max_total_bytes > 0:
        total = sum(r.size + (r.mp4_size or 0) for r in records if r.status != "deleted")
        total -= sum(r.size + (r.mp4_size or 0) for r in chosen.values())
        for record in finished:
            if total <= max_total_bytes:
                break
            if record.id not in chosen:
                chosen[record.id] = record
                total -= record.size + (record.mp4_size or 0)
    return list(chosen.values())


def delete_broadcast(
    layout: DataLayout, catalog: Catalog, record: BroadcastRecord, cache: ReplayCache | None = None
) -> None:
    """Remove the broadcast's files, then its catalog row: a crash in between leaves a row whose
    files are gone, which a catalog rebuild drops, never files that nothing lists. With an
    object store (``cache``, storage.url s3://) its objects go first; a store that cannot be
    reached raises, and nothing is deleted."""
    if cache is not None:
        cache.forget(record.channel, record.id)
    shutil.rmtree(layout.broadcast_dir(record.channel, record.id), ignore_errors=True)
    for clip in layout.cached_clips_of(record.id):
        clip.unlink(missing_ok=True)
    catalog.remove(record.id)


def apply_retention(
    layout: DataLayout,
    catalog: Catalog,
    settings: RecordingSettings,
    cache: ReplayCache | None = None,
) -> int:
    """Delete what the retention settings say (recording.max_age_days, max_total_gb); returns
    how many broadcasts were deleted. Blocking."""
    expired = select_expired(
        catalog.all(),
        datetime.now(UTC),
        settings.max_age_days,
        round(settings.max_total_gb * 1e9),
    )
    for record in expired:
        delete_broadcast(layout, catalog, record, cache)
        log_event(
            log,
            logging.INFO,
            "broadcast_deleted",
            channel=record.channel,
            broadcast=record.id,
            reason="retention",
        )
    return len(expired)
