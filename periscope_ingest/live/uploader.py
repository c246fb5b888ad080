"""Copies finished files to the object store (storage.url s3://), behind the disk, never in front.

Ingest writes to the local disk first and never waits on the store: the segment worker (and the
MP4 export, and the poster maker) call ``file_complete(path)`` after each atomic publish, which
only queues the path and returns. Each broadcast directory has its own FIFO queue, emptied by a
thread of its own that runs while the queue holds anything; FIFO keeps a segment ahead of the
recording playlist that lists it, so the store never lists what it does not hold for long.

The file is read at upload time, so a queued entry costs a path, not its bytes. A file that is
rewritten in place (recording.m3u8, broadcast.json) is queued once: a newer notice replaces the
waiting one and goes to the end (its upload carries the newest content, after the segments it
lists). A live recording playlist grows by appends: it goes up whole at most every
``size / storage.recording_playlist_kib_s`` seconds, otherwise as the bytes appended since
(storage/recording_tail.py), so its uploads cost the same an hour or twelve into a broadcast.
Past ``storage.upload_queue`` entries, segments still queue (they are never dropped, and the
worker's hand-off never blocks): the overflow is counted and logged. Failed uploads are retried
with exponential backoff (0.5 s doubling, at most ``storage.upload_retry_max``) until they
succeed or the file is gone (deleted by retention).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from periscope_ingest.config_services import StorageSettings
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.layout import (
    PART_NAME_PATTERN,
    RECORD_FILE,
    RECORDING_PLAYLIST,
    DataLayout,
    InvalidName,
)
from periscope_ingest.storage.objects import ObjectStore
from periscope_ingest.storage.recording_tail import crc32, tail_key, tail_object

log = logging.getLogger(__name__)

# Files that are replaced in place while a broadcast goes on: only their newest content counts.
REWRITTEN = frozenset({RECORDING_PLAYLIST, RECORD_FILE})
FIRST_RETRY_S = 0.5
_ENDLIST = b"#EXT-X-ENDLIST"
# A broadcast's last whole playlist upload is forgotten this long after its last upload (a
# broadcast whose writer stopped without a VOD playlist or a hand-over, e.g. a failed disk).
_WHOLE_FORGOTTEN_S = 3600.0
_END_BYTES = 64


@dataclass(eq=False, slots=True)
class _Pending:
    path: Path
    key: str
    since: float  # monotonic time of the notice


@dataclass(eq=False, slots=True)
class _WholeUpload:
    """The last whole upload of a live recording playlist: what its tail continues."""

    inode: int
    size: int
    crc: int
    end: bytes  # its last bytes: an inode number reused by a rewritten file is told apart
    next_whole_at: float  # monotonic: before it, only the tail goes up
    used: float  # monotonic time of the last upload, whole or tail
    tail_sent: bool = False


@dataclass(eq=False, slots=True)
class _DirectoryQueue:
    """The waiting files of one broadcast directory, and whether a thread is emptying it."""

    pending: deque[_Pending] = field(default_factory=deque)
    running: bool = False


def _ends_with(f: BinaryIO, offset: int, end: bytes) -> bool:
    """Whether the open file's bytes before ``offset`` end with ``end``; leaves the file
    positioned at ``offset``."""
    f.seek(offset - len(end))
    return f.read(len(end)) == end


class Uploader:
    def __init__(
        self,
        store: ObjectStore,
        layout: DataLayout,
        settings: StorageSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._layout = layout
        self._limit = settings.upload_queue
        self._retry_max = settings.upload_retry_max
        self._metrics = metrics
        self._playlist_bytes_s = settings.recording_playlist_kib_s * 1024
        # By broadcast directory; used by its upload thread, forgotten once the playlist ended.
        self._wholes: dict[Path, _WholeUpload] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a queue empties
        self._queues: dict[Path, _DirectoryQueue] = {}
        self._abandon = threading.Event()  # set at stop: retries give up, threads exit
        self._overflow = 0
        if metrics is not None:
            metrics.upload_queued.set_function(self.queued)
            metrics.upload_seconds_behind.set_function(self.seconds_behind)

    # -- any thread: the notices ---------------------------------------------------------------

    def file_complete(self, path: Path) -> None:
        """``path`` is complete on disk and should be in the store. Never blocks on the store."""
        try:
            key = self._layout.key_for(path)
        except InvalidName:
            log_event(log, logging.WARNING, "upload_refused", path=path, reason="not a stored file")
            return
        entry = _Pending(path, key, time.monotonic())
        with self._lock:
            queue = self._queues.setdefault(path.parent, _DirectoryQueue())
            if path.name in REWRITTEN:
                self._drop_waiting(queue, key)
            elif len(queue.pending) >= self._limit:
                self._overflowed(path)
            queue.pending.append(entry)
            if not queue.running and not self._abandon.is_set():
                queue.running = True
                threading.Thread(
                    target=self._empty,
                    args=(path.parent, queue),
                    name=f"upload-{path.parent.name}",
                    daemon=True,
                ).start()

    def upload_directory(self, directory: Path) -> int:
        """Blocking (lists a directory): queue every stored file of a broadcast directory,
        segments first, for a broadcast finalised by crash recovery (its rewritten playlist and
        record, and whatever was still waiting when the server died). Returns how many."""
        names = [
            p.name
            for p in directory.iterdir()
            if not p.name.startswith(".")
            and p.is_file()
            and PART_NAME_PATTERN.fullmatch(p.name) is None
        ]
        names.sort(key=lambda name: (name in REWRITTEN, name == RECORD_FILE, name))
        queued = 0
        for name in names:
            try:
                self._layout.key_for(directory / name)
            except InvalidName:
                continue  # not a stored file (a live playlist, a stray file)
            self.file_complete(directory / name)
            queued += 1
        return queued

    @staticmethod
    def _drop_waiting(queue: _DirectoryQueue, key: str) -> None:
        # The first entry may be uploading now (with older content): it stays, and so does the
        # new one; any other waiting entry of the same file is superseded by the new one.
        for waiting in list(queue.pending)[1:]:
            if waiting.key == key:
                queue.pending.remove(waiting)

    def _overflowed(self, path: Path) -> None:
        self._overflow += 1
        if self._metrics is not None:
            self._metrics.upload_overflow.inc()
        if self._overflow in (1, 10, 100) or self._overflow % 1000 == 0:
            log_event(
                log,
                logging.WARNING,
                "upload_queue_full",
                directory=path.parent,
                limit=self._limit,
                overflow=self._overflow,
                reason="the object store is slower than ingest; segments keep queueing",
            )

    def queued(self) -> int:
        with self._lock:
            return sum(len(q.pending) for q in self._queues.values())

    def seconds_behind(self) -> float:
        with self._lock:
            oldest = min(
                (q.pending[0].since for q in self._queues.values() if q.pending), default=None
            )
        return 0.0 if oldest is None else time.monotonic() - oldest

    # -- the upload threads -----------------------------------------------------------------------

    def _empty(self, directory: Path, queue: _DirectoryQueue) -> None:
        while True:
            with self._lock:
                if not queue.pending or self._abandon.is_set():
                    queue.running = False
                    if not queue.pending:
                        self._queues.pop(directory, None)
                    self._idle.notify_all()
                    return
                entry = queue.pending[0]
            self._upload(entry)
            with self._lock:
                if queue.pending and queue.pending[0] is entry:
                    queue.pending.popleft()

    def _upload(self, entry: _Pending) -> None:
        delay = min(FIRST_RETRY_S, self._retry_max)
        attempts = 0
        while not self._abandon.is_set():
            if not entry.path.is_file():
                return  # deleted since (retention, a new recording of the poster): nothing to do
            attempts += 1
            try:
                if entry.path.name == RECORDING_PLAYLIST:
                    self._put_recording_playlist(entry)
                else:
                    self._store.put_file(entry.key, entry.path)
            except FileNotFoundError:
                return
            except Exception as exc:  # the store is down or refuses: retried, never fatal
                if self._metrics is not None:
                    self._metrics.upload_errors.inc()
                log_event(
                    log,
                    logging.WARNING,
                    "upload_failed",
                    key=entry.key,
                    attempt=attempts,
                    retry_in=round(delay, 2),
                    reason=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                )
                self._abandon.wait(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            if self._metrics is not None:
                self._metrics.uploaded_files.inc()
            log_event(log, logging.DEBUG, "uploaded", key=entry.key, attempts=attempts)
            return

    def _put_recording_playlist(self, entry: _Pending) -> None:
        """Whole when due (or rewritten, or ended), else the bytes appended since the last
        whole upload as its tail: O(1) per segment however long the broadcast."""
        directory = entry.path.parent
        tail = tail_key(entry.key)
        now = time.monotonic()
        with self._lock:
            last = self._wholes.get(directory)
        with open(entry.path, "rb") as f:
            inode, size = (stat := os.fstat(f.fileno())).st_ino, stat.st_size
            # Appended to in place (storage/growing_file.py) since the last whole upload?
            grown = last is not None and last.inode == inode and size >= last.size
            if grown and now < last.next_whole_at and _ends_with(f, last.size, last.end):
                self._store.put_bytes(tail, tail_object(last.size, last.crc, f.read()))
                last.tail_sent, last.used = True, now
                return
            f.seek(0)
            whole = f.read()
        self._store.put_bytes(entry.key, whole)
        ended = whole[-64:].rstrip().endswith(_ENDLIST)  # (not a copy of the whole)
        with self._lock:
            if ended:
                self._wholes.pop(directory, None)
            else:
                for stale in [
                    d for d, w in self._wholes.items() if now - w.used > _WHOLE_FORGOTTEN_S
                ]:
                    del self._wholes[stale]
                self._wholes[directory] = _WholeUpload(
                    inode,
                    len(whole),
                    crc32(whole),
                    whole[-_END_BYTES:],
                    now + len(whole) / self._playlist_bytes_s,
                    now,
                )
        if ended or (last is not None and last.tail_sent):
            # What it continued is replaced: readers would ignore it, the store need not keep
            # it. (Also once a VOD playlist made elsewhere, by recovery, goes up.)
            self._store.delete(tail)

    def wait_directory(self, directory: Path, timeout: float) -> bool:
        """Blocking: until every file of ``directory`` queued so far is uploaded (a broadcast
        handed over to another node, which reads them next); False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._lock:
            try:
                while (queue := self._queues.get(directory)) is not None and queue.pending:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._abandon.is_set():
                        return False
                    self._idle.wait(min(left, 0.5))
            finally:
                self._wholes.pop(directory, None)  # another node writes it from now on
        return True

    # -- shutdown ------------------------------------------------------------------------------

    def stop(self, timeout: float) -> int:
        """Blocking: wait up to ``timeout`` s for the queues to empty, then give up on the rest
        (logged); returns how many files were left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(q.pending for q in self._queues.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(min(left, 0.5))
            left_files = sum(len(q.pending) for q in self._queues.values())
            self._abandon.set()
        if left_files:
            log_event(
                log,
                logging.ERROR,
                "uploads_left",
                files=left_files,
                reason=f"not uploaded within storage.upload_drain_timeout={timeout:g} s",
            )
        return left_files
