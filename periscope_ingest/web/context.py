"""What handlers reach through the app: set once by build_app."""

from __future__ import annotations

from aiohttp import web
from pydantic import SecretStr

from periscope_ingest.live.exports import Mp4Exports
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.storage.catalog import Catalog
from periscope_ingest.storage.layout import DataLayout

LAYOUT = web.AppKey("layout", DataLayout)
REGISTRY = web.AppKey("registry", PublisherRegistry)
CATALOG = web.AppKey("catalog", Catalog)
EXPORTS = web.AppKey("exports", Mp4Exports)
ADMIN_TOKEN = web.AppKey("admin_token", SecretStr | None)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
# A live playlist changes every segment; players reload it about once per target duration.
LIVE_PLAYLIST_CACHE = "max-age=1, must-revalidate"
# Segment names are never reused (the broadcast id is part of the path), so they never change.
SEGMENT_CACHE = "public, max-age=31536000, immutable"
