from __future__ import annotations

from datetime import UTC, datetime

from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.retention import select_expired

NOW = datetime(2026, 6, 30, tzinfo=UTC)


def record(i: int, day: int, size: int, status: str = "ended") -> BroadcastRecord:
    started = f"2026-06-{day:02d}T00:00:00.000Z"
    return BroadcastRecord(
        f"b{i:011d}", "chan", started, status, ended_at=started, size=size, mp4_size=size // 2
    )


def test_age_limit_takes_old_ended_broadcasts_only() -> None:
    records = [record(1, 1, 100), record(2, 20, 100), record(3, 2, 100, "live")]
    expired = select_expired(records, NOW, max_age_days=15, max_total_bytes=0)
    assert [r.id for r in expired] == ["b00000000001"]  # the live one is never deleted


def test_size_limit_deletes_oldest_first_until_under() -> None:
    records = [record(i, i, 1000) for i in range(1, 6)]  # 1500 bytes each with the MP4
    expired = select_expired(records, NOW, max_age_days=0, max_total_bytes=4000)
    assert [r.id for r in expired] == ["b00000000001", "b00000000002", "b00000000003"]
    assert select_expired(records, NOW, 0, 0) == []
