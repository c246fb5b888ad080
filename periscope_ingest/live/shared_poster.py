"""The live poster of a broadcast, shared by the nodes of a cluster through Redis.

Posters are made on request (web/posters.py) and renewed every hls.poster_interval seconds.
In a cluster each node could make its own from a different segment, and a viewer moving
between nodes would see different stills: instead the first node that needs one after it
expired makes it and stores it under one expiring key (SET NX), and every node serves those
bytes until the key expires. Redis being away only means each node makes its own meanwhile.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.exceptions import RedisError

from periscope_ingest.live.cluster_keys import poster_key


class RedisPosterShare:
    """The edge's PosterShare (live/edge.py) in a cluster."""

    def __init__(self, redis: Redis, channel: str, broadcast_id: str, timeout: float) -> None:
        self._redis = redis
        self._key = poster_key(channel, broadcast_id)
        self._timeout = timeout

    async def get(self) -> tuple[bytes, float] | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._key)
        pipe.pttl(self._key)
        try:
            data, left_ms = await asyncio.wait_for(pipe.execute(), self._timeout)
        except (RedisError, OSError, TimeoutError):
            return None
        if data is None or left_ms is None or left_ms <= 0:
            return None
        return data, left_ms / 1000

    async def put(self, data: bytes, interval: float) -> bytes:
        try:
            stored = await asyncio.wait_for(
                self._redis.set(self._key, data, nx=True, px=max(1, round(interval * 1000))),
                self._timeout,
            )
        except (RedisError, OSError, TimeoutError):
            return data
        if stored:
            return data
        found = await self.get()  # another node shared one meanwhile: serve the same
        return found[0] if found is not None else data
