"""What the loop and a broadcast's segment worker thread say to each other.

Commands go from the loop (StreamPipeline, which decides) to the worker thread (SegmentWorker,
which writes), strictly in order; reports come back from the thread (through
call_soon_threadsafe) after a segment is listed or the live playlist changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from periscope_ingest.media.ingest import TracksReady, video_codec, video_record
from periscope_ingest.media.packets import MediaPacket
from periscope_ingest.media.part_cutter import PartCut
from periscope_ingest.storage.layout import DataLayout

# -- commands: loop -> thread ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UseTracks:
    avcc: bytes | None  # the video decoder configuration record: avcC, hvcC or av1C
    asc: bytes | None
    codecs: tuple[str, ...]
    resolution: tuple[int, int] | None
    frame_rate: float | None
    video_codec: str = "avc1"  # "avc1", "hvc1" or "av01"

    @classmethod
    def of(cls, ready: TracksReady) -> UseTracks:
        video, audio = ready.video, ready.audio
        return cls(
            avcc=video_record(video) if video else None,
            asc=audio.asc if audio else None,
            codecs=tuple(c.codecs for c in (video, audio) if c is not None),
            resolution=(video.width, video.height) if video else None,
            frame_rate=video.frame_rate if video else None,
            video_codec=video_codec(video) if video is not None else "avc1",
        )


@dataclass(frozen=True, slots=True)
class OpenSegment:
    sequence: int
    path: Path
    uri: str  # relative to the channel's live playlist
    program_date_time: datetime
    discontinuity: bool
    segment_format: str = "ts"  # "ts" or "fmp4"
    # fMP4: where the init segment goes if this segment needs a new one (first segment, new
    # tracks), and its URI relative to the channel's live playlist.
    init_path: Path | None = None
    init_uri: str | None = None


@dataclass(frozen=True, slots=True)
class CutPart:
    """LL-HLS: the media written since the previous cut is a complete part."""

    cut: PartCut


@dataclass(frozen=True, slots=True)
class CloseSegment:
    duration_ticks: int
    target_duration_s: int
    duration_ms: int | None = None  # LL-HLS: from the same ms positions as the parts
    last_part: PartCut | None = None  # LL-HLS: the segment's last part ends with it
    # LL-HLS: the PART-TARGET the parts were cut to (the setting snapped to the stream's frame
    # rhythm), fixed before the first part; the playlist made at the first close declares it.
    part_target_ms: int | None = None


@dataclass(frozen=True, slots=True)
class EndPlaylist:
    """The broadcast is over: ENDLIST on the live playlist, the recording becomes VOD."""

    status: str = "ended"  # or "interrupted"


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    """Facts the loop learned (title from metadata, codecs) for broadcast.json and the catalog."""

    changes: dict

    @classmethod
    def of_tracks(cls, ready: TracksReady) -> UpdateRecord:
        video, audio = ready.video, ready.audio
        return cls(
            {
                "video_codec": video.codecs if video else None,
                "audio_codec": audio.codecs if audio else None,
                "width": video.width if video else None,
                "height": video.height if video else None,
                "frame_rate": video.frame_rate if video else None,
            }
        )


# -- reports: thread -> loop ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentPublished:
    """Reported back to the loop after a segment is complete and listed."""

    sequence: int
    duration_ms: int
    size: int
    write_seconds: float = 0.0  # closing, listing and recording it, in this thread


@dataclass(frozen=True, slots=True)
class PlaylistUpdate:
    """Reported back to the loop after every change of the live playlist (file already written).

    `next_sequence` is the media sequence number of the segment being written and `parts` how
    many of its parts are listed: a blocking request for (msn, part) can be answered once
    msn < next_sequence, or msn == next_sequence and part < parts. `text`/`delta` are the
    rendered playlist and its delta update (None without LL-HLS). `media` holds the files this
    update lists for the first time, (file name, bytes), when the loop asked for them
    (SegmentWorker.keep_media): they arrive together with the playlist that names them.
    """

    next_sequence: int
    parts: int
    ended: bool
    target_duration_s: int
    text: str
    delta: str | None = None
    media: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True, slots=True)
class BroadcastFiles:
    """Where the worker writes, all from storage's DataLayout (the owner of every path)."""

    layout: DataLayout
    channel: str
    broadcast_id: str
    directory: Path
    live_playlist: Path
    master_playlist: Path
    recording_playlist: Path

    @classmethod
    def of(cls, layout: DataLayout, channel: str, broadcast_id: str) -> BroadcastFiles:
        return cls(
            layout,
            channel,
            broadcast_id,
            directory=layout.broadcast_dir(channel, broadcast_id),
            live_playlist=layout.live_playlist(channel),
            master_playlist=layout.master_playlist(channel),
            recording_playlist=layout.recording_playlist(channel, broadcast_id),
        )

    def part_path(self, sequence: int, part: int) -> Path:
        return self.layout.part_path(self.channel, self.broadcast_id, sequence, part)

    def part_uri(self, sequence: int, part: int) -> str:
        """Relative to the channel's live playlist."""
        return self.layout.part_uri(self.broadcast_id, sequence, part)


Command = (
    UseTracks | OpenSegment | MediaPacket | CutPart | CloseSegment | EndPlaylist | UpdateRecord
)
