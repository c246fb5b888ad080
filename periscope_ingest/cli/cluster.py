"""``cluster status``: what the nodes sharing cluster.redis_url publish there, read directly.

Nodes (each renews its entry while it runs, so a node listed is alive), which channel each
holds the publisher lease of and for how much longer, the live streams and which node takes
each in, and the shared services' health: Redis (address, version, round trip), the catalog's
PostgreSQL (catalog.url) and the object store (storage.url), each asked one cheap question with
its timeout. Exit 0 when every configured service answers, 1 when one does not, 2 without
cluster.redis_url.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from periscope_ingest.config import Settings


def cluster_status(settings: Settings, as_json: bool = False) -> int:
    if settings.cluster.redis_url is None:
        print(
            "periscope-ingest: no cluster: set cluster.redis_url (PERISCOPE_CLUSTER__REDIS_URL)",
            file=sys.stderr,
        )
        return 2
    report = asyncio.run(_read(settings))
    report["database"] = _database(settings)
    report["store"] = _store(settings)
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(_text(report), end="")
    services = (report["redis"], report["database"], report["store"])
    return 0 if all(service["reachable"] for service in services) else 1


def _database(settings: Settings) -> dict:
    catalog = settings.catalog
    if not catalog.uses_postgres:
        return {"address": "sqlite: (each node's data directory)", "reachable": True}
    import psycopg

    from periscope_ingest.storage.postgres import database_address

    report: dict = {"address": database_address(catalog.url), "reachable": False}
    started = time.perf_counter()
    try:
        with psycopg.connect(catalog.url, connect_timeout=max(1, round(catalog.timeout))) as db:
            db.execute("SELECT 1")
        report.update(reachable=True, round_trip_ms=_ms_since(started))
    except psycopg.Error as exc:
        # psycopg's messages name host and port, never the password.
        report["error"] = " ".join(str(exc).split()) or type(exc).__name__
    return report


def _store(settings: Settings) -> dict:
    storage = settings.storage
    if not storage.url.startswith("s3://"):
        return {"address": "file:// (each node's data directory)", "reachable": True}
    from periscope_ingest.storage.objects import StoreUnavailable, open_store

    report: dict = {"address": storage.url, "reachable": False}
    store = open_store(storage.url, settings.data_dir, storage.s3_endpoint, storage.request_timeout)
    started = time.perf_counter()
    try:
        store.size("cluster-status-probe")  # a HEAD: answered (missing) by a store that works
        report.update(reachable=True, round_trip_ms=_ms_since(started))
    except StoreUnavailable as exc:
        report["error"] = str(exc)
    return report


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


async def _read(settings: Settings) -> dict:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    from periscope_ingest.live import cluster_keys as keys
    from periscope_ingest.live.cluster import _where

    url = settings.cluster.redis_url.get_secret_value()
    timeout = settings.cluster.timeout
    redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    report: dict = {"redis": {"address": _where(url), "reachable": False}}
    try:
        started = time.perf_counter()
        await redis.ping()
        info = await redis.info("server")
        report["redis"].update(
            reachable=True,
            version=info.get("redis_version"),
            round_trip_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        report["nodes"] = [
            {"node": key.decode().removeprefix(keys.PREFIX + "node:"), **_strings(fields)}
            async for key in redis.scan_iter(match=keys.NODES_PATTERN)
            if (fields := await redis.hgetall(key))
        ]
        leases = []
        async for key in redis.scan_iter(match=keys.LEASES_PATTERN):
            holder = await redis.get(key)
            ttl_ms = await redis.pttl(key)
            if holder is not None:
                channel = keys.channel_of(key.decode(), "lease")
                leases.append({"channel": channel, "node": holder.decode(), "ttl_ms": ttl_ms})
        report["leases"] = sorted(leases, key=lambda lease: lease["channel"])
        streams = []
        async for key in redis.scan_iter(match=keys.LIVE_PATTERN):
            state = _strings(await redis.hgetall(key))
            if not state.get("broadcast"):
                continue
            updated = float(state.get("updated") or 0)
            streams.append(
                {
                    "channel": keys.channel_of(key.decode(), "live"),
                    "node": state.get("node"),
                    "broadcast_id": state.get("broadcast"),
                    "segments": int(state.get("next_sequence") or 0),
                    "ended": state.get("ended") == "1",
                    "updated_s_ago": round(time.time() - updated, 1) if updated else None,
                }
            )
        report["streams"] = sorted(streams, key=lambda stream: stream["channel"])
    except (RedisError, OSError, TimeoutError) as exc:
        report["redis"]["error"] = str(exc) or type(exc).__name__
    finally:
        await redis.aclose()
    return report


def _strings(fields: dict[bytes, bytes]) -> dict[str, str]:
    # Only the short fields: a live stream's hash also holds its playlist text.
    return {k.decode(): v.decode() for k, v in fields.items() if k not in (b"text", b"delta")}


def _text(report: dict) -> str:
    redis = report["redis"]
    if not redis["reachable"]:
        lines = [f"redis    {redis['address']}: UNREACHABLE ({redis.get('error', '?')})"]
        report = {**report, "leases": [], "nodes": [], "streams": []}
    else:
        lines = [
            f"redis    {redis['address']}: ok, version {redis['version']},"
            f" {redis['round_trip_ms']} ms round trip"
        ]
    leases: dict[str, list[str]] = {}
    for lease in report["leases"]:
        leases.setdefault(lease["node"], []).append(
            f"{lease['channel']} ({lease['ttl_ms'] / 1000:.1f} s left)"
        )
    for node in sorted(report["nodes"], key=lambda n: n["node"]):
        held = ", ".join(leases.get(node["node"], [])) or "none"
        lines.append(
            f"node     {node['node']}: http {node.get('http', '?')}, rtmp {node.get('rtmp', '?')},"
            f" version {node.get('version', '?')}; leases: {held}"
        )
    for stream in report["streams"]:
        state = "ended" if stream["ended"] else "live"
        lines.append(
            f"stream   {stream['channel']}: {state} on {stream['node']}, broadcast"
            f" {stream['broadcast_id']}, {stream['segments']} segments, updated"
            f" {stream['updated_s_ago']} s ago"
        )
    if not report["nodes"]:
        lines.append("node     none running")
    for kind in ("database", "store"):
        service = report[kind]
        if not service["reachable"]:
            state = f"UNREACHABLE ({service.get('error', '?')})"
        elif "round_trip_ms" in service:
            state = f"ok, {service['round_trip_ms']} ms round trip"
        else:
            state = "ok"
        lines.append(f"{kind:<8} {service['address']}: {state}")
    return "\n".join(lines) + "\n"
