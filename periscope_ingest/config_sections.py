"""The sections of the settings: one pydantic model per concern (RTMP limits, HLS output,
recording, TLS, downloads, sunset, publish auth, restreaming, webhooks, the catalog's database),
each field with its
default, bounds and the description ``serve --help`` prints.

config.Settings gathers them under their section names (``[hls]`` in TOML,
``PERISCOPE_HLS__...`` in the environment) and does the loading and the checks across sections.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class Section(BaseModel):
    """A section of the settings (config.Settings tells a section from a plain field by it)."""

    # A typo in a section of the TOML file must fail at start, not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class RtmpSettings(Section):
    app: str = Field(
        "live",
        description="RTMP application name publishers use: rtmp://HOST:PORT/<app>/<stream key>",
    )
    max_chunk_size: int = Field(
        65536, ge=128, le=16_777_215, description="Largest Set Chunk Size accepted from a client"
    )
    max_message_size: int = Field(
        8 * 1024 * 1024, ge=4096, le=16_777_215, description="Largest RTMP message (one frame)"
    )
    max_chunk_streams: int = Field(
        32, ge=4, le=65599, description="Distinct chunk stream ids per publishing connection"
    )
    max_command_size: int = Field(
        65536,
        ge=4096,
        le=16_777_215,
        description="Largest message that is not audio or video (commands, metadata, control),"
        " and largest message of any kind before a publish is accepted: refused at its header",
    )
    max_chunk_streams_before_publish: int = Field(
        8, ge=4, le=65599, description="Distinct chunk stream ids before a publish is accepted"
    )
    max_buffered_per_connection: int = Field(
        16 * 1024 * 1024,
        ge=65536,
        description="Bytes of messages in progress (sum of their lengths) one publishing"
        " connection may have on all its chunk streams",
    )
    max_buffered_total: int = Field(
        256 * 1024 * 1024,
        ge=1024 * 1024,
        description="Bytes of messages in progress on all connections together; a connection"
        " that would go past it is closed",
    )
    out_chunk_size: int = Field(4096, ge=128, le=65536, description="Chunk size we send with")
    window_ack_size: int = Field(5_000_000, ge=4096, description="Announced acknowledgement window")
    handshake_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to finish the handshake and connect"
    )
    idle_timeout: float = Field(
        30.0, gt=0, description="Seconds without any byte from a client before it is dropped"
    )
    publish_deadline: float = Field(
        10.0,
        gt=0,
        description="Seconds a connection has from its first byte to publish; one that has not"
        " (connect and pings only) is closed",
    )
    max_connections: int = Field(256, ge=1, description="RTMP connections open at once")
    max_connections_per_address: int = Field(
        16,
        ge=1,
        description="RTMP connections open at once from one client address (IPv6: one /64)",
    )
    max_publishers: int = Field(64, ge=1, description="Broadcasts live at once")
    publisher_takeover_after: float = Field(
        5.0,
        ge=0,
        description="A new publisher may replace one that has sent no media for this many seconds"
        " (OBS reconnects while the old TCP connection still looks alive)",
    )
    read_interval_ms: int = Field(
        100,
        ge=0,
        le=500,
        description="Once a broadcast's first segment is listed, its connection is read at most"
        " once per this many ms (0: as soon as data arrives). Encoders send each frame as it is"
        " made; reading a few at a time costs much less CPU. Reads around the keyframe expected"
        " to close a segment are not paced, so that segments are listed without this delay."
        " With hls.low_latency, at most a quarter of hls.part_duration (a part is complete only"
        " once the frame after it is read)",
    )
    read_pacing: Literal["lowat", "pause"] = Field(
        "lowat",
        description="How a paced connection waits for its next read: lowat sets the socket's"
        " SO_RCVLOWAT to about what the stream sends per read_interval_ms (the kernel wakes"
        " the server once that much is buffered; a connection not read for a whole interval is"
        " read at once), pause stops and restarts reading every interval (an epoll change"
        " each, per stream). lowat falls back to pause where the mark cannot be set",
    )


class HlsSettings(Section):
    segment_duration: float = Field(
        2.0,
        ge=0.5,
        le=30,
        description="Target segment length in seconds; cuts happen at the first keyframe after it",
    )
    max_segment_duration: float = Field(
        0,
        ge=0,
        le=600,
        description="Longest the first segment may grow while no keyframe comes, in seconds (it"
        " fixes EXT-X-TARGETDURATION; later segments are held to that). 0: ten times"
        " segment_duration, as nginx-rtmp's hls_max_fraglen",
    )
    window: int = Field(6, ge=2, le=100, description="Segments listed in a live playlist")
    start_buffer: float = Field(
        3.0,
        gt=0,
        le=30,
        description="Seconds of media held at publish start waiting for both sequence headers",
    )
    max_pending_packets: int = Field(
        2000,
        ge=100,
        description="Packets queued for the disk writer of one stream before reading pauses",
    )
    segment_format: Literal["ts", "fmp4"] = Field(
        "ts",
        description="Segment container: MPEG-TS, or fragmented MP4 (CMAF, with an EXT-X-MAP init"
        " segment). AV1 is always packaged as fmp4, whatever this says",
    )
    low_latency: bool = Field(
        False,
        description="Low-Latency HLS: partial segments, blocking playlist reload, delta updates"
        " (needs segment_format = fmp4)",
    )
    part_duration: float = Field(
        0.2,
        ge=0.1,
        le=2.0,
        description="LL-HLS part target (PART-TARGET) in seconds; parts end at frame boundaries,"
        " so the PART-TARGET declared may be snapped up to the stream's frame rhythm (the"
        " draft's 85 % rule; 0.203 s for 0.2 at 30 fps with 2 B-frames, 0.243 s at 25 fps)",
    )
    part_hold_back: float = Field(
        0.0,
        ge=0,
        le=30,
        description="LL-HLS PART-HOLD-BACK in seconds: how far behind the newest part LL-HLS"
        " players start (hls.js stays there). 0 = three part targets (the draft's advice);"
        " else at least two part targets (its minimum): lower is closer to live, with more"
        " risk of stalls. Scaled with a snapped part target (same multiple of it)",
    )
    poster_interval: float = Field(
        10.0,
        ge=1,
        le=3600,
        description="Seconds a live stream's poster (/live/<channel>/poster.jpg) is kept before it"
        " is made again from the newest segment",
    )

    @property
    def segment_cap(self) -> float:
        """max_segment_duration in effect, in seconds."""
        return self.max_segment_duration or 10 * self.segment_duration

    @model_validator(mode="after")
    def _cap_not_below_target(self) -> HlsSettings:
        if 0 < self.max_segment_duration < self.segment_duration:
            raise ValueError("max_segment_duration must be 0 or at least segment_duration")
        return self

    @model_validator(mode="after")
    def _low_latency_needs_fmp4(self) -> HlsSettings:
        if self.low_latency and self.segment_format != "fmp4":
            raise ValueError('low_latency = true needs segment_format = "fmp4"')
        if self.low_latency and self.part_duration > self.segment_duration:
            raise ValueError("part_duration must not exceed segment_duration")
        # Compared in the whole ms the playlist is made of (media/llhls.py checks the same).
        if self.low_latency and 0 < round(self.part_hold_back * 1000) < 2 * round(
            self.part_duration * 1000
        ):
            raise ValueError("part_hold_back must be 0 or at least twice part_duration")
        return self


class RecordingSettings(Section):
    reconnect_grace: float = Field(
        10.0,
        ge=0,
        le=600,
        description="Seconds a dropped publisher has to come back and continue its broadcast",
    )
    make_mp4: bool = Field(
        True,
        description="Write each finished broadcast as an MP4 beside its segments (fast downloads"
        " with Range and Content-Length); without it, MP4 downloads are streamed",
    )
    max_age_days: float = Field(
        0, ge=0, description="Delete ended broadcasts older than this (0: keep forever)"
    )
    max_total_gb: float = Field(
        0, ge=0, description="Delete the oldest ended broadcasts beyond this total (0: no limit)"
    )
    retention_interval: float = Field(300, ge=1, description="Seconds between retention sweeps")


class TlsSettings(Section):
    cert_file: Path | None = Field(
        None, description="PEM certificate chain for RTMPS and HTTPS (the full chain, leaf first)"
    )
    key_file: Path | None = Field(None, description="PEM private key of that certificate")
    handshake_timeout: float = Field(
        10.0,
        gt=0,
        le=600,
        description="Seconds a client has to complete the TLS handshake on the HTTPS port"
        " before it is closed (RTMPS: rtmp.handshake_timeout)",
    )


class DownloadSettings(Section):
    """MP4 downloads, clips and archives: each holds a connection for as long as its client
    takes, and the streamed ones a worker thread; none may starve the catalog or the key
    lookups (which have threads of their own: lookup_threads)."""

    threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Worker threads that make streamed downloads (an MP4 not yet made, an"
        " archive) while they are sent",
    )
    clip_threads: int = Field(
        2, ge=1, le=64, description="Worker threads that make clips and posters (CPU-bound)"
    )
    max_active: int = Field(
        64,
        ge=1,
        description="Downloads (MP4, clips, archives) in progress at once; beyond, 503 with"
        " Retry-After",
    )
    max_per_address: int = Field(
        4,
        ge=1,
        description="Downloads in progress at once from one client address (IPv6: one /64);"
        " beyond, 429 with Retry-After",
    )
    max_clips_per_address: int = Field(
        2,
        ge=1,
        description="Clips being made at once for one client address; beyond, 429 with Retry-After",
    )
    clip_cache_mb: int = Field(
        512,
        ge=0,
        description="Clips of finished broadcasts are kept for the next request of the same"
        " clip, up to this many MB in all (0: none kept)",
    )


class SunsetSettings(Section):
    """Winding the service down, the way Periscope did: each phase starts at its date."""

    registrations_close_at: datetime | None = Field(
        None, description="From then on no new accounts; existing ones still broadcast"
    )
    broadcasts_close_at: datetime | None = Field(
        None, description="From then on every publish is refused; live broadcasts end"
    )
    shutdown_at: datetime | None = Field(
        None, description="From then on every request answers 410; data stays on disk"
    )

    @field_validator("registrations_close_at", "broadcasts_close_at", "shutdown_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # A date without a zone is taken as UTC: the operator's local zone is not ours to guess.
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _in_order(self) -> SunsetSettings:
        dates = [
            (name, getattr(self, name))
            for name in ("registrations_close_at", "broadcasts_close_at", "shutdown_at")
        ]
        known = [(n, d) for n, d in dates if d is not None]
        for (first, a), (second, b) in itertools.pairwise(known):
            if a > b:
                raise ValueError(f"{first} must not be after {second}")
        return self


class AuthSettings(Section):
    """Publish authorisation by an HTTP callback, like nginx-rtmp's on_publish, SRS's
    http_hooks and MediaMTX's authHTTPAddress."""

    publish_url: str | None = Field(
        None,
        description="URL POSTed a JSON description of every publish (app, key, channel, client"
        " address, query string) after the built-in checks: a 2xx answer allows it (a JSON"
        " object may name the channel), anything else refuses it. Unset: no callback",
    )
    send_key: bool = Field(
        True,
        description="Include the stream key in the callback's body (false: only the channel,"
        " which with accounts is the key's handle, with open publishing the public name)",
    )
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds the callback may take")
    on_failure: Literal["refuse", "allow"] = Field(
        "refuse",
        description="When the callback cannot be reached, times out or answers garbage:"
        " refuse the publish, or allow it",
    )
    max_concurrent: int = Field(
        16,
        ge=1,
        description="Callbacks in flight at once; a publish beyond is refused at once",
    )
    max_answer_bytes: int = Field(
        65536,
        ge=1024,
        le=1 << 20,
        description="Bytes of a 2xx answer read at most; a longer one is a failed check",
    )

    @field_validator("publish_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url


class RestreamSettings(Section):
    max_targets: int = Field(
        5,
        ge=0,
        le=50,
        description="Restream targets one channel may forward to (0: restreaming off)",
    )
    queue_bytes: int = Field(
        8 * 1024 * 1024,
        ge=65536,
        description="Media waiting for one slow target, in bytes; beyond, its frames are dropped"
        " until the next keyframe",
    )
    connect_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds to connect to a target and start publishing"
    )
    retry_delay: float = Field(
        1.0, gt=0, le=60, description="Seconds before reconnecting to a target; doubles each time"
    )
    max_retry_delay: float = Field(
        30.0, gt=0, le=600, description="The reconnect delay stops doubling at this many seconds"
    )
    chunk_size: int = Field(4096, ge=128, le=65536, description="Chunk size we send targets with")


class MemorySettings(Section):
    """glibc malloc's thresholds, fixed at start (see allocator.py for why), and Python's
    garbage collector, settled once started (collector.py)."""

    mmap_threshold: int = Field(
        512 * 1024,
        ge=0,
        le=32 * 1024 * 1024,
        description="Bytes above which a memory block gets its own mapping, returned to the"
        " system when freed; fixed at start, where glibc would raise it by itself and keep"
        " freed memory (0 with trim_threshold 0: glibc's own moving thresholds)",
    )
    trim_threshold: int = Field(
        128 * 1024,
        ge=0,
        le=1024 * 1024 * 1024,
        description="Bytes of free memory at the top of a heap beyond which it is returned to"
        " the system",
    )
    gc_threshold: int = Field(
        7000,
        ge=0,
        le=1_000_000,
        description="Allocations between two collections of Python's youngest generation, set"
        " once the server has started, with everything start-up made frozen out of later"
        " collections (0: Python's own 700, nothing frozen)",
    )


MIN_WEBHOOK_SECRET = 16


class WebhookSettings(Section):
    urls: list[str] = Field(
        default_factory=list, description="Endpoints that receive event POSTs (empty: none)"
    )
    secret: SecretStr | None = Field(
        None, description="Shared secret for the X-Periscope-Signature HMAC-SHA256 header"
    )
    max_attempts: int = Field(6, ge=1, le=20, description="Deliveries tried per event")
    timeout: float = Field(5.0, gt=0, le=60, description="Seconds per delivery attempt")
    queue_size: int = Field(1000, ge=10, description="Events waiting; beyond, the oldest drop")
    retry_delay: float = Field(
        1.0, gt=0, le=60, description="Seconds before the first retry; doubles each time"
    )

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @model_validator(mode="after")
    def _signed(self) -> WebhookSettings:
        # Receivers trust a delivery because of its signature: signing with an empty or guessable
        # key would let anyone who can reach them forge broadcast and account events.
        secret = self.secret.get_secret_value() if self.secret is not None else ""
        if self.urls and len(secret) < MIN_WEBHOOK_SECRET:
            raise ValueError(
                f"webhook urls need a secret of at least {MIN_WEBHOOK_SECRET} characters"
                " (PERISCOPE_WEBHOOKS__SECRET) to sign deliveries with"
            )
        return self
