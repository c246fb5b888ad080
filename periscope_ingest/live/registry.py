"""Who is publishing to which channel: one publisher per channel at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from periscope_ingest.live.pipeline import StreamPipeline


class ChannelBusy(Exception):
    """Another publisher is live on this channel and still sending media."""


@dataclass(slots=True)
class Publication:
    pipeline: StreamPipeline
    client: str
    disconnect: Callable[[str], Awaitable[None]]  # ends the publisher's session, then its pipeline
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PublisherRegistry:
    def __init__(self, takeover_after_s: float) -> None:
        self._takeover_after_s = takeover_after_s
        self._by_channel: dict[str, Publication] = {}

    def live(self) -> list[StreamPipeline]:
        return [p.pipeline for p in self._by_channel.values()]

    def get(self, channel: str) -> StreamPipeline | None:
        publication = self._by_channel.get(channel)
        return publication.pipeline if publication else None

    async def make_room(self, channel: str) -> None:
        """Wait until ``channel`` is free; raise ChannelBusy if a live publisher holds it.

        OBS reconnects within seconds of a network drop while the old TCP connection may still
        look alive here. A holder that has sent no media for ``takeover_after_s`` is taken to be
        that stale connection and is disconnected, instead of refusing the reconnect until the old
        connection times out (OBS would loop on BadName meanwhile).
        """
        while (holder := self._by_channel.get(channel)) is not None:
            idle = time.monotonic() - holder.pipeline.last_media_at
            if not holder.done.is_set() and idle < self._takeover_after_s:
                raise ChannelBusy(channel)
            await holder.disconnect(f"replaced by a new publisher after {idle:.1f} s without media")
            await holder.done.wait()

    def add(self, channel: str, publication: Publication) -> None:
        if channel in self._by_channel:
            raise ChannelBusy(channel)
        self._by_channel[channel] = publication

    def remove(self, channel: str, publication: Publication) -> None:
        if self._by_channel.get(channel) is publication:
            del self._by_channel[channel]
        publication.done.set()
