"""A broadcast that moves between the nodes of a cluster with its publisher (cluster.redis_url).

One Redis hash per channel (cluster_keys.broadcast_key) names the broadcast that may still be
continued on it, the node holding it and when that node last said so (its heartbeat). A
publisher that drops off node A and comes back on node B within recording.reconnect_grace
continues that broadcast on B, the same as when it comes back to A:

- B takes the channel's lease first (A gave it up when its publisher dropped, or it ran out
  because A died), then *adopts* the broadcast: one atomic compare-and-set names B as its
  holder, so that two nodes never continue it and A never ends it after B took it.
- If A still runs, it learns at its next heartbeat that the broadcast is B's (``taken``),
  closes its open segment, lets its uploads finish and says so (``flushed``); B waits for that
  (at most cluster.handover_wait) before it reads the recording so far from the store.
- If A died (its node entry is gone), B adopts it only while A's last heartbeat is no older
  than the grace window plus a lease: what A had uploaded is the recording so far.

A broadcast that ends is released (the hash deleted) by its holder, atomically with the check
that no other node adopted it meanwhile (``end_here``). One whose node died and
whose publisher did not come back is claimed by another node (``orphans``) and finalised there,
from the store, as crash recovery does with a local disk.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from periscope_ingest.config_services import ClusterSettings
from periscope_ingest.live.cluster_errors import LeaseUnavailable
from periscope_ingest.live.cluster_keys import (
    BROADCASTS_PATTERN,
    PREFIX,
    broadcast_key,
    channel_of,
)
from periscope_ingest.logs import log_event

log = logging.getLogger(__name__)

# KEYS[1] the broadcast hash; ARGV: this node, the node-key prefix, now (s), the oldest
# heartbeat of a dead holder still continued (s). Returns {id, previous node, 1 if it runs} or
# false (nothing to continue: no broadcast, already ours, or its dead holder is too long gone).
_ADOPT = """
local held = redis.call('hmget', KEYS[1], 'id', 'node', 'seen', 'finalising')
if not held[1] or held[2] == ARGV[1] or held[4] then return false end
local alive = redis.call('exists', ARGV[2] .. held[2])
if alive == 0 and tonumber(ARGV[3]) - tonumber(held[3] or 0) > tonumber(ARGV[4]) then
  return false
end
redis.call('hset', KEYS[1], 'node', ARGV[1], 'seen', ARGV[3], 'flushed', '0', 'from', held[2])
return {held[1], held[2], alive}
"""
# KEYS[1] the hash; ARGV: this node, the node-key prefix, now (s), the oldest heartbeat of a dead
# holder still continued (s). Claims a broadcast whose holder died longer ago than that, with no
# publisher back, to be finalised here; returns its id, or false.
_CLAIM_ORPHAN = """
local held = redis.call('hmget', KEYS[1], 'id', 'node', 'seen')
if not held[1] or held[2] == ARGV[1] then return false end
if redis.call('exists', ARGV[2] .. held[2]) == 1 then return false end
if tonumber(ARGV[3]) - tonumber(held[3] or 0) <= tonumber(ARGV[4]) then return false end
redis.call('hset', KEYS[1], 'node', ARGV[1], 'seen', ARGV[3], 'finalising', '1')
return held[1]
"""
# KEYS[1] the hash; ARGV: node, broadcast id. The broadcast is to end on this node: 0 if another
# node adopted it (it goes on there), else 1, and the hash is deleted if it names it.
_END_HERE = """
local held = redis.call('hmget', KEYS[1], 'id', 'node')
if held[1] == ARGV[2] and held[2] ~= ARGV[1] then return 0 end
if held[1] == ARGV[2] then redis.call('del', KEYS[1]) end
return 1
"""
# KEYS[1] the hash; ARGV: node, broadcast id, now. The heartbeat of a broadcast held here:
# 1 renewed (or written again: Redis lost it), 0 another node adopted it, 2 another broadcast of
# the channel replaced it (this node was taken for dead).
_RENEW = """
local held = redis.call('hmget', KEYS[1], 'id', 'node')
if held[1] and held[1] ~= ARGV[2] then return 2 end
if held[1] and held[2] ~= ARGV[1] then return 0 end
redis.call('hset', KEYS[1], 'id', ARGV[2], 'node', ARGV[1], 'seen', ARGV[3])
redis.call('expire', KEYS[1], ARGV[4])
return 1
"""
# A broadcast hash outlives its holder at most this long (a safety net: it is deleted at the
# end of the broadcast, or when another node finalises it).
KEEP_S = 24 * 3600


class Adopted:
    """A broadcast this node now holds, taken over from ``previous`` (running or not)."""

    __slots__ = ("broadcast_id", "previous", "previous_runs")

    def __init__(self, broadcast_id: str, previous: str, previous_runs: bool) -> None:
        self.broadcast_id = broadcast_id
        self.previous = previous
        self.previous_runs = previous_runs


class BroadcastHandover:
    def __init__(self, redis: Redis, node: str, settings: ClusterSettings, grace_s: float):
        self._redis = redis
        self._node = node
        self._settings = settings
        # How long after a dead holder's last heartbeat its broadcast may still be continued.
        self._max_age_s = grace_s + settings.lease
        self._adopt = redis.register_script(_ADOPT)
        self._end_here = redis.register_script(_END_HERE)
        self._renew = redis.register_script(_RENEW)
        self._claim_orphan = redis.register_script(_CLAIM_ORPHAN)

    async def hold(self, channel: str, broadcast_id: str) -> None:
        """This node takes the channel's broadcast in (new or continued here)."""
        key = broadcast_key(channel)
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"id": broadcast_id, "node": self._node, "seen": time.time()})
        pipe.hdel(key, "flushed", "from", "finalising")
        pipe.expire(key, KEEP_S)
        await self._timed(pipe.execute())

    async def adopt(self, channel: str) -> Adopted | None:
        """The channel's broadcast held by another node, now this node's; None if none may be
        continued."""
        result = await self._timed(
            self._adopt(
                keys=[broadcast_key(channel)],
                args=[self._node, f"{PREFIX}node:", time.time(), self._max_age_s],
            )
        )
        if not result:
            return None
        broadcast_id, previous, runs = result
        return Adopted(broadcast_id.decode(), previous.decode(), bool(runs))

    async def wait_flushed(self, channel: str, adopted: Adopted) -> bool:
        """Until the previous holder, if it runs, has written what it had (at most
        cluster.handover_wait); True if it did (or had died)."""
        if not adopted.previous_runs:
            return True
        deadline = time.monotonic() + self._settings.handover_wait
        key = broadcast_key(channel)
        while True:
            try:
                flushed, alive = await self._timed(
                    self._redis.pipeline(transaction=False)
                    .hget(key, "flushed")
                    .exists(f"{PREFIX}node:{adopted.previous}")
                    .execute()
                )
            except LeaseUnavailable:
                flushed, alive = None, 1
            if flushed == b"1" or not alive:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)

    async def flushed(self, channel: str, broadcast_id: str) -> None:
        """The previous holder's side: what this node had of the broadcast is written."""
        key = broadcast_key(channel)
        try:
            if await self._timed(self._redis.hget(key, "id")) == broadcast_id.encode():
                await self._timed(self._redis.hset(key, "flushed", "1"))
        except LeaseUnavailable as exc:
            log_event(log, logging.WARNING, "handover_flush_unsaid", channel=channel, reason=exc)

    async def end_here(self, channel: str, broadcast_id: str) -> bool:
        """Before a broadcast ends on this node: False if another node adopted it (it is handed
        over instead); else True, and from now on nobody may continue it. Atomic, so a
        broadcast is never both ended here and continued elsewhere. Redis away: True (as a
        single node; another node cannot adopt it meanwhile either)."""
        try:
            answer = await self._timed(
                self._end_here(keys=[broadcast_key(channel)], args=[self._node, broadcast_id])
            )
        except LeaseUnavailable:
            return True
        return bool(answer)

    async def renew(self, held: dict[str, str]) -> tuple[set[str], set[str]]:
        """The heartbeat: say this node still holds these broadcasts (channel: id). Returns the
        channels whose broadcast another node adopted (to be handed over), and those where
        another broadcast replaced it (to be ended here)."""
        adopted, replaced = set(), set()
        for channel, broadcast_id in held.items():
            answer = await self._timed(
                self._renew(
                    keys=[broadcast_key(channel)],
                    args=[self._node, broadcast_id, time.time(), KEEP_S],
                )
            )
            if answer == 0:
                adopted.add(channel)
            elif answer == 2:
                replaced.add(channel)
        return adopted, replaced

    async def orphans(self) -> list[tuple[str, str]]:
        """(channel, broadcast id) of the broadcasts whose node died longer ago than the grace
        window plus a lease with no publisher back: each now claimed by this node, to be
        finalised here (by one node only)."""
        claimed = []
        keys = [key async for key in self._redis.scan_iter(match=BROADCASTS_PATTERN, count=100)]
        for key in keys:
            broadcast_id = await self._timed(
                self._claim_orphan(
                    keys=[key], args=[self._node, f"{PREFIX}node:", time.time(), self._max_age_s]
                )
            )
            if broadcast_id:
                claimed.append((channel_of(key.decode(), "broadcast"), broadcast_id.decode()))
        return claimed

    async def _timed(self, awaitable):
        """Every Redis call here: bounded by cluster.timeout; any failure is LeaseUnavailable
        (what the registry already handles: Redis cannot be asked now)."""
        try:
            return await asyncio.wait_for(awaitable, self._settings.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise LeaseUnavailable(f"{type(exc).__name__}: {exc}") from None
