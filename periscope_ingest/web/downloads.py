"""Downloads (MP4s, clips, archives) bounded, and kept apart from everything else.

A download holds its connection for as long as its client takes, and a streamed one (an MP4
made while it is sent, an archive) a worker thread too. Anyone can start them, so:

- they run on threads of their own (``downloads.threads``; clips and posters, which are
  CPU-bound, on ``downloads.clip_threads``): catalog queries and key lookups, on the loop's
  default executor (``lookup_threads``), never wait behind them;
- at most ``downloads.max_active`` are in progress (503 beyond) and ``max_per_address`` per
  client address (429 beyond), and ``max_clips_per_address`` clips are made at once per address;
- a client that stops reading is cut off after ``http_write_timeout`` (web/write_timeout.py;
  on Linux the kernel's TCP_USER_TIMEOUT too), which frees its slot and thread, with one log
  line;
- a clip of a finished broadcast is made once and kept (``clip_cache_mb``), so asking again
  costs a file send, not a remux.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from periscope_ingest.config_sections import DownloadSettings
from periscope_ingest.live.client_address import address_group
from periscope_ingest.logs import log_event
from periscope_ingest.media.export import export_mp4
from periscope_ingest.media.segment_source import SegmentSource
from periscope_ingest.storage.atomic import partial_path
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.layout import DataLayout, init_segments
from periscope_ingest.storage.recordings import recording_segments
from periscope_ingest.web.write_timeout import StalledReader

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a refused client is told to wait

# What an export reads: its segments in order (files, or objects of the store read in ranges)
# and each fMP4 segment's init segment.
ExportInputs = tuple[
    Sequence[Path | SegmentSource], Mapping[Path | SegmentSource, Path | SegmentSource]
]


def local_inputs(layout: DataLayout, record: BroadcastRecord) -> ExportInputs:
    """Blocking: a broadcast's segments on the local disk and their init segments."""
    segments = recording_segments(layout, record)
    return segments, init_segments(segments)


@dataclass(slots=True)
class Sending:
    """What a download slot knows of its response: once it is set, its head is out, and a
    client that goes away or stops reading only ends it (logged once, not as an error)."""

    response: web.StreamResponse | None = None


class Downloads:
    """The download pools, the counts behind the limits, and the clip cache. One per app."""

    def __init__(
        self, settings: DownloadSettings, layout: DataLayout, write_timeout: float
    ) -> None:
        self.settings = settings
        self.layout = layout
        self.write_timeout = write_timeout  # http_write_timeout
        self.streams = ThreadPoolExecutor(settings.threads, thread_name_prefix="download")
        self.clips = ThreadPoolExecutor(settings.clip_threads, thread_name_prefix="clip")
        self._active = 0
        self._per_address: dict[str, int] = {}
        self._clips_per_address: dict[str, int] = {}
        self._making: dict[Path, asyncio.Future[None]] = {}  # clips being made, by cache path

    @contextlib.contextmanager
    def slot(self, request: web.Request, clip: bool = False) -> Iterator[Sending]:
        """Hold one of the download slots while the body is sent (refused: 429 or 503).

        The body sets ``Sending.response`` before its head goes out; if the client then leaves
        or is cut off, that is logged here once and the exception ends with the slot: the
        handler returns that response (nothing more is sent)."""
        group = address_group(request.remote or "?")
        limits = self.settings
        if self._per_address.get(group, 0) >= limits.max_per_address:
            raise _refused(
                web.HTTPTooManyRequests,
                f"{limits.max_per_address} downloads in progress from your address"
                " (downloads.max_per_address)",
            )
        if clip and self._clips_per_address.get(group, 0) >= limits.max_clips_per_address:
            raise _refused(
                web.HTTPTooManyRequests,
                f"{limits.max_clips_per_address} clips being made for your address"
                " (downloads.max_clips_per_address)",
            )
        if self._active >= limits.max_active:
            raise _refused(
                web.HTTPServiceUnavailable,
                f"{limits.max_active} downloads in progress (downloads.max_active)",
            )
        self._active += 1
        _add(self._per_address, group, 1)
        if clip:
            _add(self._clips_per_address, group, 1)
        sending = Sending()
        try:
            yield sending
        except (ConnectionError, OSError) as exc:
            if sending.response is None:
                raise  # not the client's doing (a file that cannot be read): aiohttp's 500
            # The client left, or stopped reading and was cut off: its thread and slot are free
            # again. Its path is a route of ours (checked names), never raw client bytes.
            log_event(
                log,
                logging.INFO,
                "download_aborted",
                client=request.remote,
                path=request.path,
                reason=str(exc) if isinstance(exc, StalledReader) else type(exc).__name__,
            )
        finally:
            self._active -= 1
            _add(self._per_address, group, -1)
            if clip:
                _add(self._clips_per_address, group, -1)

    async def clip_file(
        self,
        record: BroadcastRecord,
        start: float | None,
        end: float | None,
        inputs: ExportInputs | None = None,
    ) -> tuple[Path, bool]:
        """The clip as a file, and whether it is a temporary one (to remove once sent).

        A finished broadcast's clip is made once into the cache (concurrent requests for the
        same clip wait for that one export); a live one's is made for this request only.
        ``inputs``: what to read (storage.url s3://: objects of the store too); by default the
        recording's files. Raises ExportError."""
        loop = asyncio.get_running_loop()
        if inputs is None:
            inputs = await loop.run_in_executor(self.clips, local_inputs, self.layout, record)
        segments, inits = inputs
        if not segments:
            raise web.HTTPNotFound(text="this broadcast has no recorded media yet\n")
        cacheable = record.status != "live" and self.settings.clip_cache_mb > 0
        if not cacheable:
            temporary = self.layout.temporary_file(".mp4")
            try:
                await loop.run_in_executor(
                    self.clips,
                    lambda: export_mp4(segments, temporary, start=start, end=end, inits=inits),
                )
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            return temporary, True
        path = self.layout.cached_clip(record.id, start, end)
        making = self._making.get(path)
        if making is None:
            making = loop.run_in_executor(self.clips, self._make_cached, inputs, path, start, end)
            self._making[path] = making
            making.add_done_callback(lambda _: self._making.pop(path, None))
        await asyncio.shield(making)
        return path, False

    def _make_cached(self, inputs: ExportInputs, path: Path, start, end) -> None:
        """Blocking: the clip into the cache (if not there yet), then the cache trimmed."""
        if path.is_file():
            os.utime(path)  # the cache forgets the least recently asked for first
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(path)
        try:
            segments, inits = inputs
            export_mp4(segments, partial, start=start, end=end, inits=inits)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self._trim_cache(keep=path)

    def _trim_cache(self, keep: Path) -> None:
        budget = self.settings.clip_cache_mb * 1024 * 1024
        entries = []
        for clip in self.layout.clip_cache_dir.glob("*.mp4"):
            with contextlib.suppress(OSError):
                stat = clip.stat()
                entries.append((stat.st_mtime, stat.st_size, clip))
        total = sum(size for _, size, _ in entries)
        for _, size, clip in sorted(entries):
            if total <= budget:
                break
            if clip != keep:
                clip.unlink(missing_ok=True)  # a response sending it keeps its open file
                total -= size

    def close(self) -> None:
        self.streams.shutdown(wait=False, cancel_futures=True)
        self.clips.shutdown(wait=False, cancel_futures=True)


def _add(counts: dict[str, int], key: str, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def _refused(kind: type[web.HTTPException], why: str) -> web.HTTPException:
    return kind(
        text=f"too many downloads: {why}; try again in {RETRY_AFTER_S} s\n",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
