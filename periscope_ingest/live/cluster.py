"""This node's link to the other nodes of a cluster, through Redis (cluster.redis_url).

Unset, nothing here runs: one node, everything in process, as always. Set, the nodes share:

- **publisher leases**: one node at a time takes media for a channel. A node takes the lease
  when a publish is accepted and renews it while media flows (the registry's takeover rule:
  a publisher silent for rtmp.publisher_takeover_after stops renewing it), so a node that dies
  frees its channels after cluster.lease seconds, and a second publisher on another node is
  refused meanwhile, as one on the same node is;
- **the live edge** (live/edge_mirror.py out, live/remote_edges.py in): any node answers any
  viewer of any live stream with the same playlists and media;
- **the broadcasts that may continue** (live/handover.py): a publisher back on another node
  within recording.reconnect_grace continues its broadcast there;
- **the node list** for `periscope-ingest cluster status`.

If Redis cannot be reached at start, the server does not start (ClusterError, one line). If it
goes away later, streams already live go on; new publishes are refused (a lease cannot be
taken, so one publisher per channel cannot be promised) until it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from periscope_ingest import __version__
from periscope_ingest.config_services import ClusterSettings
from periscope_ingest.live.cluster_errors import ClusterError, LeaseUnavailable
from periscope_ingest.live.cluster_keys import (
    NODES_PATTERN,
    RECOVERY_KEY,
    lease_key,
    node_key,
    viewers_key,
)
from periscope_ingest.live.edge import LiveEdge
from periscope_ingest.live.edge_mirror import EdgeMirror
from periscope_ingest.live.handover import BroadcastHandover
from periscope_ingest.live.remote_edges import RemoteEdges
from periscope_ingest.logs import log_event
from periscope_ingest.metrics import Metrics

log = logging.getLogger(__name__)

# Take the lease if free, keep it if ours; 1 if held by this node afterwards. Also how a lease
# is renewed: one that vanished (Redis restarted without persistence) is taken again by the
# node still taking the channel's media, rather than left for another node to take.
_ACQUIRE = """
local holder = redis.call('get', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Release the lease only while it is ours.
_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('del', KEYS[1])
"""


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterLink:
    def __init__(
        self, settings: ClusterSettings, metrics: Metrics | None = None, grace_s: float = 0.0
    ) -> None:
        assert settings.redis_url is not None
        self.settings = settings
        self.node = settings.node_name or default_node_name()
        url = settings.redis_url.get_secret_value()
        self._where = _where(url)
        self.redis = Redis.from_url(
            url,
            socket_timeout=settings.timeout,
            socket_connect_timeout=settings.timeout,
            health_check_interval=30,
        )
        self._metrics = metrics
        self.mirror = EdgeMirror(self.redis, self.node, settings, metrics)
        self.remote = RemoteEdges(self.redis, self.node, settings)
        self.handover = BroadcastHandover(self.redis, self.node, settings, grace_s)
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._release = self.redis.register_script(_RELEASE)
        self._release_recovery = self._release  # the same compare-and-delete
        self._held: set[str] = set()  # channels whose lease this node holds
        self._heartbeat: asyncio.Task | None = None
        self.addresses: dict[str, str] = {}  # what `cluster status` shows of this node
        # Which channels' leases to renew now: set by the service (the registry's publishers
        # that sent media lately).
        self.renewable: Callable[[], set[str]] = set
        # This node's viewers per live channel (set by the service), and the other nodes' as
        # last read: /api/streams adds them up.
        self.viewer_counts: Callable[[], dict[str, int]] = dict
        self.other_viewers: dict[str, int] = {}
        # The broadcasts this node holds (live or waiting for their publisher): the node entry
        # lists them, so that recovery elsewhere never finalises one of them.
        self.broadcast_ids: Callable[[], list[str]] = list
        # The broadcast held here per channel (set by the service: the registry's), and what
        # to do with one another node adopted, or replaced (the registry's hand-over and end).
        self.held_broadcasts: Callable[[], dict[str, str]] = dict
        self.on_adopted: Callable[[str], None] = lambda channel: None
        self.on_replaced: Callable[[str], None] = lambda channel: None
        # A broadcast of a dead node claimed here, to be finalised (set by the service).
        self.on_orphan: Callable[[str, str], None] = lambda channel, broadcast_id: None

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self.redis.ping(), self.settings.timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            await self.redis.aclose()
            raise ClusterError(f"cannot reach Redis at {self._where}: {_reason(exc)}") from None
        await self._beat()
        await self.remote.start()
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())
        log_event(log, logging.INFO, "cluster_joined", node=self.node, redis=self._where)

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        await self.mirror.stop()
        await self.remote.stop()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            for channel in list(self._held):
                await self.release(channel)
            await asyncio.wait_for(self.redis.delete(node_key(self.node)), self.settings.timeout)
        await self.redis.aclose()

    # -- leases -------------------------------------------------------------------------------

    async def acquire(self, channel: str) -> bool:
        """Take (or keep) the channel's lease; False if another node holds it."""
        try:
            taken = await asyncio.wait_for(
                self._acquire(keys=[lease_key(channel)], args=[self.node, self._lease_ms]),
                self.settings.timeout,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._count_error()
            raise LeaseUnavailable(f"Redis at {self._where}: {_reason(exc)}") from None
        if taken:
            self._held.add(channel)
            self.remote.local_channels.add(channel)
        return bool(taken)

    async def release(self, channel: str) -> None:
        self._held.discard(channel)
        self.remote.local_channels.discard(channel)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(
                self._release(keys=[lease_key(channel)], args=[self.node]), self.settings.timeout
            )

    @property
    def _lease_ms(self) -> int:
        return round(self.settings.lease * 1000)

    # -- recovery of crashed broadcasts ------------------------------------------------------

    async def broadcasts_elsewhere(self) -> set[str]:
        """The broadcasts the other running nodes hold (their entries expire with them)."""
        held: set[str] = set()
        own = node_key(self.node).encode()
        async for key in self.redis.scan_iter(match=NODES_PATTERN):
            if key == own:
                continue
            listed = await asyncio.wait_for(
                self.redis.hget(key, "broadcasts"), self.settings.timeout
            )
            if listed:
                held.update(listed.decode().split(","))
        return held

    @contextlib.asynccontextmanager
    async def recovering(self, wait: float = 60.0):
        """One node at a time finalises crashed broadcasts (nodes sharing a data directory,
        `serve --workers`, start together): never twice."""
        deadline = asyncio.get_running_loop().time() + wait
        hold_ms = round(wait * 1000)
        while not await self.redis.set(RECOVERY_KEY, self.node, nx=True, px=hold_ms):
            if asyncio.get_running_loop().time() > deadline:
                raise ClusterError(f"another node held the recovery lock for over {wait:g} s")
            await asyncio.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await self._release_recovery(keys=[RECOVERY_KEY], args=[self.node])

    # -- the local edges ----------------------------------------------------------------------

    def publish(self, edge: LiveEdge) -> None:
        """A broadcast taken in here: its edge is mirrored for the other nodes."""
        self.mirror.attach(edge)

    def detach(self, edge: LiveEdge) -> None:
        """A broadcast handed over to another node: its mirror stops here."""
        self.mirror.detach(edge)

    # -- heartbeat: the node list and lease renewal -------------------------------------------

    async def _beat_forever(self) -> None:
        interval = max(0.5, self.settings.lease / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except (RedisError, OSError, TimeoutError, LeaseUnavailable):
                self._count_error()

    async def _beat(self) -> None:
        ttl_ms = self._lease_ms
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(
            node_key(self.node),
            mapping={
                **self.addresses,
                "version": __version__,
                "pid": os.getpid(),
                "seen": time.time(),
                "broadcasts": ",".join(self.broadcast_ids()),
            },
        )
        pipe.pexpire(node_key(self.node), ttl_ms)
        counts = self.viewer_counts()
        for channel, count in counts.items():
            pipe.hset(viewers_key(channel), self.node, count)
            pipe.pexpire(viewers_key(channel), ttl_ms)
        for channel in counts:
            pipe.hgetall(viewers_key(channel))
        results = await asyncio.wait_for(pipe.execute(), self.settings.timeout)
        me = self.node.encode()
        self.other_viewers = {
            channel: sum(int(n) for node, n in per_node.items() if node != me)
            for channel, per_node in zip(counts, results[len(results) - len(counts) :], strict=True)
        }
        for channel in self.renewable() & self._held:
            renewed = await asyncio.wait_for(
                self._acquire(keys=[lease_key(channel)], args=[self.node, ttl_ms]),
                self.settings.timeout,
            )
            if not renewed:
                log_event(log, logging.WARNING, "cluster_lease_lost", channel=channel)
                self._held.discard(channel)
        adopted, replaced = await self.handover.renew(self.held_broadcasts())
        for channel in adopted:
            self.on_adopted(channel)
        for channel in replaced:
            self.on_replaced(channel)
        for channel, broadcast_id in await self.handover.orphans():
            self.on_orphan(channel, broadcast_id)

    def _count_error(self) -> None:
        if self._metrics is not None:
            self._metrics.cluster_errors.inc()


def _where(url: str) -> str:
    """host:port/db of a Redis URL, without user or password."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1] or "?"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
