"""Who is publishing to which channel, and how broadcasts end.

One publisher per channel at a time. A broadcast outlives a dropped connection for a grace window
(phones drop off networks): if the same key publishes again within it, the broadcast continues
after a discontinuity; otherwise it ends when the window closes. An explicit unpublish (the
broadcaster pressed "stop") ends it at once.

In a cluster (live/cluster.py) "one publisher per channel" holds across nodes: a claim also
takes the channel's lease, and viewers' lookups (``edge``, ``edges``) also find the streams
other nodes take in. A broadcast also moves with its publisher (live/handover.py): a publisher
back on another node within the grace window continues its broadcast there (``adopt``), and the
node it left hands it over instead of ending it (``taken_over``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from periscope_ingest.live.cluster_errors import LeaseUnavailable
from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.logs import log_event
from periscope_ingest.storage.continuation import ContinuedRecording

if TYPE_CHECKING:
    from periscope_ingest.live.cluster import ClusterLink  # loads the Redis client

log = logging.getLogger(__name__)


class ChannelBusy(Exception):
    """Another publisher is live on this channel and still sending media (or, in a cluster,
    its lease cannot be checked: ``reason`` says so)."""

    def __init__(self, channel: str, reason: str | None = None) -> None:
        super().__init__(channel)
        self.reason = reason


@dataclass(slots=True)
class Publication:
    pipeline: StreamPipeline
    client: str | None  # None while suspended (no connection)
    disconnect: Callable[[str], Awaitable[None]] | None  # ends the publisher's session
    grace: asyncio.TimerHandle | None = None
    ending: asyncio.Task | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    unleasing: asyncio.Task | None = None  # cluster: the lease given up when the publisher left


class PublisherRegistry:
    def __init__(self, takeover_after_s: float, reconnect_grace_s: float) -> None:
        self._takeover_after_s = takeover_after_s
        self._grace_s = reconnect_grace_s
        self._by_channel: dict[str, Publication] = {}
        self.cluster: ClusterLink | None = None  # set by the service when there is one
        # Cluster with an object store: waits until a broadcast's files handed over to another
        # node are uploaded (set by the service).
        self.wait_uploaded: Callable[[StreamPipeline], Awaitable[None]] | None = None

    def live(self) -> list[StreamPipeline]:
        return [p.pipeline for p in self._by_channel.values() if p.ending is None]

    def get(self, channel: str) -> StreamPipeline | None:
        publication = self._by_channel.get(channel)
        return publication.pipeline if publication and publication.ending is None else None

    # What web/ reads: the edges viewers are answered from, never the pipelines.

    def edge(self, channel: str) -> LiveEdge | None:
        publication = self._by_channel.get(channel)
        if publication is not None and publication.ending is None:
            return publication.pipeline.edge
        return self.cluster.remote.get(channel) if self.cluster is not None else None

    def edges(self) -> list[LiveEdge]:
        local = [p.pipeline.edge for p in self._by_channel.values() if p.ending is None]
        if self.cluster is None:
            return local
        here = {edge.channel for edge in local}
        return local + [e for e in self.cluster.remote.all() if e.channel not in here]

    def broadcast_ids(self) -> list[str]:
        """Every broadcast held here, live or waiting for its publisher to come back."""
        return [p.pipeline.broadcast_id for p in self._by_channel.values()]

    def viewers_elsewhere(self, channel: str) -> int:
        """The channel's viewers on the cluster's other nodes, as last counted (0 alone)."""
        return self.cluster.other_viewers.get(channel, 0) if self.cluster is not None else 0

    def sending_media(self) -> set[str]:
        """Channels whose publisher sent media lately: their cluster leases are renewed."""
        now = time.monotonic()
        return {
            channel
            for channel, p in self._by_channel.items()
            if p.ending is None
            and p.client is not None
            and now - p.pipeline.last_media_at < self._takeover_after_s
        }

    async def claim(self, channel: str) -> StreamPipeline | None:
        """Make ``channel`` available to a new publisher.

        Returns the broadcast to continue (one suspended within its grace window), or None when
        the caller starts a new broadcast. Raises ChannelBusy if a live publisher holds it.

        OBS reconnects within seconds of a network drop while the old TCP connection may still
        look alive here. A holder that has sent no media for ``takeover_after_s`` is taken to be
        that stale connection and is disconnected (its broadcast is then continued), instead of
        refusing the reconnect until the old connection times out (OBS would loop on BadName).
        """
        if self.cluster is not None:
            holder = self._by_channel.get(channel)
            if holder is not None and holder.unleasing is not None:
                await holder.unleasing  # never after this claim's own acquire
            try:
                if not await self.cluster.acquire(channel):
                    raise ChannelBusy(channel)
            except LeaseUnavailable as exc:
                raise ChannelBusy(channel, f"the cluster cannot be reached ({exc})") from None
        while (holder := self._by_channel.get(channel)) is not None:
            if holder.ending is not None:
                await holder.done.wait()
                continue
            if holder.client is None and holder.pipeline.writer_failed:
                # Its recording failed while the publisher was away: continuing it would take
                # media that nothing records. It ends, and the publisher starts a new broadcast.
                self.end(channel, holder, "the recording could not be written")
                continue
            if holder.client is None:  # suspended: continue it
                if holder.grace is not None:
                    holder.grace.cancel()
                    holder.grace = None
                del self._by_channel[channel]
                return holder.pipeline
            idle = time.monotonic() - holder.pipeline.last_media_at
            if idle < self._takeover_after_s or holder.disconnect is None:
                raise ChannelBusy(channel)
            # The session's connection_lost suspends the publication; the loop then resumes it.
            await holder.disconnect(f"replaced by a new publisher after {idle:.1f} s without media")
            await asyncio.sleep(0)
        return None

    async def adopt(
        self,
        channel: str,
        load: Callable[[str, str], Awaitable[ContinuedRecording | None]],
    ) -> ContinuedRecording | None:
        """Cluster only, after ``claim`` found nothing here to continue: the channel's broadcast
        another node held within its grace window, taken over (``load`` reads its recording so
        far); None when a new broadcast starts."""
        cluster = self.cluster
        if cluster is None:
            return None
        try:
            adopted = await cluster.handover.adopt(channel)
            if adopted is None:
                return None
            flushed = await cluster.handover.wait_flushed(channel, adopted)
        except LeaseUnavailable as exc:
            log_event(log, logging.WARNING, "handover_failed", channel=channel, reason=repr(exc))
            return None
        continued = await load(channel, adopted.broadcast_id)
        seen = cluster.remote.get(channel)  # the previous node's live edge, as last written
        if continued is not None and seen and seen.broadcast_id == adopted.broadcast_id:
            continued = continued.numbered_after(seen.next_sequence)
        log_event(
            log,
            logging.INFO if continued is not None else logging.WARNING,
            "broadcast_adopted" if continued is not None else "handover_failed",
            channel=channel,
            broadcast=adopted.broadcast_id,
            previous=adopted.previous,
            previous_runs=adopted.previous_runs,
            flushed=flushed,
            **({} if continued else {"reason": "its recording could not be read"}),
        )
        return continued

    async def announce(self, channel: str, broadcast_id: str) -> None:
        """Cluster only: this node holds the channel's broadcast, which may move with its
        publisher from now on."""
        if self.cluster is None:
            return
        try:
            await self.cluster.handover.hold(channel, broadcast_id)
        except LeaseUnavailable as exc:
            log_event(log, logging.WARNING, "handover_unsaid", channel=channel, reason=repr(exc))

    def held_broadcasts(self) -> dict[str, str]:
        """Channel: broadcast id of every broadcast held here and not ending (cluster)."""
        return {
            channel: p.pipeline.broadcast_id
            for channel, p in self._by_channel.items()
            if p.ending is None
        }

    def taken_over(self, channel: str) -> None:
        """Another node adopted the channel's broadcast: hand it over (no ending here)."""
        publication = self._by_channel.get(channel)
        if publication is None or publication.ending is not None:
            return
        if publication.grace is not None:
            publication.grace.cancel()
            publication.grace = None
        publication.ending = asyncio.get_running_loop().create_task(
            self._hand_over(channel, publication)
        )

    def replaced(self, channel: str) -> None:
        """Another node started a new broadcast on the channel (this one was taken for dead)."""
        publication = self._by_channel.get(channel)
        if publication is not None:
            self.end(channel, publication, "another node took the channel")

    async def _hand_over(self, channel: str, publication: Publication) -> None:
        pipeline = publication.pipeline
        try:
            if publication.disconnect is not None:  # a stale connection, still open here
                await publication.disconnect("the broadcast continues on another node")
            await pipeline.hand_over()
            if self.cluster is not None:
                self.cluster.detach(pipeline.edge)
            if self.wait_uploaded is not None:
                await self.wait_uploaded(pipeline)
            if self.cluster is not None:
                await self.cluster.handover.flushed(channel, pipeline.broadcast_id)
        finally:
            if self._by_channel.get(channel) is publication:
                del self._by_channel[channel]
            publication.done.set()
            log_event(
                log,
                logging.INFO,
                "broadcast_handed_over",
                channel=channel,
                broadcast=pipeline.broadcast_id,
            )

    def add(self, channel: str, publication: Publication) -> None:
        if channel in self._by_channel:
            raise ChannelBusy(channel)
        self._by_channel[channel] = publication
        if self.cluster is not None:
            self.cluster.publish(publication.pipeline.edge)

    def suspend(self, channel: str, publication: Publication) -> None:
        """The publisher's connection is gone without an unpublish: wait for it to come back."""
        if self._by_channel.get(channel) is not publication or publication.ending is not None:
            return
        publication.pipeline.suspend()
        publication.client = None
        publication.disconnect = None
        if self.cluster is not None:
            # The publisher may come back on another node: that node may take the channel now.
            publication.unleasing = asyncio.get_running_loop().create_task(
                self.cluster.release(channel)
            )
        if self._grace_s <= 0:
            self.end(channel, publication, "publisher disconnected")
            return
        loop = asyncio.get_running_loop()
        publication.grace = loop.call_later(
            self._grace_s,
            self.end,
            channel,
            publication,
            f"no reconnect within reconnect_grace={self._grace_s:g} s",
        )

    def end(
        self, channel: str, publication: Publication, reason: str, status: str = "ended"
    ) -> asyncio.Task:
        """End the broadcast (ENDLIST, VOD recording); idempotent. Returns the ending task."""
        if publication.ending is None:
            if publication.grace is not None:
                publication.grace.cancel()
                publication.grace = None
            publication.ending = asyncio.get_running_loop().create_task(
                self._finish(channel, publication, reason, status)
            )
        return publication.ending

    async def _finish(self, channel: str, publication: Publication, reason: str, status: str):
        pipeline, cluster = publication.pipeline, self.cluster
        if cluster is not None and not await cluster.handover.end_here(
            channel, pipeline.broadcast_id
        ):
            # Adopted by another node just now (its publisher is back there): not ended here.
            publication.ending = None
            self.taken_over(channel)
            return
        try:
            await pipeline.finish(status)
        finally:
            if self._by_channel.get(channel) is publication:
                del self._by_channel[channel]
                if cluster is not None:
                    await cluster.release(channel)
            publication.done.set()
            log_event(
                log,
                logging.INFO,
                "broadcast_ended",
                channel=channel,
                broadcast=publication.pipeline.broadcast_id,
                reason=reason,
            )

    async def end_all(self, reason: str) -> None:
        tasks = [self.end(c, p, reason) for c, p in list(self._by_channel.items())]
        await asyncio.gather(*tasks, return_exceptions=True)
