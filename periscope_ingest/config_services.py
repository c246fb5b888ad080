"""The sections of the settings for the shared services a cluster of nodes uses: the cluster's
Redis, the catalog's database and the object store. Each is optional: unset, the node keeps
everything in this process, SQLite files and the data directory, as a single node always did.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from periscope_ingest.config_sections import Section


class ClusterSettings(Section):
    redis_url: SecretStr | None = Field(
        None,
        description="redis://[user:password@]HOST:PORT[/DB] shared by the nodes: publisher leases,"
        " the live edge (playlists, newest media, LL-HLS wake-ups), the live streams list."
        " Unset: one node, everything in this process",
    )
    node_name: str = Field(
        "",
        description="How this node is named in leases, logs and `cluster status` (empty: the"
        " host name and the HTTP port)",
    )
    lease: float = Field(
        10.0,
        ge=2,
        le=300,
        description="Seconds a channel's publisher lease lasts unless renewed; it is renewed while"
        " media flows, so a crashed node's channels are free again after this long",
    )
    handover_wait: float = Field(
        5.0,
        ge=0,
        le=60,
        description="Seconds a node that continues a broadcast from another, still running node"
        " waits for that node to finish writing its last segments to the store",
    )
    media_ttl: float = Field(
        30.0,
        ge=10,
        le=3600,
        description="Seconds the newest segments and parts stay in Redis for other nodes' viewers"
        " (never less than twice what the live playlist lists); Redis holds about bitrate x this"
        " per live stream",
    )
    interest_ttl: float = Field(
        30.0,
        ge=2,
        le=3600,
        description="Seconds a node's interest in another node's stream lasts unless its viewers"
        " renew it: the origin mirrors a stream's media into Redis only while some other node"
        " has shown interest",
    )
    mirror_wait: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Seconds a node's first request for another node's stream waits for the"
        " origin to start mirroring it (the origin starts at its next update)",
    )
    timeout: float = Field(
        2.0, gt=0, le=60, description="Seconds any one Redis command may take before it fails"
    )
    max_pending: int = Field(
        64,
        ge=4,
        le=10_000,
        description="Edge updates per stream waiting to be written to Redis; beyond, the oldest"
        " playlist-only updates are dropped (a slow Redis shows in /metrics, not in ingest)",
    )


CATALOG_URL_SCHEMES = ("sqlite:", "postgresql://", "postgres://")


def url_without_password(url: str) -> str:
    """A database URL fit to print or log: its password, if any, replaced by ***."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    user, at, host = authority.rpartition("@")
    if at and ":" in user:
        user = user.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{user}{at}{host}{slash}{tail}"


class CatalogSettings(Section):
    """Where the broadcast catalog, the accounts and the restream targets are kept."""

    url: str = Field(
        "sqlite:",
        description="sqlite: (SQLite files in the data directory) or"
        " postgresql://USER:PASSWORD@HOST:PORT/DATABASE (also postgres://): one PostgreSQL"
        " database every node shares. The password is never shown or logged",
        json_schema_extra={"password_in_url": True},
    )
    timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds a PostgreSQL connection attempt or query may take before it fails"
        " (a hung database never holds a thread for longer)",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url != "sqlite:" and not url.startswith(CATALOG_URL_SCHEMES[1:]):
            raise ValueError(
                f"{url_without_password(url)!r} is neither sqlite: nor a postgresql:// URL"
            )
        return url

    @property
    def uses_postgres(self) -> bool:
        return self.url != "sqlite:"


class StorageSettings(Section):
    url: str = Field(
        "file://",
        description="Where finished files are kept beyond this node: file:// (the data"
        " directory only) or s3://BUCKET/PREFIX (any S3-compatible store; credentials from"
        " AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION)",
    )
    s3_endpoint: str | None = Field(
        None,
        description="The S3 API's base URL for a store that is not AWS (MinIO, Garage, Ceph...),"
        " e.g. http://minio:9000 (unset: AWS)",
    )
    request_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds per request to the object store"
    )
    upload_queue: int = Field(
        256,
        ge=4,
        le=100_000,
        description="Files waiting for upload per broadcast; past it, the rewrites of a playlist"
        " or record are merged and segments still queue (counted as overflow, never dropped)",
    )
    upload_retry_max: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait in seconds between retries of a failed upload (the wait"
        " starts at 0.5 s and doubles); uploads are retried until they succeed",
    )
    recording_playlist_kib_s: float = Field(
        32.0,
        gt=0,
        le=1_000_000,
        description="KiB a second a live broadcast's recording playlist may take of uploads: it"
        " goes up whole at most every (its size / this) seconds, and after the other segments"
        " only its new lines (recording.tail, joined to it by readers). Below 32 KiB (the first"
        " ~15 minutes of 2 s segments) that is after every segment",
    )
    upload_drain_timeout: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Seconds a stopping server waits for queued uploads; what is left stays"
        " on the local disk only (logged as uploads_left)",
    )
    cache_max_gb: float = Field(
        10.0,
        gt=0,
        description="GB of files fetched from the object store (replays of broadcasts recorded"
        " elsewhere) kept in the data directory; past it, the least recently used go",
    )
    read_chunk_kb: int = Field(
        1024,
        ge=64,
        le=65536,
        description="KiB per ranged read when a finished recording.mp4 (or a segment over 8"
        " chunks) is read from the object store rather than copied to disk first: one"
        " request per chunk",
    )
    read_ahead_segments: int = Field(
        2,
        ge=0,
        le=16,
        description="Segments an export from the object store fetches (whole, one GET each)"
        " ahead of the one it reads, so that it does not wait a round trip per read; its"
        " memory is that many segments plus one. Segments over 8 chunks are read in chunks",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.rstrip("/") not in ("file:", "file://") and not (
            url.startswith("s3://") and len(url) > len("s3://")
        ):
            raise ValueError("expected file:// or s3://BUCKET/PREFIX")
        if url.startswith("s3://") and "@" in url[len("s3://") :].split("/")[0]:
            # Kept out of the URL so that they never show in `config show` or a log line.
            raise ValueError(
                "credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the URL"
            )
        return url
