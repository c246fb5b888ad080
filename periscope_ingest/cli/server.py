"""``serve`` and the commands that talk to a running server over HTTP (``status``,
``health``), plus ``fetch-hlsjs``, which installs the player script the server's pages use."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from periscope_ingest.allocator import fix_malloc_thresholds
from periscope_ingest.logs import configure_logging

if TYPE_CHECKING:
    from periscope_ingest.config import Settings


def fetch_hlsjs(dest: Path | None) -> int:
    from periscope_ingest.web import hlsjs

    directory = dest or hlsjs.VENDOR_DIR
    try:
        hlsjs.fetch(directory)
    except (hlsjs.HlsJsError, OSError) as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    print(f"hls.js {hlsjs.HLSJS_VERSION} installed in {directory}")
    return 0


def serve(settings: Settings, worker: int | None = None, workers: int = 1) -> int:
    from periscope_ingest import service
    from periscope_ingest.live.cluster_errors import ClusterError
    from periscope_ingest.live.rtmp_server import TlsError
    from periscope_ingest.storage.layout import DataDirError
    from periscope_ingest.storage.postgres import DatabaseUnavailable

    configure_logging(settings.log_level, settings.log_format)
    # Before any thread or stream starts: see allocator.py.
    fix_malloc_thresholds(settings.memory.mmap_threshold, settings.memory.trim_threshold)
    try:
        loop_factory = _loop_factory(settings.event_loop)
    except ImportError as exc:
        print(
            f"periscope-ingest: event_loop = {settings.event_loop} cannot be used ({exc});"
            " install it, or set PERISCOPE_EVENT_LOOP=asyncio",
            file=sys.stderr,
        )
        return 2
    try:
        # Each `serve --workers N` process comes through here too, so each runs on it.
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(service.serve(settings, worker, workers))
    except service.PortInUse as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 1
    except (DataDirError, TlsError, ClusterError, DatabaseUnavailable) as exc:
        print(f"periscope-ingest: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop setting's loop (config.Settings.event_loop)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _server_url(settings: Settings, url: str | None) -> str:
    """The running server's HTTP address, from the settings (as the server itself reads them)."""
    if url is not None:
        return url
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.http_port}"


def health(settings: Settings, url: str | None) -> int:
    """Exit 0 if the server answers /healthz (the container's HEALTHCHECK)."""
    import urllib.request

    url = _server_url(settings, url)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/healthz", timeout=5) as response:
            response.read()
    except OSError as exc:
        print(f"periscope-ingest: no server answers at {url}: {exc}", file=sys.stderr)
        return 1
    return 0


def status(settings: Settings, url: str | None) -> int:
    import urllib.error
    import urllib.request

    url = _server_url(settings, url)
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/streams", timeout=5) as response:
            streams = json.loads(response.read())["streams"]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"periscope-ingest: no server answers at {url}: {exc}", file=sys.stderr)
        return 1
    if not streams:
        print("no live streams")
        return 0
    print(f"{'CHANNEL':20}  {'SINCE':20}  {'VIDEO':24}  {'KBIT/S':>7}  {'FPS':>5}  VIEWERS")
    for s in streams:
        video = f"{s['resolution'] or '-'} {s['video_codec'] or ''}".strip()
        kbits = f"{s['bitrate'] / 1000:.0f}" if s["bitrate"] else "-"
        fps = f"{s['frame_rate']:.1f}" if s["frame_rate"] else "-"
        state = " (reconnecting)" if s.get("reconnecting") else ""
        print(
            f"{s['channel']:20.20}  {s['started_at'][:19]:20}  {video:24.24}  {kbits:>7}"
            f"  {fps:>5}  {s.get('viewers', 0)}{state}"
        )
    return 0
