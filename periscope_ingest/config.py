"""Settings: every limit and default lives here.

Sources, strongest first: explicit arguments, environment variables (prefix ``PERISCOPE_``, nested
sections joined with ``__``, e.g. ``PERISCOPE_HLS__SEGMENT_DURATION=4``), the TOML file named by
``PERISCOPE_CONFIG`` or ``--config``, then the defaults below.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import json
import os
import textwrap
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from periscope_ingest.config_file import (
    CONFIG_ENV,
    DEFAULT_DATA_DIR,
    SettingsError,
    config_file_named,
)


class _Section(BaseModel):
    # A typo in a section of the TOML file must fail at start, not be silently ignored.
    model_config = ConfigDict(extra="forbid")


class RtmpSettings(_Section):
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
        50,
        ge=0,
        le=500,
        description="Once a broadcast's first segment is listed, its connection is read at most"
        " once per this many ms (0: as soon as data arrives). Encoders send each frame as it is"
        " made; reading a few at a time costs much less CPU, and segments are listed at most"
        " this much later",
    )


class HlsSettings(_Section):
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
        0.5,
        ge=0.1,
        le=2.0,
        description="LL-HLS part target (PART-TARGET) in seconds; parts end at frame boundaries",
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
        return self


class RecordingSettings(_Section):
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


class TlsSettings(_Section):
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


class DownloadSettings(_Section):
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


class SunsetSettings(_Section):
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


class AuthSettings(_Section):
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


class RestreamSettings(_Section):
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


MIN_WEBHOOK_SECRET = 16


class WebhookSettings(_Section):
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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERISCOPE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    host: str = Field("0.0.0.0", description="Address both servers listen on")
    rtmp_port: int = Field(1935, ge=0, le=65535, description="RTMP listen port (0: any free)")
    http_port: int = Field(8080, ge=0, le=65535, description="HTTP listen port (0: any free)")
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="Where segments and playlists are written")
    open_publish: bool = Field(
        False,
        description="Any stream key may publish and the channel name is the key (no accounts)",
    )
    first_channel: str = Field(
        "main",
        description="On a first start without accounts, this channel is created and its stream"
        " key printed once, so publishing works at once",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token for changing and deleting broadcasts over the API"
        " (unset: those calls are refused)",
    )
    rtmp: RtmpSettings = RtmpSettings()
    hls: HlsSettings = HlsSettings()
    recording: RecordingSettings = RecordingSettings()
    sunset: SunsetSettings = SunsetSettings()
    webhooks: WebhookSettings = WebhookSettings()
    downloads: DownloadSettings = DownloadSettings()
    lookup_threads: int = Field(
        8,
        ge=1,
        le=256,
        description="Worker threads for short blocking work: catalog queries, key and token"
        " lookups (never shared with downloads)",
    )
    restream: RestreamSettings = RestreamSettings()
    auth: AuthSettings = AuthSettings()

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies in front of the HTTP side:"
        " only from them are X-Forwarded-For and X-Forwarded-Proto believed",
    )
    rtmps_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="RTMPS (RTMP over TLS) listen port, with tls.cert_file and tls.key_file"
        " (unset: no RTMPS; 0: any free port)",
    )
    https_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="HTTPS listen port for the pages, the API and HLS, with tls.cert_file and"
        " tls.key_file (unset: no HTTPS; 0: any free port)",
    )
    tls: TlsSettings = TlsSettings()
    http_keepalive_timeout: float = Field(
        75.0,
        gt=0,
        le=3600,
        description="Seconds an HTTP connection may stay open without completing a request"
        " (idle keep-alive, or a request head that never ends)",
    )
    http_write_timeout: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="Seconds a client may read nothing of a response that is waiting for it"
        " (a stalled reader) before its connection is aborted; a download's file goes out in"
        " 256 KiB parts, each to be taken within it",
    )
    shutdown_timeout: float = Field(
        15.0,
        gt=0,
        le=600,
        description="Seconds SIGTERM waits for broadcasts to be finalised before exiting anyway"
        " (what is left is recovered at the next start)",
    )
    log_format: str = Field(
        "auto", description="text, json, or auto (text on a terminal, JSON lines otherwise)"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"{value!r} is not an address or a network") from None
        return values

    @model_validator(mode="after")
    def _tls_files(self) -> Settings:
        for port in ("rtmps_port", "https_port"):
            if getattr(self, port) is None:
                continue
            for name in ("cert_file", "key_file"):
                path = getattr(self.tls, name)
                if path is None:
                    raise ValueError(f"{port} needs tls.{name}")
                if not Path(path).is_file():
                    raise ValueError(f"tls.{name} {path} does not exist")
        return self

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"auto", "text", "json"}:
            raise ValueError("must be one of auto, text, json")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def setting_env_names() -> list[str]:
    """Every environment variable a setting is read from: PERISCOPE_<FIELD> for the top level,
    PERISCOPE_<SECTION> (a JSON object) and PERISCOPE_<SECTION>__<FIELD> for the sections."""
    prefix = Settings.model_config["env_prefix"]
    names = [CONFIG_ENV]
    for name, field in Settings.model_fields.items():
        names.append(f"{prefix}{name}".upper())
        section = field.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            names.extend(f"{prefix}{name}__{sub}".upper() for sub in section.model_fields)
    return names


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """A misspelt PERISCOPE_ variable must stop the server, as the same typo in TOML does:
    silently running on a default (another port, no limit) is worse than not starting."""
    environ = os.environ if environ is None else environ
    known = setting_env_names()
    prefix = Settings.model_config["env_prefix"].upper()
    for name in sorted(environ):
        upper = name.upper()
        if upper.startswith(prefix) and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise SettingsError(f"unknown setting {name}{hint}")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Load settings, turning every problem into one readable SettingsError."""
    previous = os.environ.get(CONFIG_ENV)
    config_file_named(config_file)  # it must exist
    check_environment()
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
    except Exception as exc:  # e.g. a TOML syntax error
        raise SettingsError(f"cannot read settings: {exc}") from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = previous


def _fields_with_env_names() -> list[tuple[str, str, FieldInfo]]:
    """(TOML key, environment variable, field) for every setting, sections last, in order."""
    prefix = Settings.model_config["env_prefix"]
    top, nested = [], []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, _Section):
            for sub, subfield in section.model_fields.items():
                nested.append((f"{name}.{sub}", f"{prefix}{name}__{sub}".upper(), subfield))
        else:
            top.append((name, f"{prefix}{name}".upper(), field))
    return top + nested


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def settings_reference() -> str:
    """Every setting with its environment variable, default and meaning (serve --help)."""
    lines = [f"settings (environment, or the TOML file; {CONFIG_ENV} names it):"]
    for key, env, field in _fields_with_env_names():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else _toml_value(_plain(default))
        lines.append(f"  {env} = {shown}   [{key}]")
        if field.description:
            lines += textwrap.wrap(
                field.description, 98, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
    return "\n".join(lines) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, Path | datetime):
        return str(value)
    return value


def settings_in_effect(settings: Settings) -> str:
    """The settings as TOML, secrets masked (config show): what the server would run with."""
    values = settings.model_dump()
    top, sections = [], {}
    for key, _env, _field in _fields_with_env_names():
        section, _, name = key.rpartition(".")
        value = values[section][name] if section else values[name]
        line = f"# {name} is unset" if value is None else f"{name} = {_toml_value(_plain(value))}"
        if section:
            sections.setdefault(section, []).append(line)
        else:
            top.append(line)
    out = top
    for section, lines in sections.items():
        out += ["", f"[{section}]", *lines]
    return "\n".join(out) + "\n"
