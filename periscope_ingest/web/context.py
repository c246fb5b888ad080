"""What handlers reach through the app: set once by build_app."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import SecretStr

from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.live.restream import Restreamer
from periscope_ingest.live.uploader import Uploader
from periscope_ingest.live.webhooks import Webhooks
from periscope_ingest.metrics import Metrics, ViewerCounter
from periscope_ingest.storage.accounts import AccountStore
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout
from periscope_ingest.storage.replay_cache import ReplayCache
from periscope_ingest.sunset import Lifecycle
from periscope_ingest.web.downloads import Downloads
from periscope_ingest.web.forwarded import TrustedProxies

if TYPE_CHECKING:
    pass

LAYOUT = web.AppKey("layout", DataLayout)
REGISTRY = web.AppKey("registry", PublisherRegistry)
CATALOG = web.AppKey("catalog", Catalog)
EXPORTS = web.AppKey("exports", Mp4Exports)
ADMIN_TOKEN = web.AppKey("admin_token", SecretStr | None)
ACCOUNTS = web.AppKey("accounts", AccountStore | None)  # None: open publishing, no accounts
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
METRICS = web.AppKey("metrics", Metrics)
VIEWERS = web.AppKey("viewers", ViewerCounter)
RESTREAMER = web.AppKey("restreamer", Restreamer | None)
DOWNLOADS = web.AppKey("downloads", Downloads)
PROXIES = web.AppKey("proxies", TrustedProxies)
# storage.url s3://: finished broadcasts' files fetched on demand, and files made here uploaded.
# None with file:// (the data directory is all there is).
REPLAY_CACHE = web.AppKey("replay_cache", ReplayCache | None)
UPLOADER = web.AppKey("uploader", Uploader | None)
LIVE_ANSWERS = web.AppKey["LiveAnswers"]("live_answers")
PHASE_CHANGED = web.AppKey("phase_changed", asyncio.Event)  # wakes the service's phase watcher

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
# A live playlist changes every segment; players reload it about once per target duration.
LIVE_PLAYLIST_CACHE = "max-age=1, must-revalidate"
# Segment names are never reused (the broadcast id is part of the path), so they never change.
SEGMENT_CACHE = "public, max-age=31536000, immutable"
# On every response (web/app.py adds them, web/fast_path.py writes them): hls.js pages on other
# origins fetch playlists and segments, with Range.
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}


# Query integers are ASCII digits only: str.isdigit() also accepts '²' or '٣', which int() then
# refuses (a 500), and a number of thousands of digits costs int() time for nothing.
_MAX_QUERY_DIGITS = 18


def parse_count(raw: str) -> int | None:
    """A non-negative integer from a query parameter or path part, or None if it is not one."""
    if not raw or len(raw) > _MAX_QUERY_DIGITS or not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw)
