"""What a node needs to continue a broadcast another node recorded until now (a cluster hand-over).

A publisher that drops off node A and comes back on node B within recording.reconnect_grace
continues the same broadcast on B (live/handover.py decides that through Redis). B then needs
what A recorded so far: the broadcast's record and its recording playlist, from where the
recording lives: the object store (storage.url s3://), or the data directory itself when the
nodes share it (`serve --workers`, file://). Both are put into B's broadcast directory, where B's
worker goes on rewriting them; A's segments stay in the store and are fetched only when
something reads them (storage/replay_cache.py), as for any replay recorded elsewhere.

A broadcast whose node died and whose publisher never came back is finalised by another node
from the same files (``finalise_continued``).

Only what A published counts: the recording playlist lists complete segments only, and A
uploads a segment before the playlist that lists it, so what is read here is whole.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import timedelta

from periscope_ingest.logs import log_event
from periscope_ingest.media.playlist import Segment
from periscope_ingest.media.playlist_reader import (
    PlaylistReadError,
    read_media_playlist,
    render_vod,
)
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.catalog import BroadcastRecord, iso
from periscope_ingest.storage.layout import (
    RECORD_FILE,
    RECORDING_PLAYLIST,
    DataLayout,
    InvalidName,
    parse_segment_name,
)
from periscope_ingest.storage.objects import ObjectMissing, ObjectStore
from periscope_ingest.storage.recording_tail import read_recording_playlist
from periscope_ingest.storage.recordings import read_record, write_record

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContinuedRecording:
    """A broadcast recorded elsewhere until now: where its recording goes on from."""

    record: BroadcastRecord  # status live, totals as recorded so far
    segments: tuple[Segment, ...]  # the recording playlist's, numbered by position from 0
    target_duration_s: int  # EXT-X-TARGETDURATION: it never changes within a broadcast
    # The media sequence number (and file name) of the next segment: after the last recorded,
    # and after the last any viewer saw listed (``numbered_after``), even if that one was lost.
    next_sequence: int

    def numbered_after(self, listed_next: int) -> ContinuedRecording:
        """Go on after what the previous node's live playlist listed (its last segment may not
        have reached the store): a media sequence number is never given to two segments."""
        return replace(self, next_sequence=max(self.next_sequence, listed_next))

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
    try:
        directory = layout.broadcast_dir(channel, broadcast_id)
    except InvalidName:
        return None  # not a name this version makes
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prefix = layout.broadcast_prefix(channel, broadcast_id)
        store.download(layout.key_for(directory / RECORD_FILE), directory / RECORD_FILE)
        # Its last whole upload and what was appended since (storage/recording_tail.py).
        text = read_recording_playlist(store, layout.key_for(directory / RECORDING_PLAYLIST))
        write_atomic(directory / RECORDING_PLAYLIST, text)
        playlist = read_media_playlist(text.decode())
    except (ObjectMissing, OSError, PlaylistReadError) as exc:
        with contextlib.suppress(OSError):
            directory.rmdir()  # only if empty: made here for nothing
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
    if record.status != "live":
        return None  # finished already (by its node, or by recovery): never continued
    segments = [replace(s, sequence=index) for index, s in enumerate(playlist.segments)]
    numbers = [parse_segment_name(s.uri) for s in segments]
    next_sequence = max((n for n in numbers if n is not None), default=-1) + 1
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
    return ContinuedRecording(record, tuple(segments), playlist.target_duration_s, next_sequence)


def finalise_continued(layout: DataLayout, continued: ContinuedRecording) -> BroadcastRecord:
    """Blocking: end a broadcast whose node died and whose publisher did not come back, as crash
    recovery does on a local disk (storage/recovery.py): its recording playlist becomes VOD
    and its record says "interrupted". Returns the record; the caller stores both files."""
    record, segments = continued.record, continued.segments
    directory = layout.broadcast_dir(record.channel, record.id)
    ended_at = record.started_at
    if segments:
        vod = render_vod(continued.target_duration_s, list(segments))
        write_atomic(directory / RECORDING_PLAYLIST, vod.encode())
        last = segments[-1]
        ended_at = iso(last.program_date_time + timedelta(milliseconds=last.duration_ms))
    record = replace(record, status="interrupted", ended_at=ended_at)
    write_record(directory, record)
    return record
