"""Reading and writing what a broadcast directory holds: its record and its list of segments."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist_reader import PlaylistReadError, read_media_playlist
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import RECORD_FILE, DataLayout, InvalidName

log = logging.getLogger(__name__)


def read_record(directory: Path) -> BroadcastRecord | None:
    try:
        return BroadcastRecord.from_json(json.loads((directory / RECORD_FILE).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log_event(log, logging.WARNING, "record_unreadable", path=directory, reason=repr(exc))
        return None


def write_record(directory: Path, record: BroadcastRecord) -> None:
    write_atomic(directory / RECORD_FILE, json.dumps(record.as_json(), indent=1).encode())


def recording_segments(layout: DataLayout, record: BroadcastRecord) -> list[Path]:
    """The complete segments of a broadcast, in order, as its recording playlist lists them."""
    path = layout.recording_playlist(record.channel, record.id)
    try:
        playlist = read_media_playlist(path.read_text())
        return layout.segment_paths(record.channel, record.id, [s.uri for s in playlist.segments])
    except (OSError, PlaylistReadError, InvalidName):
        return []


def download_name(record: BroadcastRecord, suffix: str = "") -> str:
    """A readable file name: the channel and the local-independent start time."""
    started = datetime.fromisoformat(record.started_at.replace("Z", "+00:00"))
    return f"{record.channel}-{started:%Y-%m-%d_%H-%M-%S}{suffix}.mp4"


def export_path(directory: Path, record: BroadcastRecord, *, with_id: bool = False) -> Path:
    """Where ``export`` writes a broadcast in a directory the user named: its download name,
    prefixed with its id for a whole channel (two broadcasts may start in the same second)."""
    name = download_name(record)
    return directory / (f"{record.id}-{name}" if with_id else name)
