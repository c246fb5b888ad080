"""The live edge of one broadcast: the one object viewers are answered from.

The pipeline cuts and the segment worker writes; what they have published lands here, and web/
(the aiohttp routes and the fast path alike) reads only this:

- the live playlist as last published (``playlist``: its text, delta update and what it lists);
- the newest segments and parts in memory while the stream is watched (``media``), so a thousand
  viewers fetching what was just listed cost no stat, open or read each;
- the LL-HLS blocking-reload waiters (``wait_for``): every held request awaits one shared future,
  resolved once per playlist change, so nothing polls and a thousand waiters cost a thousand
  callbacks once per part;
- what /api/streams and the posters report about the stream (``info``, ``reconnecting``,
  ``restream_status``, ``poster_interval``);
- in a cluster, what other nodes need to answer as this one does: the master playlist text
  (``master``, on a RemoteEdge; a local edge's is its file) and where the live poster is shared
  (``poster_share``), so every node serves the same JPEG.

Everything here runs on the event loop; the worker's reports reach it through the pipeline's
call_soon_threadsafe. In a cluster (live/cluster.py) each update is also handed to the
``listeners`` that mirror it into Redis, and other nodes answer their viewers from a RemoteEdge
(live/remote_edge.py): the same interface, fed from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from periscope_ingest.live.segment_commands import PlaylistUpdate
from periscope_ingest.live.stream_info import StreamInfo
from periscope_ingest.storage.layout import parse_part_name, parse_segment_name

# Blocking playlist reloads are held at most this many target durations (RFC 8216bis 6.2.5.2).
_HOLD_TARGET_DURATIONS = 3
# A watched stream keeps its newest files in memory for viewers: the segments with the last
# MEMORY_SEGMENTS sequence numbers and the parts of the segment being written. Players fetch
# what was just listed; older files are served from disk. "Watched" lasts WATCHED_FOR_S after
# the last playlist or media request.
MEMORY_SEGMENTS = 3
WATCHED_FOR_S = 30.0


class PosterShare(Protocol):
    """The live poster of one broadcast as the nodes of a cluster share it (live/shared_poster.py):
    whichever node makes it first, every node serves those bytes until it is renewed."""

    async def get(self) -> tuple[bytes, float] | None:
        """The shared poster and the seconds it stays current; None if there is none now."""
        ...

    async def put(self, data: bytes, interval: float) -> bytes:
        """Share ``data`` for ``interval`` seconds unless another node just shared one: the
        poster to serve either way."""
        ...


class LiveEdge:
    """What viewers of one live broadcast see. Published into by its StreamPipeline."""

    def __init__(
        self,
        info: StreamInfo,
        *,
        low_latency: bool,
        segment_duration_s: float,
        poster_interval: float,
        keep_media: Callable[[bool], None],
        restream_status: Callable[[], list[dict]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.info = info
        self.channel = info.channel
        self.broadcast_id = info.broadcast_id
        self.low_latency = low_latency  # LL-HLS: blocking reloads and parts
        self.poster_interval = poster_interval  # how often its live poster is renewed
        self.segment_duration_s = segment_duration_s
        self._keep_media = keep_media  # tells the worker to hand finished files back, or not
        self.restream_status = restream_status  # each restream target's state, for the API
        self.reconnecting = False  # the publisher dropped off and may come back (grace)
        self._loop = loop
        self.playlist: PlaylistUpdate | None = None
        self._changed: asyncio.Future[None] = loop.create_future()
        self._closed = False
        self._media: dict[str, tuple[int, bytes]] = {}  # file name -> (sequence, bytes)
        self._watched_until = 0.0
        # Called with every update after it is published here (a cluster's mirror into Redis,
        # which wants the newest media while another node has viewers, see keep_always).
        self.listeners: list[Callable[[LiveEdge, PlaylistUpdate], None]] = []
        self.always_keep = False
        # A broadcast taken in here has its files on this disk; a RemoteEdge's are in Redis.
        self.files_here = True
        # The master playlist text, when it is not a file here (a RemoteEdge's, from Redis).
        self.master: str | None = None
        # In a cluster: where this broadcast's live poster is shared with the other nodes.
        self.poster_share: PosterShare | None = None

    def listen(self, listener: Callable[[LiveEdge, PlaylistUpdate], None]) -> None:
        """Hand every update to ``listener`` (a cluster's mirror into Redis)."""
        self.listeners.append(listener)

    def keep_always(self, keep: bool) -> None:
        """Keep the newest media whether or not anyone watches here (a cluster's mirror, while
        another node has viewers of this stream), or from now on only while watched here."""
        self.always_keep = keep
        if keep:
            self._keep_media(True)

    async def ready(self) -> None:
        """Wait (bounded) until the playlist can be answered: a local edge's always can (None
        before its first segment); a RemoteEdge's once its origin mirrors it (remote_edge.py)."""

    @property
    def started_at(self) -> datetime:
        return self.info.started_at

    def describe(self) -> dict:
        """What /api/streams says of the stream, before web/ adds its URLs and counts."""
        return self.info.describe()

    async def fetch_media(self, name: str) -> bytes | None:
        """A listed file not held in memory, from elsewhere than this node's disk: a local
        broadcast's files are on the disk, so None (a RemoteEdge fetches from Redis)."""
        return None

    # -- from the pipeline ----------------------------------------------------------------------

    def publish(self, update: PlaylistUpdate) -> None:
        """The worker wrote a new live playlist: viewers and held requests get it now."""
        self._keep(update)
        self.playlist = update
        self._notify_changed()
        for listener in self.listeners:
            listener(self, update)

    def close(self) -> None:
        """The broadcast is over and its last playlist published: held requests answer with
        whatever is final."""
        self._closed = True
        self._notify_changed()

    # -- the newest files in memory, for viewers ------------------------------------------------

    def watched(self, now: float | None = None) -> None:
        """A viewer asked for this stream's playlist or media: keep the newest files in memory.
        ``now``: time.monotonic(), when the caller has just read it."""
        self._watched_until = (time.monotonic() if now is None else now) + WATCHED_FOR_S
        self._keep_media(True)

    def media(self, name: str) -> bytes | None:
        """A segment or part file of this broadcast, if it is one of the newest ones."""
        kept = self._media.get(name)
        return kept[1] if kept is not None else None

    def remember(self, name: str, data: bytes) -> None:
        """A listed file read from disk for a viewer (made before anyone watched): kept like
        those the writer hands over, if it is among the newest, so the next viewers get it
        from memory."""
        sequence = _media_sequence(name)
        update = self.playlist
        if sequence is None or update is None or time.monotonic() > self._watched_until:
            return
        if sequence >= update.next_sequence - MEMORY_SEGMENTS:
            self._media.setdefault(name, (sequence, data))

    def _keep(self, update: PlaylistUpdate) -> None:
        if not self.always_keep and time.monotonic() > self._watched_until:
            self._keep_media(False)
            self._media.clear()
            return
        for name, data in update.media:
            if (sequence := _media_sequence(name)) is not None:
                self._media[name] = (sequence, data)
        oldest = update.next_sequence - MEMORY_SEGMENTS
        if any(sequence < oldest for sequence, _ in self._media.values()):
            self._media = {n: kept for n, kept in self._media.items() if kept[0] >= oldest}

    # -- blocking playlist reload (LL-HLS) --------------------------------------------------------

    def has(self, msn: int, part: int | None) -> bool:
        """Whether the published live playlist holds segment `msn` (complete, when `part` is
        None) or part `part` of it, or anything later; always True once it has ended."""
        update = self.playlist
        if update is None:
            return False
        if update.ended or msn < update.next_sequence:
            return True
        return part is not None and msn == update.next_sequence and part < update.parts

    def hold_timeout(self) -> float:
        """How long a blocking request may be held: three target durations (RFC 8216bis)."""
        if self.playlist is not None:
            target = self.playlist.target_duration_s
        else:
            target = max(1, round(self.segment_duration_s))
        return _HOLD_TARGET_DURATIONS * target

    async def wait_for(self, msn: int, part: int | None, timeout: float) -> bool:
        """Wait until `has(msn, part)`; False after `timeout` seconds. Costs no CPU meanwhile:
        every waiter awaits the same future, resolved once per playlist change."""
        loop = self._loop
        deadline = loop.time() + timeout
        while not self.has(msn, part):
            if self._closed:
                return self.has(msn, part)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                return self.has(msn, part)
        return True

    def _notify_changed(self) -> None:
        changed, self._changed = self._changed, self._loop.create_future()
        if not changed.done():
            changed.set_result(None)


def _media_sequence(name: str) -> int | None:
    part = parse_part_name(name)
    return part[0] if part is not None else parse_segment_name(name)
