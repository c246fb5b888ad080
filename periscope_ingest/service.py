"""Builds and wires the parts; starts and stops them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import UTC, datetime

from aiohttp import web

from periscope_ingest.config import Settings
from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.rtmp_server import RtmpServer
from periscope_ingest.logs import log_event
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.recovery import recover_interrupted
from periscope_ingest.storage.retention import delete_broadcast, select_expired
from periscope_ingest.web.app import build_app

log = logging.getLogger(__name__)


class PortInUse(Exception):
    """A listen port is taken; the message names it."""


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = DataLayout(settings.data_dir)
        self.catalog: Catalog | None = None
        self.registry = PublisherRegistry(
            settings.rtmp.publisher_takeover_after, settings.recording.reconnect_grace
        )
        self.exports: Mp4Exports | None = None
        self.rtmp: RtmpServer | None = None
        self._runner: web.AppRunner | None = None
        self._retention: asyncio.Task | None = None
        self.http_port = 0

    async def start(self) -> None:
        self.layout.ensure()
        self.catalog = catalog = await asyncio.to_thread(Catalog, self.layout.catalog_path)
        await asyncio.to_thread(recover_interrupted, self.layout, catalog)
        self.exports = Mp4Exports(self.layout, catalog, enabled=self.settings.recording.make_mp4)
        # Recovered broadcasts, and those that ended while an export was pending, get their MP4.
        for record in await asyncio.to_thread(catalog.all):
            if record.status in ("ended", "interrupted") and record.mp4_size is None:
                self.exports.schedule(record)
        self.rtmp = RtmpServer(
            self.settings, self.layout, self.registry, catalog, self.exports.schedule
        )
        try:
            await self.rtmp.start()
        except OSError as exc:
            raise PortInUse(
                f"cannot listen for RTMP on {self.settings.host}:{self.settings.rtmp_port}:"
                f" {exc.strerror or exc}"
            ) from None
        app = build_app(
            self.layout, self.registry, catalog, self.exports, self.settings.admin_token
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.http_port)
        try:
            await site.start()
        except OSError as exc:
            await self.rtmp.stop()
            await self._runner.cleanup()
            raise PortInUse(
                f"cannot listen for HTTP on {self.settings.host}:{self.settings.http_port}:"
                f" {exc.strerror or exc}"
            ) from None
        server = site._server
        assert server is not None and server.sockets
        self.http_port = server.sockets[0].getsockname()[1]
        self._retention = asyncio.get_running_loop().create_task(self._retention_loop())
        log_event(
            log,
            logging.INFO,
            "server_started",
            rtmp=f"rtmp://{self.settings.host}:{self.rtmp.port}/{self.settings.rtmp.app}",
            http=f"http://{self.settings.host}:{self.http_port}/",
            data_dir=self.layout.root,
        )

    async def stop(self) -> None:
        """Live playlists get ENDLIST and files are flushed before the HTTP side goes away."""
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self.rtmp is not None:
            await self.rtmp.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.exports is not None:
            await self.exports.stop()
        if self.catalog is not None:
            self.catalog.close()
        log_event(log, logging.INFO, "server_stopped")

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
        settings = self.settings.recording
        expired = select_expired(
            self.catalog.all(),
            datetime.now(UTC),
            settings.max_age_days,
            round(settings.max_total_gb * 1e9),
        )
        for record in expired:
            delete_broadcast(self.layout, self.catalog, record)
            log_event(
                log,
                logging.INFO,
                "broadcast_deleted",
                channel=record.channel,
                broadcast=record.id,
                reason="retention",
            )
        return len(expired)


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly."""
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()
