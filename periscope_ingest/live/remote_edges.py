"""The live streams other nodes take in, as RemoteEdges this node's viewers are answered from.

One pub/sub subscription to every channel's "changed" messages (live/edge_mirror.py publishes
them). Each message names the node, the broadcast, the files it lists for the first time and
whether the origin mirrors the stream. A mirrored stream's state is then read from its hash, the
new files from their keys while someone watches here, and the RemoteEdge publishes the same
update its origin did. Messages are handled in order, so a held LL-HLS request here wakes right
after the origin's. A stream not mirrored (nobody elsewhere watches it) costs a JSON parse per
message here and no Redis read, unless its broadcast is new to this node.

Viewers here mark the channel's interest (an expiring key, renewed while they watch), which
makes the origin mirror the stream (RemoteEdge.watched, ready).

Streams are also found by scanning the live hashes at start (a node that joins late lists every
stream at once), and dropped when their origin stops updating them (a node that died) or a while
after they ended (players still get the ENDLIST).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from periscope_ingest.config_services import ClusterSettings
from periscope_ingest.live.cluster_keys import (
    CHANGED_PATTERN,
    LIVE_PATTERN,
    channel_of,
    interest_key,
    live_key,
    media_key,
)
from periscope_ingest.live.remote_edge import RemoteEdge
from periscope_ingest.live.shared_poster import RedisPosterShare
from periscope_ingest.logs import log_event

log = logging.getLogger(__name__)

# An ended stream stays listed this long, so players reloading it see EXT-X-ENDLIST.
ENDED_KEPT_S = 30.0
# A stream nobody here watches has its hash (description, reconnecting) read this often.
STATE_REREAD_S = 10.0
# A stream whose origin published nothing for this many target durations is taken as gone.
STALE_TARGETS = 4


class RemoteEdges:
    def __init__(self, redis: Redis, node: str, settings: ClusterSettings) -> None:
        self._redis = redis
        self._node = node
        self._settings = settings
        self._edges: dict[str, RemoteEdge] = {}
        self._task: asyncio.Task | None = None
        self._marking: set[asyncio.Task] = set()  # interest being written (kept from the GC)
        self.local_channels: set[str] = set()  # taken in here: never shown as remote

    def get(self, channel: str) -> RemoteEdge | None:
        return self._edges.get(channel)

    def all(self) -> list[RemoteEdge]:
        return list(self._edges.values())

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in list(self._marking):
            task.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failing = False
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(CHANGED_PATTERN)
                await self._scan()
                if failing:
                    failing = False
                    log_event(log, logging.INFO, "cluster_subscription_recovered")
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        await self._changed(message)
                    self._drop_stale()
            except (RedisError, OSError, TimeoutError) as exc:
                if not failing:
                    failing = True
                    log_event(
                        log,
                        logging.WARNING,
                        "cluster_subscription_failed",
                        reason=type(exc).__name__,
                    )
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _scan(self) -> None:
        async for key in self._redis.scan_iter(match=LIVE_PATTERN, count=200):
            channel = channel_of(key.decode(), "live")
            await self._refresh(channel, node=None, broadcast=None, names=())

    async def _changed(self, message: dict) -> None:
        channel = channel_of(message["channel"].decode(), "changed")
        try:
            body = json.loads(message["data"])
        except (ValueError, TypeError):
            return
        if body.get("node") == self._node:
            return
        edge = self._edges.get(channel)
        if (
            body.get("mirrored") is False
            and not body.get("ended")
            and edge is not None
            and edge.broadcast_id == body.get("broadcast")
            and edge.playlist is None
            and time.monotonic() - edge.read_at < STATE_REREAD_S
        ):
            # Nothing to read: not mirrored. Its description and state are read again now and
            # then (STATE_REREAD_S) for /api/streams.
            edge.touch(int(body.get("next_sequence") or 0), body.get("reconnecting") is True)
            return
        await self._refresh(channel, body.get("node"), body.get("broadcast"), body.get("media", ()))

    async def _refresh(self, channel, node, broadcast, names) -> None:
        if channel in self.local_channels:
            return
        raw = await asyncio.wait_for(self._redis.hgetall(live_key(channel)), self._settings.timeout)
        state = {k.decode(): v.decode() for k, v in raw.items()}
        if not state or state.get("node") == self._node:
            return
        if broadcast is not None and state.get("broadcast") != broadcast:
            return  # a newer broadcast's state already: its own message follows
        edge = self._edges.get(channel)
        if edge is None or edge.broadcast_id != state["broadcast"]:
            if state.get("ended") == "1" and edge is None:
                return  # an ended stream found by the scan: not live
            share = RedisPosterShare(
                self._redis, channel, state["broadcast"], self._settings.timeout
            )
            edge = RemoteEdge(
                channel,
                state,
                self.fetch,
                asyncio.get_running_loop(),
                share,
                mark_interest=self.mark_interest,
                interest_ttl=self._settings.interest_ttl,
                mirror_wait=self._settings.mirror_wait,
            )
            self._edges[channel] = edge
            log_event(
                log,
                logging.INFO,
                "cluster_stream_seen",
                channel=channel,
                broadcast=edge.broadcast_id,
                node=edge.node,
            )
        media: tuple[tuple[str, bytes], ...] = ()
        if names and edge.wants_media:
            keys = [media_key(channel, edge.broadcast_id, name) for name in names]
            values = await asyncio.wait_for(self._redis.mget(keys), self._settings.timeout)
            media = tuple((n, v) for n, v in zip(names, values, strict=True) if v is not None)
        edge.apply(state, media)

    def mark_interest(self, channel: str) -> None:
        """This node's viewers want the channel's media: its origin mirrors it while the key
        lasts. Written in the background: a viewer's request never waits on it."""
        task = asyncio.get_running_loop().create_task(self._mark(channel))
        self._marking.add(task)
        task.add_done_callback(self._marking.discard)

    async def _mark(self, channel: str) -> None:
        ttl_ms = max(1000, round(self._settings.interest_ttl * 1000))
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(
                self._redis.set(interest_key(channel), self._node, px=ttl_ms),
                self._settings.timeout,
            )

    async def fetch(self, channel: str, broadcast: str, name: str) -> bytes | None:
        """One file of a remote stream (a viewer asked for one not held in memory here)."""
        try:
            return await asyncio.wait_for(
                self._redis.get(media_key(channel, broadcast, name)), self._settings.timeout
            )
        except (RedisError, OSError, TimeoutError):
            return None

    def _drop_stale(self) -> None:
        now = time.monotonic()
        for channel, edge in list(self._edges.items()):
            update = edge.playlist
            ended = update is not None and update.ended
            # (not mirrored: no playlist, but the origin still writes at least once a segment)
            target = update.target_duration_s if update is not None else edge.hold_timeout() / 3
            quiet = now - edge.updated_at
            if (ended and quiet > ENDED_KEPT_S) or (
                not ended and quiet > max(10.0, STALE_TARGETS * target)
            ):
                del self._edges[channel]
                edge.close()  # held requests answer now
