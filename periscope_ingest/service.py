"""Builds and wires the parts; starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from periscope_ingest.collector import settle_collector
from periscope_ingest.config import Settings
from periscope_ingest.first_start import first_channel
from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.publish_auth import PublishCallback
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.restream import Restreamer
from periscope_ingest.live.rtmp_server import PublishPolicy, RtmpServer, tls_context
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.live.webhooks import Webhooks
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics, ViewerCounter
from periscope_ingest.shared_services import SharedServices
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import BroadcastRecord, iso
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.storage.retention import apply_retention
from periscope_ingest.storage.stores import (
    CatalogStore,
    open_accounts,
    open_catalog,
    open_restream_store,
)
from periscope_ingest.sunset import Lifecycle
from periscope_ingest.web import hlsjs, urls
from periscope_ingest.web.app import AppParts, build_app
from periscope_ingest.web.context import LIVE_ANSWERS
from periscope_ingest.web.downloads import Downloads
from periscope_ingest.web.error_log import RequestErrorLog
from periscope_ingest.web.fast_answers import FastAnswers
from periscope_ingest.web.fast_path import FastPathSite
from periscope_ingest.web.forwarded import TrustedProxies

if TYPE_CHECKING:
    from periscope_ingest.live.cluster import ClusterLink

log = logging.getLogger(__name__)


def broadcast_event(record: BroadcastRecord) -> dict:
    """A webhook's view of a broadcast: its record, and where to get it."""
    return {**record.as_json(), "mp4": urls.replay_mp4(record.id)}


class PortInUse(Exception):
    """A listen port is taken; the message names it."""


class Service:
    def __init__(self, settings: Settings, worker: int | None = None, workers: int = 1) -> None:
        """``worker`` of ``workers``: one of the processes of `serve --workers` (cli/workers.py),
        which share the ports (SO_REUSEPORT) and the data directory; the first of them also
        does what is done once per data directory (first channel, pending exports, retention)."""
        self.settings = settings
        self.primary = worker in (None, 0)
        self.reuse_port = workers > 1
        self.layout = DataLayout(settings.data_dir)
        self.catalog: CatalogStore | None = None  # SQLite or PostgreSQL
        self.registry = PublisherRegistry(
            settings.rtmp.publisher_takeover_after, settings.recording.reconnect_grace
        )
        self.exports: Mp4Exports | None = None
        self.accounts: AccountStore | None = None  # None: open publishing
        self.lifecycle = Lifecycle(settings.sunset, self.layout.phase_file)
        self.webhooks = Webhooks(settings.webhooks)
        self.metrics = Metrics()
        self.viewers = ViewerCounter()
        self.metrics.live_streams.set_function(lambda: len(self.registry.live()))
        self.metrics.publishers.set_function(
            lambda: sum(1 for p in self.registry.live() if not p.suspended)
        )
        self._phase_changed = asyncio.Event()
        self._phase_watch: asyncio.Task | None = None
        self.rtmp: RtmpServer | None = None
        self.restreamer: Restreamer | None = None
        self._runner: web.AppRunner | None = None
        self.downloads: Downloads | None = None
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.publish_callback: PublishCallback | None = None
        self._retention: asyncio.Task | None = None
        self.http_port = 0
        self.http_site: FastPathSite | None = None
        self.https_site: FastPathSite | None = None  # https_port
        self.https_port = 0
        # The object store, the cluster's Redis, recovery (shared_services.py).
        self.shared = SharedServices(settings, self.layout, self.metrics, self.registry)

    @property
    def cluster(self) -> ClusterLink | None:
        return self.shared.cluster  # with cluster.redis_url

    @property
    def uploader(self) -> Uploader | None:
        return self.shared.uploader

    @property
    def replay_cache(self) -> ReplayCache | None:
        return self.shared.replay_cache

    async def start(self) -> None:
        # Loaded first: an unusable certificate stops the server before it does anything.
        uses_tls = self.settings.rtmps_port is not None or self.settings.https_port is not None
        tls = tls_context(self.settings.tls) if uses_tls else None
        self.layout.ensure()
        # Short blocking work (catalog queries, key and token lookups: asyncio.to_thread) has
        # the loop's default executor, sized here; downloads, clips and posters have their own
        # pools (web/downloads.py), so that they never make a lookup wait.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(self.settings.lookup_threads, thread_name_prefix="lookup")
        )
        self.downloads = Downloads(
            self.settings.downloads, self.layout, self.settings.http_write_timeout
        )
        if not hlsjs.installed():
            # Chrome and Firefox then cannot play on the pages (Safari and VLC can).
            log_event(
                log,
                logging.WARNING,
                "hls_js_missing",
                path=str(hlsjs.VENDOR_DIR / hlsjs.SCRIPT_NAME),
                fix=hlsjs.FETCH_COMMAND,
            )
        await asyncio.to_thread(self.shared.open_store)
        # An unreachable PostgreSQL raises DatabaseUnavailable here, before any port is taken.
        self.catalog = catalog = await asyncio.to_thread(
            open_catalog, self.settings.catalog, self.layout
        )
        await self.shared.join_cluster()
        recovered = await self.shared.recover(catalog)
        if not self.settings.open_publish:
            self.accounts = await asyncio.to_thread(
                open_accounts, self.settings.catalog, self.layout
            )
            first = None
            if self.primary:
                args = (self.settings, self.accounts, self.lifecycle, self.layout)
                first = await asyncio.to_thread(first_channel, *args)
            if first is not None:
                self.webhooks.emit("account.created", {"handle": first})  # sent once started
        await self.webhooks.start()
        self.exports = Mp4Exports(
            self.layout,
            catalog,
            enabled=self.settings.recording.make_mp4,
            on_ready=lambda record: self.webhooks.emit("recording.ready", broadcast_event(record)),
            metrics=self.metrics,
            on_file_complete=self.shared.file_complete,
            export_sources=(self.replay_cache.export_sources if self.replay_cache else None),
        )
        # Recovered broadcasts, and those that ended while an export was pending, get their MP4.
        for record in await asyncio.to_thread(catalog.all) if self.primary else recovered:
            if record.status in ("ended", "interrupted") and record.mp4_size is None:
                self.exports.schedule(record)
        store = await asyncio.to_thread(open_restream_store, self.settings.catalog, self.layout)
        self.restreamer = restreamer = Restreamer(
            self.settings.restream, store, self.registry, self.metrics
        )

        def broadcast_started(pipeline) -> None:
            restreamer.broadcast_started(pipeline)
            self.webhooks.emit(
                "broadcast.started",
                {
                    "id": pipeline.broadcast_id,
                    "channel": pipeline.channel,
                    "started_at": iso(pipeline.info.started_at),
                },
            )

        self.shared.wire_cluster(self._viewer_counts, catalog, self._broadcast_ended)
        if self.settings.auth.publish_url is not None:
            self.publish_callback = PublishCallback(self.settings.auth)
        policy = PublishPolicy(
            lifecycle=self.lifecycle,
            accounts=self.accounts,
            on_started=broadcast_started,
            on_ended=self._broadcast_ended,
            metrics=self.metrics,
            publish_callback=self.publish_callback,
            on_file_complete=self.shared.file_complete,
            recordings=self.shared.recordings,
        )
        self.rtmp = RtmpServer(
            self.settings,
            self.layout,
            self.registry,
            catalog,
            policy,
            tls=tls,
            reuse_port=self.reuse_port,
        )
        try:
            await self.rtmp.start()
        except OSError as exc:
            raise PortInUse(
                f"cannot listen for RTMP on {self.settings.host}:{self.settings.rtmp_port}:"
                f" {exc.strerror or exc}"
            ) from None
        app = build_app(
            AppParts(
                layout=self.layout,
                registry=self.registry,
                catalog=catalog,
                exports=self.exports,
                lifecycle=self.lifecycle,
                webhooks=self.webhooks,
                phase_changed=self._phase_changed,
                accounts=self.accounts,
                admin_token=self.settings.admin_token,
                metrics=self.metrics,
                viewers=self.viewers,
                restreamer=restreamer,
                downloads=self.downloads,
                proxies=self.proxies,
                replay_cache=self.replay_cache,
                uploader=self.uploader,
            )
        )
        keepalive = self.settings.http_keepalive_timeout
        self._runner = web.AppRunner(
            app, access_log=None, keepalive_timeout=keepalive, logger=RequestErrorLog()
        )
        await self._runner.setup()
        answers = FastAnswers(self.layout, app[LIVE_ANSWERS], self.metrics)
        site = FastPathSite(
            self._runner,
            self.settings.host,
            self.settings.http_port,
            answers,
            keepalive,
            self.settings.http_write_timeout,
            self.proxies,
            reuse_port=self.reuse_port,
        )
        await self._start_site(site, "HTTP", self.settings.http_port)
        self.http_site = site
        self.http_port = site.port
        if self.settings.https_port is not None:
            await self._start_https(answers, tls)
        loop = asyncio.get_running_loop()
        if self.primary:
            self._retention = loop.create_task(self._retention_loop())
        self._phase_watch = loop.create_task(self._watch_phase())
        if self.cluster is not None:
            # What `cluster status` shows of this node (listening addresses, as configured).
            self.cluster.addresses = {
                "http": f"{self.settings.host}:{self.http_port}",
                "rtmp": f"{self.settings.host}:{self.rtmp.port}",
            }
        log_event(
            log,
            logging.INFO,
            "server_started",
            rtmp=f"rtmp://{self.settings.host}:{self.rtmp.port}/{self.settings.rtmp.app}",
            rtmps=(
                f"rtmps://{self.settings.host}:{self.rtmp.tls_port}/{self.settings.rtmp.app}"
                if self.rtmp.tls_port is not None
                else None
            ),
            http=f"http://{self.settings.host}:{self.http_port}/",
            https=(
                f"https://{self.settings.host}:{self.https_port}/"
                if self.https_site is not None
                else None
            ),
            data_dir=self.layout.root,
            # The loop that runs, not the setting: uvloop.Loop or asyncio's own.
            event_loop=type(loop).__module__.partition(".")[0],
        )

    async def _start_https(self, answers: FastAnswers, tls: ssl.SSLContext | None) -> None:
        """The same HTTP side behind TLS, on https_port (its runner stops it with the other)."""
        assert self._runner is not None and self.rtmp is not None
        site = FastPathSite(
            self._runner,
            self.settings.host,
            self.settings.https_port,
            answers,
            self.settings.http_keepalive_timeout,
            self.settings.http_write_timeout,
            self.proxies,
            tls=tls,
            handshake_timeout=self.settings.tls.handshake_timeout,
            reuse_port=self.reuse_port,
        )
        await self._start_site(site, "HTTPS", self.settings.https_port)
        self.https_site = site
        self.https_port = site.port

    async def _start_site(self, site: FastPathSite, what: str, port: int | None) -> None:
        """Listen; a port that cannot be had stops what was started, with one line."""
        assert self.rtmp is not None and self._runner is not None
        try:
            await site.start()
        except OSError as exc:
            await self.rtmp.stop()
            await self._runner.cleanup()
            raise PortInUse(
                f"cannot listen for {what} on {self.settings.host}:{port}: {exc.strerror or exc}"
            ) from None

    async def stop(self) -> None:
        """Live playlists get ENDLIST and files are flushed before the HTTP side goes away."""
        for task in (self._retention, self._phase_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.rtmp is not None:
            await self.rtmp.stop()
        if self.restreamer is not None:
            await self.restreamer.stop()  # the broadcasts ended: their targets are told
        if self.cluster is not None:
            await self.cluster.stop()  # after the ends were mirrored: leases released
        if self._runner is not None:
            await self._runner.cleanup()
        if self.downloads is not None:
            self.downloads.close()
        if self.publish_callback is not None:
            await self.publish_callback.close()
        if self.exports is not None:
            await self.exports.stop()
        if self.uploader is not None:  # after the broadcasts ended and their MP4s were made
            await asyncio.to_thread(self.uploader.stop, self.settings.storage.upload_drain_timeout)
        await self.webhooks.stop()
        if self.catalog is not None:
            self.catalog.close()
        if self.accounts is not None:
            self.accounts.close()
        log_event(log, logging.INFO, "server_stopped")

    def _viewer_counts(self) -> dict[str, int]:
        now = time.monotonic()
        return {
            edge.channel: self.viewers.count(edge.channel, now) for edge in self.registry.edges()
        }

    def _broadcast_ended(self, record: BroadcastRecord) -> None:
        assert self.exports is not None
        self.exports.schedule(record)
        self.webhooks.emit("broadcast.ended", broadcast_event(record))
        self.metrics.forget_channel(record.channel)
        self.viewers.forget(record.channel)

    async def _watch_phase(self) -> None:
        """End live broadcasts the moment broadcasts close (by date or by the admin API)."""
        from periscope_ingest.sunset import Phase

        while True:
            if self.lifecycle.phase() >= Phase.BROADCASTS_CLOSED and self.registry.live():
                assert self.rtmp is not None
                reason = self.lifecycle.publish_refusal() or "broadcasts are closed"
                log_event(log, logging.WARNING, "broadcasts_closed", reason=reason)
                await self.rtmp.end_all_broadcasts(reason)
            next_change = self.lifecycle.next_change()
            wait = 60.0
            if next_change is not None:
                wait = min(wait, max(0.0, (next_change - datetime.now(UTC)).total_seconds()))
            self._phase_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._phase_changed.wait(), wait + 0.05)

    async def _retention_loop(self) -> None:
        settings = self.settings.recording
        if settings.max_age_days <= 0 and settings.max_total_gb <= 0:
            return
        while True:
            try:
                await asyncio.to_thread(self.apply_retention)
            except Exception as exc:  # a failed sweep is retried at the next interval
                log_event(log, logging.ERROR, "retention_failed", reason=repr(exc))
            await asyncio.sleep(settings.retention_interval)

    def apply_retention(self) -> int:
        """Blocking: delete what the retention settings say; returns how many were deleted."""
        assert self.catalog is not None
        return apply_retention(
            self.layout, self.catalog, self.settings.recording, self.replay_cache
        )


async def serve(settings: Settings, worker: int | None = None, workers: int = 1) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    service = Service(settings, worker, workers)
    await service.start()
    # What start-up made lives as long as the server: out of the collector's way (collector.py).
    frozen = settle_collector(settings.memory.gc_threshold)
    if frozen:
        log_event(
            log,
            logging.INFO,
            "collector_settled",
            frozen=frozen,
            young_threshold=settings.memory.gc_threshold,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        try:
            await asyncio.wait_for(service.stop(), settings.shutdown_timeout)
        except TimeoutError:
            # Whatever was not finalised is recovered (marked interrupted) at the next start.
            log_event(
                log,
                logging.ERROR,
                "shutdown_timeout",
                reason=f"not finished within shutdown_timeout={settings.shutdown_timeout:g} s",
            )
