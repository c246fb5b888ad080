"""Builds and wires the parts; starts and stops them in order."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from periscope_ingest.config import Settings
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.rtmp_server import RtmpServer
from periscope_ingest.logs import log_event
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.web.app import build_app

log = logging.getLogger(__name__)


class PortInUse(Exception):
    """A listen port is taken; the message names it."""


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.layout = DataLayout(settings.data_dir)
        self.registry = PublisherRegistry(settings.rtmp.publisher_takeover_after)
        self.rtmp = RtmpServer(settings, self.layout, self.registry)
        self._runner: web.AppRunner | None = None
        self.http_port = 0

    async def start(self) -> None:
        self.layout.ensure()
        try:
            await self.rtmp.start()
        except OSError as exc:
            raise PortInUse(
                f"cannot listen for RTMP on {self.settings.host}:{self.settings.rtmp_port}:"
                f" {exc.strerror or exc}"
            ) from None
        self._runner = web.AppRunner(build_app(self.layout, self.registry), access_log=None)
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
        await self.rtmp.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        log_event(log, logging.INFO, "server_stopped")


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
