"""MP4 files of finished broadcasts, made in the background one at a time.

A finished broadcast gets ``recording.mp4`` beside its segments so that downloads are plain files:
instant first byte, Range, HEAD and a right Content-Length. Until it exists (or when disabled),
the HTTP side streams a fragmented MP4 made on the fly instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from periscope_ingest.logs import log_event
from periscope_ingest.media.export import ExportError, export_mp4
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.atomic import partial_path
from periscope_ingest.storage.catalog import BroadcastRecord, Catalog
from periscope_ingest.storage.layout import RECORD_FILE, DataLayout, init_segments
from periscope_ingest.storage.recordings import read_record, recording_segments, write_record

log = logging.getLogger(__name__)

# (channel, broadcast id) -> the segments to export, in order, and each one's init segment.
ExportSources = Callable[[str, str], tuple[list, dict]]


class Mp4Exports:
    def __init__(
        self,
        layout: DataLayout,
        catalog: Catalog,
        enabled: bool = True,
        on_ready: Callable[[BroadcastRecord], None] | None = None,
        metrics: Metrics | None = None,
        on_file_complete: Callable[[Path], None] | None = None,
        export_sources: ExportSources | None = None,
    ) -> None:
        self._metrics = metrics
        # storage.url s3://: the segments of the recording on disk or, those recorded by another
        # node (a broadcast continued here), in the store, read in ranges (replay_cache.py).
        self._export_sources = export_sources
        self._on_file_complete = on_file_complete  # storage.url s3://: the uploader
        self._layout = layout
        self._on_ready = on_ready
        self._catalog = catalog
        self._enabled = enabled
        # A remux is disk-bound: one at a time, on a thread of its own, so that a long one never
        # holds a thread of the lookup pool (the loop's default executor: catalog queries and
        # the stream key lookups of publishers).
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mp4-export")
        self._tasks: set[asyncio.Task] = set()
        self._done: dict[str, asyncio.Event] = {}

    def schedule(self, record: BroadcastRecord) -> None:
        """Called when a broadcast ends (on the event loop)."""
        if not self._enabled or record.segments == 0:
            return
        event = self._done.setdefault(record.id, asyncio.Event())
        task = asyncio.get_running_loop().create_task(self._make(record, event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait(self, broadcast_id: str) -> None:
        """For tests and the CLI: until the MP4 of this broadcast is made (or failed)."""
        event = self._done.get(broadcast_id)
        if event is not None:
            await event.wait()

    async def _make(self, record: BroadcastRecord, done: asyncio.Event) -> None:
        try:
            loop = asyncio.get_running_loop()
            ready = await loop.run_in_executor(self._pool, self._export, record)
            if ready is not None:
                log_event(
                    log,
                    logging.INFO,
                    "recording_ready",
                    channel=record.channel,
                    broadcast=record.id,
                    size=ready.mp4_size,
                )
                if self._on_ready is not None:
                    self._on_ready(ready)
                if self._metrics is not None:
                    self._metrics.exports.labels("ok").inc()
        except Exception as exc:  # the streamed download still works without the file
            if self._metrics is not None:
                self._metrics.exports.labels("failed").inc()
            log_event(
                log,
                logging.ERROR,
                "mp4_export_failed",
                channel=record.channel,
                broadcast=record.id,
                reason=repr(exc),
            )
        finally:
            done.set()

    def _export(self, record: BroadcastRecord) -> BroadcastRecord | None:
        """Blocking: remux the segments into recording.mp4 and note its size in the record."""
        target = self._layout.recording_mp4(record.channel, record.id)
        if self._export_sources is not None:
            segments, inits = self._export_sources(record.channel, record.id)
        else:
            segments = recording_segments(self._layout, record)
            inits = init_segments(segments)
        if not segments:
            return None
        temporary = partial_path(target)
        try:
            export_mp4(segments, temporary, inits=inits)
            os.replace(temporary, target)
        except ExportError:
            temporary.unlink(missing_ok=True)
            raise
        size = target.stat().st_size
        directory = target.parent
        current = read_record(directory) or record
        current = replace(current, mp4_size=size)
        write_record(directory, current)
        self._catalog.put(current)
        if self._on_file_complete is not None:
            self._on_file_complete(target)
            self._on_file_complete(directory / RECORD_FILE)
        return current

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
