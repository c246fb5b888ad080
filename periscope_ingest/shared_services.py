"""The services a node may share with others, opened and wired for the Service (service.py).

- the object store (storage.url): the uploader of finished files and the read-through cache of
  files recorded elsewhere; with file:// the data directory is the store and neither exists;
- the cluster's Redis (cluster.redis_url): leases, the mirrored live edges, the broadcasts that
  move with their publishers (live/handover.py), the node list;
- recovery of the broadcasts a crash left live, one node at a time in a cluster; there also
  those of a node that died, once their publisher did not come back in time.

Unset, a node runs alone exactly as it always did; the Redis client is imported only when
cluster.redis_url is set (it costs every server memory at import).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.config import Settings
from periscope_ingest.live.pipeline import StreamPipeline
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics
from periscope_ingest.storage.catalog import BroadcastRecord
from periscope_ingest.storage.continuation import (
    ContinuedRecording,
    finalise_continued,
    load_continued,
)
from periscope_ingest.storage.layout import RECORD_FILE, RECORDING_PLAYLIST, DataLayout
from periscope_ingest.storage.objects import ObjectStore, open_store
from periscope_ingest.storage.recovery import recover_interrupted
from periscope_ingest.storage.replay_cache import ReplayCache

if TYPE_CHECKING:
    from periscope_ingest.live.cluster import ClusterLink
    from periscope_ingest.storage.stores import CatalogStore

log = logging.getLogger(__name__)


class SharedServices:
    def __init__(
        self, settings: Settings, layout: DataLayout, metrics: Metrics, registry: PublisherRegistry
    ) -> None:
        self._settings = settings
        self._layout = layout
        self._metrics = metrics
        self._registry = registry
        self.store: ObjectStore | None = None  # file:// (the data directory) or s3://
        # storage.url s3:// only: uploads of finished files, and fetches of missing ones.
        self.uploader: Uploader | None = None
        self.replay_cache: ReplayCache | None = None
        self.cluster: ClusterLink | None = None  # with cluster.redis_url
        self._catalog: CatalogStore | None = None
        self._finished: Callable[[BroadcastRecord], None] = lambda record: None
        self._tasks: set[asyncio.Task] = set()  # dead nodes' broadcasts being finalised here

    def open_store(self) -> None:
        """Blocking: the store; with s3://, the uploader and the read-through cache."""
        storage = self._settings.storage
        self.store = store = open_store(
            storage.url, self._layout.root, storage.s3_endpoint, storage.request_timeout
        )
        if not store.remote:
            return  # file://: the data directory is all there is, exactly as without a store
        self.uploader = Uploader(store, self._layout, storage, self._metrics)
        self.replay_cache = ReplayCache(
            store,
            self._layout,
            round(storage.cache_max_gb * 1e9),
            self._metrics.store_fetches.inc,
            storage.read_chunk_kb * 1024,
            storage.read_ahead_segments,
        )

    @property
    def file_complete(self) -> Callable[[Path], None] | None:
        """The uploader's notice of a complete file, or None (file://: nothing to upload)."""
        return self.uploader.file_complete if self.uploader is not None else None

    @property
    def recordings(self) -> ObjectStore | None:
        """Where a broadcast continued from another node has its recording so far: the store
        (or the data directory the nodes share); None alone (broadcasts never move)."""
        return self.store if self.cluster is not None else None

    async def join_cluster(self) -> None:
        """Before any publish is accepted (leases)."""
        settings = self._settings
        if settings.cluster.redis_url is None:
            return
        from periscope_ingest.live.cluster import ClusterLink  # loads the Redis client

        self.cluster = cluster = ClusterLink(
            settings.cluster, self._metrics, grace_s=settings.recording.reconnect_grace
        )
        await cluster.start()
        cluster.broadcast_ids = self._registry.broadcast_ids

    def wire_cluster(
        self,
        viewer_counts: Callable[[], dict[str, int]],
        catalog: CatalogStore,
        finished: Callable[[BroadcastRecord], None],
    ) -> None:
        """The registry and the cluster link, each told of the other; ``finished`` is told of a
        dead node's broadcast finalised here (its MP4 and webhook, as for any that ends)."""
        cluster, registry = self.cluster, self._registry
        if cluster is None:
            return
        self._catalog, self._finished = catalog, finished
        cluster.on_orphan = self._finalise_orphan
        cluster.renewable = registry.sending_media
        cluster.viewer_counts = viewer_counts
        cluster.held_broadcasts = registry.held_broadcasts
        cluster.on_adopted = registry.taken_over
        cluster.on_replaced = registry.replaced
        # The mirror carries each live channel's master playlist and init segments along.
        cluster.mirror.layout = self._layout
        registry.cluster = cluster
        if self.uploader is not None:
            registry.wait_uploaded = self._wait_uploaded
        self._metrics.cluster_remote_streams.set_function(lambda: len(cluster.remote.all()))

    def _finalise_orphan(self, channel: str, broadcast_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._finalise(channel, broadcast_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finalise(self, channel: str, broadcast_id: str) -> None:
        """A broadcast whose node died, with no publisher back in time: finalised here from the
        store (or the shared data directory), then no longer anyone's."""
        cluster, store = self.cluster, self.store
        assert cluster is not None and store is not None
        async with cluster.recovering():  # never alongside a start-up recovery of the same
            continued = await asyncio.to_thread(
                load_continued, self._layout, store, channel, broadcast_id
            )
            record = None
            if continued is not None:
                record = await asyncio.to_thread(self._store_finalised, continued)
        await cluster.handover.end_here(channel, broadcast_id)  # claimed: this node's to end
        if record is not None:
            log_event(
                log,
                logging.WARNING,
                "broadcast_recovered",
                channel=channel,
                broadcast=broadcast_id,
                segments=record.segments,
                duration=record.duration,
                reason="its node stopped and its publisher did not come back in time",
            )
            self._finished(record)

    def _store_finalised(self, continued: ContinuedRecording) -> BroadcastRecord:
        """Blocking: the finalised files to the store, the row to the catalog."""
        record = finalise_continued(self._layout, continued)
        directory = self._layout.broadcast_dir(record.channel, record.id)
        if self.uploader is not None:
            self.uploader.file_complete(directory / RECORDING_PLAYLIST)
            self.uploader.file_complete(directory / RECORD_FILE)
        self._catalog.put(record)
        return record

    async def _wait_uploaded(self, pipeline: StreamPipeline) -> None:
        """A broadcast handed over: its files reach the store before the next node reads them."""
        assert self.uploader is not None
        directory = self._layout.broadcast_dir(pipeline.channel, pipeline.broadcast_id)
        wait = self._settings.cluster.handover_wait
        await asyncio.to_thread(self.uploader.wait_directory, directory, wait)

    async def recover(self, catalog: CatalogStore) -> list[BroadcastRecord]:
        """Finalise the broadcasts a crash left live. In a cluster one node at a time does it,
        and leaves alone those another running node holds (processes of `serve --workers`
        share this data directory). Their files go to the store again: recovery rewrote their
        playlists and records, and the last run may have died with files of them waiting."""
        fetch = self.replay_cache.fetch_recording if self.replay_cache is not None else None
        if self.cluster is None:
            recovered = await asyncio.to_thread(
                recover_interrupted, self._layout, catalog, None, fetch
            )
        else:
            async with self.cluster.recovering():
                held = await self.cluster.broadcasts_elsewhere()
                recovered = await asyncio.to_thread(
                    recover_interrupted,
                    self._layout,
                    catalog,
                    lambda record: record.id in held,
                    fetch,
                )
        if self.uploader is not None:
            for record in recovered:
                directory = self._layout.broadcast_dir(record.channel, record.id)
                await asyncio.to_thread(self.uploader.upload_directory, directory)
        return recovered
