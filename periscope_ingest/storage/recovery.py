"""Putting the files right after a crash, and rebuilding the catalog from them.

The files are the truth: each broadcast directory holds its record (broadcast.json), its segments
and its recording playlist, which only ever lists complete segments (a segment is written under a
hidden ``.part`` name and renamed before it is listed). After ``kill -9`` the broadcast that was
live is finalised from that playlist: at most the segment in progress is lost.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist_reader import (
    PlaylistReadError,
    read_media_playlist,
    render_vod,
)
from periscope_ingest.storage.atomic import partial_path, write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog, iso
from periscope_ingest.storage.layout import RECORDING_MP4, RECORDING_PLAYLIST, DataLayout
from periscope_ingest.storage.recordings import read_record, write_record

log = logging.getLogger(__name__)


def _finalise(layout: DataLayout, directory: Path, record: BroadcastRecord) -> BroadcastRecord:
    """A broadcast that was live when the server died: make it a normal, finished recording."""
    for partial in directory.glob(".*"):
        partial.unlink(missing_ok=True)  # the segment in progress, half-written temp files
    playlist_path = directory / RECORDING_PLAYLIST
    segments = []
    target = 0
    if playlist_path.is_file():
        try:
            playlist = read_media_playlist(playlist_path.read_text())
            segments, target = playlist.segments, playlist.target_duration_s
        except PlaylistReadError as exc:
            log_event(log, logging.WARNING, "recording_unreadable", path=playlist_path, reason=exc)
    segments = [s for s in segments if (directory / s.uri).is_file()]
    if segments:
        write_atomic(playlist_path, render_vod(target, segments).encode())
        last = segments[-1]
        ended = last.program_date_time + timedelta(milliseconds=last.duration_ms)
        record.ended_at = iso(ended)
    else:
        record.ended_at = record.ended_at or record.started_at
    record.status = "interrupted"
    record.segments = len(segments)
    record.duration = round(sum(s.duration_ms for s in segments) / 1000, 3)
    record.size = sum((directory / s.uri).stat().st_size for s in segments)
    write_record(directory, record)
    _end_live_playlist(layout, record)
    return record


def _end_live_playlist(layout: DataLayout, record: BroadcastRecord) -> None:
    """The channel's live playlist of this broadcast must tell players it is over."""
    path = layout.live_playlist(record.channel)
    try:
        text = path.read_text()
    except OSError:
        return
    if not text.startswith("#EXTM3U"):
        # Live playlists are written without fsync (live/playlist_publisher.py): a power cut
        # can leave an empty one, which no player could use. Without it the channel is
        # simply not live.
        path.unlink(missing_ok=True)
        return
    if "#EXT-X-ENDLIST" not in text and f"\n{record.id}/" in text:
        write_atomic(path, (text.rstrip("\n") + "\n#EXT-X-ENDLIST\n").encode())


def recover_interrupted(
    layout: DataLayout,
    catalog: Catalog,
    alive_elsewhere: Callable[[BroadcastRecord], bool] | None = None,
    fetch_recording: Callable[[str, str], None] | None = None,
) -> list[BroadcastRecord]:
    """At start-up: every broadcast still marked live was cut off by a crash. Finalise it.

    With other processes on the same data directory (``serve --workers``), a broadcast that
    ``alive_elsewhere`` says another one is taking in is theirs, and their MP4 exports in
    progress are left alone: only the broadcasts being recovered are cleaned up.

    ``fetch_recording`` (storage.url s3://) first brings back segments listed but not on this
    disk: those of a broadcast continued here from another node (a cluster hand-over), which
    must stay in its recording."""
    recovered = []
    for directory in layout.broadcast_dirs():
        if alive_elsewhere is None:
            # An MP4 export cut short by the last exit; it is made again.
            partial_path(directory / RECORDING_MP4).unlink(missing_ok=True)
        record = read_record(directory)
        if record is None or record.status != "live":
            continue
        if alive_elsewhere is not None:
            if alive_elsewhere(record):
                continue
            partial_path(directory / RECORDING_MP4).unlink(missing_ok=True)
        if fetch_recording is not None:
            with contextlib.suppress(OSError):  # the store away: what is here is recovered
                fetch_recording(record.channel, record.id)
        record = _finalise(layout, directory, record)
        catalog.put(record)
        recovered.append(record)
        log_event(
            log,
            logging.WARNING,
            "broadcast_recovered",
            channel=record.channel,
            broadcast=record.id,
            segments=record.segments,
            duration=record.duration,
            reason="the server stopped without ending it",
        )
    return recovered


def rebuild_catalog(layout: DataLayout, catalog: Catalog) -> int:
    """Forget the catalog and index every broadcast on disk again; returns how many."""
    catalog.clear()
    count = 0
    for directory in layout.broadcast_dirs():
        record = read_record(directory)
        if record is None:
            continue
        if record.status == "live":
            record = _finalise(layout, directory, record)
        mp4 = layout.recording_mp4(record.channel, record.id)
        record.mp4_size = mp4.stat().st_size if mp4.is_file() else None
        catalog.put(record)
        count += 1
    return count
