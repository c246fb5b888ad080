"""This node's live edges, mirrored into Redis for the other nodes' viewers.

Every update a local LiveEdge publishes (a new part, a new segment, the end) is queued here and
written by one task per stream: its short state (node, broadcast, sequence numbers, the stream's
description) in one hash and a message on the channel's pub/sub channel, so every node lists
every stream. The playlist text, the master playlist and the newest media (segments, parts, fMP4
init segments) are mirrored only while another node has viewers of the stream: such a node sets
the channel's expiring interest key (live/remote_edges.py) and renews it while they watch. Each
write asks whether the key is there; the answer decides the next write. The first write after
interest appears puts every file the playlist lists into Redis (read from this disk for those
not in memory) before the hash says "mirrored", so a remote viewer's first playlist lists only
files it can fetch (RFC 8216 6.2.2). Then the edge keeps its newest media in memory (the worker
hands it over) and each update carries its new files, until the interest expires. Mirroring every
stream whatever is watched cost a clustered node 1.1-1.4x a plain node's CPU and 2.5 MiB more
per stream (docs/benchmarks.md, sixth set).

The order matters: the media first, then the hash, then the message; a node that reads the
state after the message finds every file it lists. The master playlist is a file the segment
worker rewrites after a segment (rarely: when the peak bitrate grows); while mirroring it is
read again, off the event loop, once per new segment and carried in the same hash. The live
poster is shared under its own key (live/shared_poster.py), which the edge is given here.

Ingest never waits on Redis: the queue is bounded (cluster.max_pending). When Redis falls
behind, the oldest waiting updates (after the one being written) are merged into the next one
(their media is kept, their playlist text is superseded anyway), and media beyond
MAX_CARRIED_BYTES is dropped, counted in /metrics. Failures are logged once per outage, and the
writes go on with the next update.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from periscope_ingest.config_services import ClusterSettings
from periscope_ingest.live.cluster_keys import (
    changed_channel,
    interest_key,
    live_key,
    media_key,
)
from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.segment_commands import PlaylistUpdate
from periscope_ingest.live.shared_poster import RedisPosterShare
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.layout import DataLayout, InvalidName

log = logging.getLogger(__name__)

# Media carried over from merged updates while Redis is behind (about ten 3 Mb/s segments).
MAX_CARRIED_BYTES = 8 << 20
# The init segments and parts a live playlist lists (a preload hint's part does not exist yet).
_TAG_URI = re.compile(r'^#EXT-X-(?:MAP|PART):.*?URI="([^"]+)"', re.MULTILINE)
_MAP_URI = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


class EdgeMirror:
    def __init__(
        self, redis: Redis, node: str, settings: ClusterSettings, metrics: Metrics | None
    ) -> None:
        self._redis = redis
        self._node = node
        self._settings = settings
        self._metrics = metrics
        self._queues: dict[LiveEdge, deque[PlaylistUpdate]] = {}
        self._wake: dict[LiveEdge, asyncio.Event] = {}
        self._tasks: dict[LiveEdge, asyncio.Task] = {}
        self._leaving: set[LiveEdge] = set()  # handed over to another node: stop once written
        # The master playlist last read for each edge: (its next_sequence then, the text or "").
        self._masters: dict[LiveEdge, tuple[int, str]] = {}
        # Which streams another node has viewers of (their media is mirrored), and the files
        # of each written to Redis since its mirroring began.
        self._interested: dict[LiveEdge, bool] = {}
        self._in_redis: dict[LiveEdge, set[str]] = {}
        self._failing = False
        # Where the master playlists and init segments are (set by the service).
        self.layout: DataLayout | None = None

    def attach(self, edge: LiveEdge) -> None:
        """Mirror ``edge`` from now on (once; a continued broadcast keeps its edge)."""
        if edge in self._tasks:
            return
        self._queues[edge] = deque()
        self._wake[edge] = asyncio.Event()
        self._tasks[edge] = asyncio.get_running_loop().create_task(self._run(edge))
        edge.poster_share = RedisPosterShare(
            self._redis, edge.channel, edge.broadcast_id, self._settings.timeout
        )
        edge.listen(self._updated)
        if edge.playlist is not None:
            self._updated(edge, edge.playlist)

    def detach(self, edge: LiveEdge) -> None:
        """The broadcast went on on another node (live/handover.py): what is queued is still
        written, then mirroring stops (that node mirrors its own edge)."""
        if edge in self._tasks:
            self._leaving.add(edge)
            self._wake[edge].set()

    def _updated(self, edge: LiveEdge, update: PlaylistUpdate) -> None:
        queue = self._queues.get(edge)
        if queue is None:
            return
        queue.append(update)
        # The head is being written (or retried): the next one is merged into the one after.
        while len(queue) > self._settings.max_pending:
            older = queue[1]
            del queue[1]
            queue[1] = _merged(older, queue[1])
            if self._metrics is not None:
                self._metrics.cluster_updates_merged.inc()
        self._wake[edge].set()

    async def _run(self, edge: LiveEdge) -> None:
        queue, wake = self._queues[edge], self._wake[edge]
        try:
            while True:
                await wake.wait()
                wake.clear()
                while queue:
                    update = queue[0]
                    try:
                        started = await self._write(edge, update)
                    except (RedisError, OSError, TimeoutError) as exc:
                        self._failed(exc)
                        await asyncio.sleep(min(1.0, self._settings.timeout))
                        continue  # the same update again (merged with what came meanwhile)
                    self._recovered()
                    if started:
                        continue  # the same update again at once, with every file it lists
                    queue.popleft()
                    if update.ended:
                        return
                if edge in self._leaving:
                    return
        finally:
            self._leaving.discard(edge)
            self._queues.pop(edge, None)
            self._wake.pop(edge, None)
            self._tasks.pop(edge, None)
            self._masters.pop(edge, None)
            self._interested.pop(edge, None)
            self._in_redis.pop(edge, None)

    async def _write(self, edge: LiveEdge, update: PlaylistUpdate) -> bool:
        """Write ``update``; True if it found another node's interest just now (mirroring
        starts with the next write)."""
        # Media stays while the playlist lists it and as long again after (RFC 8216 6.2.2: a
        # segment just dropped stays downloadable), at least cluster.media_ttl; not longer:
        # Redis holds bitrate x ttl bytes per stream (120 s were 48 MB of a 3.2 Mb/s stream).
        listed_s = update.target_duration_s * (update.text.count("#EXTINF") + 1)
        ttl = max(1, round(self._settings.media_ttl), 2 * listed_s)
        channel, broadcast = edge.channel, edge.broadcast_id
        mirroring = self._interested.get(edge, False)
        state: dict[str, str | int | float] = {
            "node": self._node,
            "broadcast": broadcast,
            "next_sequence": update.next_sequence,
            "parts": update.parts,
            "ended": "1" if update.ended else "0",
            "target": update.target_duration_s,
            "mirrored": "1" if mirroring else "0",
            "low_latency": "1" if edge.low_latency else "0",
            "segment_duration": edge.segment_duration_s,
            "poster_interval": edge.poster_interval,
            "reconnecting": "1" if edge.reconnecting else "0",
            "info": json.dumps(edge.describe()),
            "updated": time.time(),
        }
        media: list[tuple[str, bytes]] = []
        inits: set[str] = set()
        listed: set[str] = set()
        carried: set[str] = set()
        in_redis = self._in_redis.setdefault(edge, set())
        if mirroring:
            state["text"] = update.text
            state["delta"] = update.delta or ""
            state["master"] = await self._master_text(edge, update)
            listed = _listed_files(update.text)
            inits = {uri.rsplit("/", 1)[-1] for uri in _MAP_URI.findall(update.text)}
            media = [item for item in update.media if item[0] not in in_redis]
            carried = {name for name, _ in media}
            media += await self._read_files(edge, listed - in_redis - carried)
        pipe = self._redis.pipeline(transaction=False)
        for name, data in media:
            pipe.set(media_key(channel, broadcast, name), data, ex=ttl)
        for name in inits & in_redis:
            pipe.expire(media_key(channel, broadcast, name), ttl)  # still needed: kept
        pipe.hset(live_key(channel), mapping=state)
        pipe.expire(live_key(channel), ttl)
        message = {
            "node": self._node,
            "broadcast": broadcast,
            "media": [n for n, _ in media],
            "mirrored": mirroring,
            "next_sequence": update.next_sequence,
            "ended": update.ended,
            "reconnecting": edge.reconnecting,
        }
        pipe.publish(changed_channel(channel), json.dumps(message))
        pipe.exists(interest_key(channel))
        results = await asyncio.wait_for(pipe.execute(), self._settings.timeout)
        if mirroring:
            in_redis.update(name for name, _ in media)
            if len(in_redis) > 4 * len(listed) + 16:  # forget what the playlist dropped long ago
                in_redis.intersection_update(listed | carried)
        interested = bool(results[-1]) and not update.ended
        if interested == mirroring:
            return False
        self._interested[edge] = interested
        in_redis.clear()  # (what it holds from an earlier interest may have expired)
        edge.keep_always(interested)
        log_event(
            log,
            logging.INFO,
            "cluster_mirror_started" if interested else "cluster_mirror_stopped",
            channel=channel,
            broadcast=broadcast,
        )
        return interested

    async def _read_files(self, edge: LiveEdge, names: set[str]) -> list[tuple[str, bytes]]:
        """Listed files not in Redis nor in the update (made while nobody elsewhere watched, or
        init segments), from this disk."""
        if not names or self.layout is None:
            return []
        layout, channel, broadcast = self.layout, edge.channel, edge.broadcast_id

        def read() -> list[tuple[str, bytes]]:
            found = []
            for name in sorted(names):
                # One not there (an init segment not written yet) is tried again next time.
                with contextlib.suppress(OSError, InvalidName):
                    path = layout.find_segment(channel, broadcast, name)
                    found.append((name, path.read_bytes()))
            return found

        return await asyncio.to_thread(read)

    async def _master_text(self, edge: LiveEdge, update: PlaylistUpdate) -> str:
        """The master playlist as the origin serves it; "" before it is written. Read again only
        when a segment was added (the worker rewrites it after one, if at all)."""
        read = self._masters.get(edge)
        if read is not None and read[0] == update.next_sequence:
            return read[1]
        text = ""
        if self.layout is not None:
            path = self.layout.master_playlist(edge.channel)
            text = await asyncio.to_thread(_read_text, path)
        if not text and read is not None:
            text = read[1]  # written once, never removed while live: a failed read keeps it
        self._masters[edge] = (update.next_sequence, text)
        return text

    def _failed(self, exc: BaseException) -> None:
        if self._metrics is not None:
            self._metrics.cluster_errors.inc()
        if not self._failing:
            self._failing = True
            log_event(log, logging.WARNING, "cluster_mirror_failed", reason=type(exc).__name__)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log_event(log, logging.INFO, "cluster_mirror_recovered")

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _listed_files(text: str) -> set[str]:
    """The file names of the segments, parts and init segments a media playlist lists."""
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    uris += _TAG_URI.findall(text)
    return {uri.rsplit("/", 1)[-1] for uri in uris}


def _read_text(path: Path) -> str:
    """Blocking: the file's text, "" if it is not there (yet)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def _merged(older: PlaylistUpdate, newer: PlaylistUpdate) -> PlaylistUpdate:
    """``newer`` carrying ``older``'s media too, as much as MAX_CARRIED_BYTES allows."""
    media = [*older.media, *newer.media]
    total = sum(len(data) for _, data in media)
    while media and total > MAX_CARRIED_BYTES:
        total -= len(media.pop(0)[1])
    return replace(newer, media=tuple(media))
