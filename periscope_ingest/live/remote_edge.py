"""The live edge of a broadcast that another node of the cluster takes in.

A RemoteEdge answers this node's viewers exactly as the LiveEdge it mirrors answers the other
node's: the same playlist text (and delta), master playlist, newest segments and parts (and
fMP4 init segments), the same blocking-reload behaviour, and the live poster shared through
Redis (live/shared_poster.py). It is fed by live/remote_edges.py from Redis: every change the
publishing node mirrors there is published here, with the new media fetched while someone
watches on this node; a file not held in memory is fetched from Redis when asked for.

The origin mirrors the playlist and media only while some node has shown interest (its viewers
renew the channel's interest key, live/edge_mirror.py). Until then this edge lists the stream
(its description, sequence numbers) but has no playlist: the first request marks the interest
and waits (cluster.mirror_wait) for the origin's first mirrored update, which has put every file
it lists into Redis first.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from periscope_ingest.live.edge import LiveEdge, PosterShare
from periscope_ingest.live.segment_commands import PlaylistUpdate
from periscope_ingest.live.stream_info import StreamInfo

Fetch = Callable[[str, str, str], Awaitable[bytes | None]]  # (channel, broadcast, file name)
MarkInterest = Callable[[str], None]  # (channel): this node's viewers want its media


class RemoteEdge(LiveEdge):
    def __init__(
        self,
        channel: str,
        state: dict[str, str],
        fetch: Fetch,
        loop: asyncio.AbstractEventLoop,
        poster_share: PosterShare | None = None,
        *,
        mark_interest: MarkInterest,
        interest_ttl: float,
        mirror_wait: float,
    ) -> None:
        description = json.loads(state.get("info") or "{}")
        started = _parse_time(description.get("started_at"))
        super().__init__(
            StreamInfo(channel, state["broadcast"], started),
            low_latency=state.get("low_latency") == "1",
            segment_duration_s=float(state.get("segment_duration") or 2),
            poster_interval=float(state.get("poster_interval") or 30),
            keep_media=lambda keep: None,
            restream_status=list,
            loop=loop,
        )
        self.node = state.get("node", "?")
        self.files_here = False  # in Redis (the newest) and on the origin's disk
        self.poster_share = poster_share
        self.master = state.get("master") or None
        self._description = description
        self._fetch = fetch
        self.updated_at = time.monotonic()
        self.read_at = 0.0  # time.monotonic() when its hash was last read (apply)
        # The origin's newest segment number, mirrored or not (a handover continues from it).
        self.next_sequence = int(state.get("next_sequence") or 0)
        self._mark_interest = mark_interest
        self._interest_ttl = interest_ttl
        self._mirror_wait = mirror_wait
        self._interest_marked = -interest_ttl  # time.monotonic() of the last mark

    def watched(self, now: float | None = None) -> None:
        """A viewer here: the origin is told (at most three times per interest_ttl) to keep
        mirroring the stream's media."""
        now = time.monotonic() if now is None else now
        super().watched(now)
        if now - self._interest_marked > self._interest_ttl / 3:
            self._interest_marked = now
            self._mark_interest(self.channel)

    async def ready(self) -> None:
        if self.playlist is not None or self._closed:
            return
        self.watched()
        deadline = self._loop.time() + self._mirror_wait
        while self.playlist is None and not self._closed:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(asyncio.shield(self._changed), remaining)
            except TimeoutError:
                return

    def touch(self, next_sequence: int, reconnecting: bool) -> None:
        """The origin wrote an update without mirroring it (nobody elsewhere watches)."""
        self.updated_at = time.monotonic()
        self.next_sequence = max(self.next_sequence, next_sequence)
        self.reconnecting = reconnecting

    @property
    def wants_media(self) -> bool:
        """Someone watches on this node: new files are fetched as they are listed."""
        return time.monotonic() <= self._watched_until

    def describe(self) -> dict:
        return dict(self._description)

    def apply(self, state: dict[str, str], media: tuple[tuple[str, bytes], ...]) -> None:
        """The publishing node's edge changed: publish the same here."""
        self.updated_at = self.read_at = time.monotonic()
        self.next_sequence = int(state["next_sequence"])
        self.reconnecting = state.get("reconnecting") == "1"
        self.master = state.get("master") or self.master
        if state.get("info"):
            self._description = json.loads(state["info"])
        if state.get("mirrored", "1") != "1":
            # Not (or no longer) mirrored: a playlist from an earlier interest would list files
            # gone from Redis. The next request marks the interest again and waits.
            self.playlist = None
            self._media.clear()
            if state.get("ended") == "1":
                self.close()
            return
        delta = state.get("delta")
        self.publish(
            PlaylistUpdate(
                next_sequence=int(state["next_sequence"]),
                parts=int(state["parts"]),
                ended=state.get("ended") == "1",
                target_duration_s=int(state["target"]),
                text=state["text"],
                delta=delta if delta else None,
                media=media,
            )
        )

    async def fetch_media(self, name: str) -> bytes | None:
        data = await self._fetch(self.channel, self.broadcast_id, name)
        if data is not None:
            self.remember(name, data)
        return data


def _parse_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return datetime.now(UTC)
