"""What a node needs to continue a broadcast another node recorded until now (a cluster hand-over).

A publisher that drops off node A and comes back on node B within recording.reconnect_grace
continues the same broadcast on B (live/handover.py decides that through Redis). B then needs
what A recorded so far: the broadcast's record and its recording playlist, from where the
recording lives: the object store (storage.url s3://), or the data directory itself when the
nodes share it (`serve --workers`, file://). Both are put into B's broadcast directory, where B's
worker goes on rewriting them; A's segments stay in the store and are fetched only when
something reads them (storage/replay_cache.py), as for any replay recorded elsewhere.

Only what A published counts: the recording playlist lists complete segments only, and A
uploads a segment before the playlist that lists it, so what is read here is whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist import Segment
from periscope_ingest.media.playlist_reader import PlaylistReadError, read_media_playlist
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import (
    RECORD_FILE,
    RECORDING_PLAYLIST,
    DataLayout,
    parse_segment_name,
)
from periscope_ingest.storage.objects import ObjectMissing, ObjectStore
from periscope_ingest.storage.recordings import read_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContinuedRecording:
    """A broadcast recorded elsewhere until now: where its recording goes on from."""

    record: BroadcastRecord  # status live, totals as recorded so far
    segments: tuple[Segment, ...]  # the recording playlist's, numbered from 0
    target_duration_s: int  # EXT-X-TARGETDURATION: it never changes within a broadcast

    @property
    def next_sequence(self) -> int:
        return self.segments[-1].sequence + 1 if self.segments else 0

    @property
    def discontinuities(self) -> int:
        """Discontinuity tags so far: the live playlist's EXT-X-DISCONTINUITY-SEQUENCE once
        every earlier segment has left its window."""
        return sum(1 for segment in self.segments if segment.discontinuity)


def load_continued(
    layout: DataLayout, store: ObjectStore, channel: str, broadcast_id: str
) -> ContinuedRecording | None:
    """Blocking: the recording of ``broadcast_id`` so far, copied into this node's broadcast
    directory; None when neither the store nor the disk has a usable one (the caller then
    starts a new broadcast)."""
    directory = layout.broadcast_dir(channel, broadcast_id)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = layout.broadcast_prefix(channel, broadcast_id)
    try:
        for name in (RECORD_FILE, RECORDING_PLAYLIST):
            store.download(layout.key_for(directory / name), directory / name)
        playlist = read_media_playlist((directory / RECORDING_PLAYLIST).read_text())
    except (ObjectMissing, OSError, PlaylistReadError) as exc:
        log_event(
            log,
            logging.WARNING,
            "continuation_unavailable",
            channel=channel,
            broadcast=broadcast_id,
            reason=f"{type(exc).__name__}: {exc}",
        )
        return None
    record = read_record(directory)
    if record is None or record.id != broadcast_id or playlist.target_duration_s < 1:
        return None
    segments = []
    for index, segment in enumerate(playlist.segments):
        if parse_segment_name(segment.uri) != index:
            break  # a recording playlist numbers its segments from 0, one by one
        segments.append(replace(segment, sequence=index))
    sizes = store.list(prefix) if store.remote else {}
    size = sum(sizes.get(layout.key_for(directory / s.uri), 0) for s in segments) or record.size
    record = replace(
        record,
        status="live",
        ended_at=None,
        segments=len(segments),
        duration=round(sum(s.duration_ms for s in segments) / 1000, 3),
        size=size,
        discontinuities=sum(1 for s in segments if s.discontinuity),
    )
    return ContinuedRecording(record, tuple(segments), playlist.target_duration_s)
