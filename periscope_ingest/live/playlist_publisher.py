"""The playlists of one broadcast, written in its worker thread.

Three files: the channel's live playlist (a sliding window, or LL-HLS with parts), the channel's
master playlist (one variant, its BANDWIDTH the peak segment bitrate), and the recording's EVENT
playlist, which becomes VOD when the broadcast ends. The first two are replaced atomically; the
recording grows by each segment's lines (storage/growing_file.py: rewriting it whole cost O(n)
per segment, 400 kB every 2 s per stream three hours in), and is replaced whole only when its
header changes and when it becomes VOD. After every
change of the live playlist a PlaylistUpdate goes to the loop (the edge), so blocked playlist
requests can be answered the moment their part exists.

The target duration is known once the first segment closes: the playlists are made then. A
broadcast continued from another node (storage/continuation.py) starts with the recording so far
and its target duration, and its live playlist numbers on from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from periscope_ingest.live.segment_commands import (
    BroadcastFiles,
    OpenSegment,
    PlaylistUpdate,
    UseTracks,
)
from periscope_ingest.media.llhls import LowLatencyPlaylist, LowLatencySettings, Part
from periscope_ingest.media.master_playlist import Variant, render_master
from periscope_ingest.media.playlist import LivePlaylist, Segment
from periscope_ingest.media.playlist_reader import render_vod
from periscope_ingest.storage.atomic import write_atomic
from periscope_ingest.storage.continuation import ContinuedRecording
from periscope_ingest.storage.growing_file import GrowingFile

Media = tuple[tuple[str, bytes], ...]  # (file name, bytes) of files listed for the first time


class PlaylistPublisher:
    def __init__(
        self,
        files: BroadcastFiles,
        window: int,
        low_latency: LowLatencySettings | None,
        on_playlist: Callable[[PlaylistUpdate], None] | None,
        continued: ContinuedRecording | None = None,
    ) -> None:
        self._files = files
        self._continued = continued
        self._window = window
        self._low_latency = low_latency
        self._on_playlist = on_playlist
        self._live: LivePlaylist | None = None
        self._recording: LivePlaylist | None = None
        self._recording_file = GrowingFile(files.recording_playlist)
        self._peak_bandwidth = 0
        self._master_bandwidth = 0
        if continued is not None:
            self._recording = LivePlaylist(continued.target_duration_s, 0, "EVENT")
            for earlier in continued.segments:
                self._recording.append(earlier)
        self._unpublished: Media = ()  # the media of a segment's last part, listed with it

    @property
    def _parts(self) -> LowLatencyPlaylist | None:
        live = self._live
        return live if isinstance(live, LowLatencyPlaylist) else None

    # -- the open segment (LL-HLS) ------------------------------------------------------------

    def segment_opened(self, opened: OpenSegment, first_part_uri: str) -> None:
        if (playlist := self._parts) is not None:
            playlist.start_segment(opened.program_date_time, opened.discontinuity)
            playlist.set_preload_hint(first_part_uri)

    def map_changed(self, map_uri: str) -> None:
        """A new init segment (new tracks) applies from the open segment on."""
        if (playlist := self._parts) is not None:
            playlist.set_map_uri(map_uri)

    def part_added(self, part: Part, next_part_uri: str, media: Media, last: bool = False) -> None:
        """A complete part; the ``last`` of its segment is published with the segment (next):
        listed on its own, it would look like a part of the segment being written, where the
        draft's 85 % rule does not exempt it."""
        if (playlist := self._parts) is not None:
            playlist.add_part(part)
            playlist.set_preload_hint(next_part_uri)
            if last:
                self._unpublished = media
            else:
                self._write_live(media)

    # -- a complete segment -----------------------------------------------------------------------

    def segment_closed(
        self,
        segment: Segment,
        target_duration_s: int,
        opened: OpenSegment,
        parts: list[Part],
        recording_uris: tuple[str, str | None],
        media: Callable[[], Media],
        part_target_ms: int | None = None,
    ) -> None:
        """List a complete segment: live first, then in the recording. ``parts`` are the
        segment's parts (LL-HLS), ``recording_uris`` its URI and init segment's beside the
        recording playlist, and ``media`` gives the bytes viewers are to get from memory (empty
        unless watched); ``part_target_ms`` is the PART-TARGET the parts were cut to (LL-HLS;
        None: the setting's)."""
        if self._live is None:
            self._make(target_duration_s, segment, opened, parts, part_target_ms)
        assert self._live is not None and self._recording is not None
        self._live.append(segment)
        if (playlist := self._parts) is not None:
            # The next part is the first of the next segment (if the stream goes on).
            playlist.set_preload_hint(self._files.part_uri(opened.sequence + 1, 0))
        uri, map_uri = recording_uris
        # The recording numbers its segments by position: a continued broadcast's segment
        # numbers (its file names) may skip one its previous node listed but never stored.
        position = self._recording.next_sequence
        self._recording.append(replace(segment, sequence=position, uri=uri, map_uri=map_uri))
        # Live first: how soon a segment is listed is the live latency, and the recording's
        # durable write (an fdatasync, tens of milliseconds when the disk is busy with thirty
        # streams' media) is not. A viewer switching to the replay in the few milliseconds
        # between gets the segment at its next reload of the EVENT playlist.
        unpublished, self._unpublished = self._unpublished, ()
        self._write_live(unpublished + media())
        self._write_recording(self._recording)

    def _write_recording(self, recording: LivePlaylist) -> None:
        file = self._recording_file
        appended = recording.render_appended() if file.appendable else None
        if appended is None:
            file.replace(recording.render().encode())
        else:
            file.append(appended.encode())

    def _make(
        self,
        target_duration_s: int,
        first: Segment,
        opened: OpenSegment,
        parts: list[Part],
        part_target_ms: int | None,
    ) -> None:
        if self._recording is None:
            self._recording = LivePlaylist(target_duration_s, 0, "EVENT")
        low_latency = self._low_latency
        if low_latency is None or first.map_uri is None:  # LL-HLS is fMP4 only
            self._live = LivePlaylist(target_duration_s, self._window)
            self._continue_numbering(self._live)
            return
        if part_target_ms is not None:
            # Fixed for the broadcast (like the target duration): every part was cut to it.
            low_latency = low_latency.with_part_target(part_target_ms)
        playlist = LowLatencyPlaylist(
            target_duration_s, self._window, low_latency=low_latency, map_uri=first.map_uri
        )
        self._continue_numbering(playlist)
        # The target duration is known once the first segment closes: list its parts now.
        playlist.start_segment(opened.program_date_time, opened.discontinuity)
        for part in parts:
            playlist.add_part(part)
        self._live = playlist

    def _continue_numbering(self, live: LivePlaylist) -> None:
        if (continued := self._continued) is not None:
            live.continue_from(continued.next_sequence, continued.discontinuities)

    def _write_live(self, media: Media = ()) -> None:
        playlist = self._live
        assert playlist is not None
        ended = playlist.ended
        text = playlist.render()
        # Not durable (no fsync), unlike the recording: a live playlist is replaced by the next
        # one within a part or segment duration, a new broadcast on the channel starts by
        # removing it, and recovery reads it only to end it (storage/recovery.py: one a power
        # cut left empty is removed). Its rename is still atomic, so readers see the old or
        # the new list, and each segment it lists is complete on disk before. Only the last
        # one, with ENDLIST, is made durable: nothing would end it after a power cut.
        write_atomic(self._files.live_playlist, text.encode(), durable=ended)
        if self._on_playlist is None:
            return
        if isinstance(playlist, LowLatencyPlaylist):
            delta = playlist.render(skip=True) if playlist.skippable_segments() else text
            parts = len(playlist.pending_parts)
        else:
            delta, parts = None, 0
        self._on_playlist(
            PlaylistUpdate(
                next_sequence=playlist.next_sequence,
                parts=parts,
                ended=ended,
                target_duration_s=playlist.target_duration_s,
                text=text,
                delta=delta,
                media=media,
            )
        )

    def update_master(self, tracks: UseTracks | None, bitrate: int) -> None:
        # BANDWIDTH is the peak segment bitrate. Rewrite only when it grows noticeably: players
        # read the master once, and an ever-changing file would defeat caches for nothing.
        self._peak_bandwidth = max(self._peak_bandwidth, bitrate)
        if tracks is None or self._peak_bandwidth <= self._master_bandwidth * 1.1:
            return
        self._master_bandwidth = self._peak_bandwidth
        variant = Variant(
            uri=self._files.live_playlist.name,
            bandwidth=self._peak_bandwidth,
            codecs=tracks.codecs,
            resolution=tracks.resolution,
            frame_rate=tracks.frame_rate,
        )
        write_atomic(self._files.master_playlist, render_master([variant]).encode())

    def end(self) -> None:
        """ENDLIST on the live playlist; the recording becomes VOD."""
        if self._live is not None:
            self._live.end()
            self._write_live()
        if self._recording is not None:  # (also a continued one that got no segment here)
            vod = render_vod(self._recording.target_duration_s, self._recording.segments)
            self._recording_file.close()
            write_atomic(self._files.recording_playlist, vod.encode())

    def close(self) -> None:
        """The writer is done (ended, handed over or failed): the recording's descriptor goes."""
        self._recording_file.close()
