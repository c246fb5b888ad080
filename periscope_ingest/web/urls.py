"""Every public URL the server hands out, in one place: the route patterns aiohttp registers and
the links put into API answers, webhooks and the first-start message. The web pages' scripts
(static/js) build the same links from the API's fields."""

from __future__ import annotations

# Route patterns (also the metrics' route labels, and what web/fast_path.py answers).
LIVE_PLAYLIST_ROUTE = "/live/{channel}/index.m3u8"
LIVE_MASTER_ROUTE = "/live/{channel}/master.m3u8"
LIVE_SEGMENT_ROUTE = "/live/{channel}/{broadcast}/{segment}"
LIVE_POSTER_ROUTE = "/live/{channel}/poster.jpg"
REPLAY_PLAYLIST_ROUTE = "/replays/{id}/index.m3u8"
REPLAY_SEGMENT_ROUTE = "/replays/{id}/{segment}"
REPLAY_MP4_ROUTE = "/replays/{id}.mp4"
REPLAY_POSTER_ROUTE = "/replays/{id}/poster.jpg"


def live_playlist(channel: str) -> str:
    return f"/live/{channel}/index.m3u8"


def replay_playlist(broadcast_id: str) -> str:
    return f"/replays/{broadcast_id}/index.m3u8"


def replay_mp4(broadcast_id: str) -> str:
    return f"/replays/{broadcast_id}.mp4"
