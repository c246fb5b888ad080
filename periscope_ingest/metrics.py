"""Prometheus metrics, served at /metrics.

Label values are always bounded: route patterns (not paths), reason categories (not messages),
and channels only while they are live (their series are removed when the broadcast ends). Never a
client address, a stream key or a broadcast id.

Each Service owns one ``Metrics`` (its own registry), so several servers in one process (tests)
do not share counters.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: from a part or segment's last frame to its listing, and segment write times.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("periscope_rtmp_connections", "Open RTMP connections", registry=r)
        self.connections_refused = Counter(
            "periscope_rtmp_connections_refused", "RTMP connections refused", ["reason"],
            registry=r,
        )  # fmt: skip
        self.connections_closed = Counter(
            "periscope_rtmp_connections_failed",
            "RTMP connections closed by the server for bad input or timeouts",
            ["reason"],
            registry=r,
        )
        self.publishers = Gauge("periscope_publishers", "Publishers connected now", registry=r)
        self.live_streams = Gauge(
            "periscope_live_streams", "Broadcasts live now (publishing or within grace)", registry=r
        )
        self.publishes_refused = Counter(
            "periscope_publishes_refused", "Publish requests refused", ["reason"], registry=r
        )
        self.ingest_bytes = Counter(
            "periscope_ingest_bytes", "Media payload bytes received", ["channel"], registry=r
        )
        self.ingest_messages = Counter(
            "periscope_ingest_messages", "Audio/video messages received", ["channel"], registry=r
        )
        # The same, for all channels: these survive the end of a broadcast.
        self.ingest_bytes_all = Counter(
            "periscope_ingest_all_bytes", "Media payload bytes received, all channels", registry=r
        )
        self.ingest_messages_all = Counter(
            "periscope_ingest_all_messages", "Audio/video messages received, all channels",
            registry=r,
        )  # fmt: skip
        self.segments_written = Counter(
            "periscope_segments_written", "Segments written and listed", registry=r
        )
        self.segment_write_seconds = Histogram(
            "periscope_segment_write_seconds",
            "Time to finish, list and record a segment once it is cut",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.listing_delay_seconds = Histogram(
            "periscope_listing_delay_seconds",
            "From the arrival of the frame that ends a segment to the segment being listed",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.http_requests = Counter(
            "periscope_http_requests", "HTTP requests", ["route", "status"], registry=r
        )
        # (route, status) -> its child: labels() takes a lock and builds a key on every call,
        # which showed in the profile of 1000 viewers. Bounded: routes and statuses are few.
        self._request_counters: dict[tuple[str, int], Any] = {}
        self.viewers = Gauge(
            "periscope_viewers",
            "Viewers per live channel, estimated from playlist fetches (last 30 s)",
            ["channel"],
            registry=r,
        )
        self.exports = Counter(
            "periscope_mp4_exports", "MP4 exports of finished broadcasts", ["result"], registry=r
        )
        self.recordings_bytes = Gauge(
            "periscope_recordings_bytes", "Disk used by recordings (segments and MP4s)", registry=r
        )
        # Restreaming: per live channel (never per target URL, which holds a stream key).
        self.restream_targets = Gauge(
            "periscope_restream_targets",
            "Restream targets of live broadcasts, by state (connecting, live, retrying, failed)",
            ["state"],
            registry=r,
        )
        self.restream_bytes = Counter(
            "periscope_restream_sent_bytes", "Bytes sent to restream targets", ["channel"],
            registry=r,
        )  # fmt: skip
        self.restream_drops = Counter(
            "periscope_restream_dropped_messages",
            "Messages not forwarded because a restream target was too slow",
            ["channel"],
            registry=r,
        )
        self.restream_reconnects = Counter(
            "periscope_restream_reconnects", "Reconnections to restream targets", ["channel"],
            registry=r,
        )  # fmt: skip
        # A cluster (live/cluster.py): Redis is behind or failing; ingest does not wait on it.
        self.cluster_errors = Counter(
            "periscope_cluster_errors", "Redis commands of the cluster link that failed",
            registry=r,
        )  # fmt: skip
        self.cluster_updates_merged = Counter(
            "periscope_cluster_edge_updates_merged",
            "Live edge updates merged into the next because Redis was behind",
            registry=r,
        )
        self.cluster_remote_streams = Gauge(
            "periscope_cluster_remote_streams", "Live streams other nodes take in", registry=r
        )

        # Object storage (storage.url s3://): the uploads of live/uploader.py.
        self.upload_queued = Gauge(
            "periscope_upload_queued_files", "Files waiting for upload to the object store",
            registry=r,
        )  # fmt: skip
        self.upload_seconds_behind = Gauge(
            "periscope_upload_seconds_behind",
            "Age of the oldest file waiting for upload (0: none waiting)",
            registry=r,
        )
        self.uploaded_files = Counter(
            "periscope_uploaded_files", "Files uploaded to the object store", registry=r
        )
        self.upload_errors = Counter(
            "periscope_upload_errors", "Failed upload attempts (each is retried)", registry=r
        )
        self.upload_overflow = Counter(
            "periscope_upload_overflow",
            "Segments queued past storage.upload_queue (kept, never dropped)",
            registry=r,
        )
        self.store_fetches = Counter(
            "periscope_store_fetched_files",
            "Files of finished broadcasts fetched from the object store",
            registry=r,
        )

    def count_request(self, route: str, status: int) -> None:
        counter = self._request_counters.get((route, status))
        if counter is None:
            counter = self.http_requests.labels(route, str(status))
            self._request_counters[(route, status)] = counter
        counter.inc()

    def forget_channel(self, channel: str) -> None:
        """A broadcast ended: drop its per-channel series so labels stay bounded."""
        for metric in (
            self.ingest_bytes,
            self.ingest_messages,
            self.viewers,
            self.restream_bytes,
            self.restream_drops,
            self.restream_reconnects,
        ):
            with contextlib.suppress(KeyError):  # never had a series: nothing to forget
                metric.remove(channel)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ViewerCounter:
    """Estimates viewers per channel: distinct clients that fetched its live playlist lately.

    Players reload the playlist about once per target duration, so a client seen within the
    window is watching. Bounded: at most ``max_clients`` remembered per channel.
    """

    def __init__(self, window_s: float = 30.0, max_clients: int = 100_000) -> None:
        self._window = window_s
        self._max = max_clients
        self._seen: dict[str, dict[str, float]] = {}

    def seen(self, channel: str, client: str, now: float) -> None:
        clients = self._seen.setdefault(channel, {})
        if client not in clients and len(clients) >= self._max:
            self._prune(clients, now)
            if len(clients) >= self._max:
                return
        clients[client] = now

    def count(self, channel: str, now: float) -> int:
        clients = self._seen.get(channel)
        if not clients:
            return 0
        self._prune(clients, now)
        return len(clients)

    def forget(self, channel: str) -> None:
        self._seen.pop(channel, None)

    def _prune(self, clients: dict[str, float], now: float) -> None:
        for client in [c for c, t in clients.items() if now - t > self._window]:
            del clients[client]
