"""What a viewer of a live stream is answered, decided once for both HTTP transports.

The aiohttp routes (web/live.py) and the fast path (web/fast_path.py with web/fast_answers.py)
both come here for: which live broadcast a request is about (the channel's LiveEdge, or none
after shutdown), who is watching (a playlist reload counts the viewer and keeps the newest
media in memory; a media request keeps it there), and the headers of each answer. CORS headers
are added by web/app.py's response hook and written by fast_answers.py from the same table
(web/context.CORS_HEADERS). The transports only turn these decisions into bytes on a socket.
"""

from __future__ import annotations

import time

from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.registry import PublisherRegistry
from periscope_ingest.metrics import ViewerCounter
from periscope_ingest.sunset import Lifecycle, Phase
from periscope_ingest.web.context import (
    LIVE_PLAYLIST_CACHE,
    PLAYLIST_TYPE,
    SEGMENT_CACHE,
    SEGMENT_TYPE,
)

# fMP4 init segments and fragments (RFC 8216bis 3.3 names no type; this is what Apple serves).
FMP4_TYPE = "video/mp4"

PLAYLIST_HEADERS = {"Content-Type": PLAYLIST_TYPE, "Cache-Control": LIVE_PLAYLIST_CACHE}


def segment_type(name: str) -> str:
    return SEGMENT_TYPE if name.endswith(".ts") else FMP4_TYPE


def segment_headers(name: str) -> dict[str, str]:
    """A live segment or part from memory: as from its file (a Range request goes there)."""
    return {
        "Content-Type": segment_type(name),
        "Cache-Control": SEGMENT_CACHE,
        "Accept-Ranges": "bytes",
    }


class LiveAnswers:
    def __init__(
        self, registry: PublisherRegistry, viewers: ViewerCounter, lifecycle: Lifecycle
    ) -> None:
        self._registry = registry
        self._viewers = viewers
        self._lifecycle = lifecycle

    def shut_down(self) -> bool:
        """After shutdown only aiohttp answers (410 for all but a few routes)."""
        return self._lifecycle.phase() >= Phase.SHUTDOWN

    def edge(self, channel: str) -> LiveEdge | None:
        """The channel's live broadcast, without counting anyone (LL-HLS waits, posters)."""
        return self._registry.edge(channel)

    def playlist_reloaded(self, channel: str, client: str) -> LiveEdge | None:
        """A request for the channel's live playlist: who reloads it is watching it (the
        estimate behind "viewers"), and its newest media is kept in memory for them."""
        edge = self._registry.edge(channel)
        if edge is not None:
            now = time.monotonic()  # one clock read per request for both
            self._viewers.seen(channel, client, now)
            edge.watched(now)
        return edge

    def media_requested(self, channel: str, broadcast: str) -> LiveEdge | None:
        """A request for a segment or part: the edge if it is of the live broadcast (an older
        broadcast of the channel is files only), which keeps its newest media in memory."""
        edge = self._registry.edge(channel)
        if edge is None or edge.broadcast_id != broadcast:
            return None
        edge.watched()
        return edge
