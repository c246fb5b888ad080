"""The live edge of a broadcast that another node of the cluster takes in.

A RemoteEdge answers this node's viewers exactly as the LiveEdge it mirrors answers the other
node's: the same playlist text (and delta), master playlist, newest segments and parts (and
fMP4 init segments), the same blocking-reload behaviour, and the live poster shared through
Redis (live/shared_poster.py). It is fed by live/remote_edges.py from Redis: every change the
publishing node mirrors there is published here, with the new media fetched while someone
watches on this node; a file not held in memory is fetched from Redis when asked for.
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


class RemoteEdge(LiveEdge):
    def __init__(
        self,
        channel: str,
        state: dict[str, str],
        fetch: Fetch,
        loop: asyncio.AbstractEventLoop,
        poster_share: PosterShare | None = None,
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

    @property
    def wants_media(self) -> bool:
        """Someone watches on this node: new files are fetched as they are listed."""
        return time.monotonic() <= self._watched_until

    def describe(self) -> dict:
        return dict(self._description)

    def apply(self, state: dict[str, str], media: tuple[tuple[str, bytes], ...]) -> None:
        """The publishing node's edge changed: publish the same here."""
        self.updated_at = time.monotonic()
        self.reconnecting = state.get("reconnecting") == "1"
        self.master = state.get("master") or self.master
        if state.get("info"):
            self._description = json.loads(state["info"])
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
