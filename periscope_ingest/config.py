"""Settings: the root model, where it is read from, and the checks on what was read.

Every limit and default lives in config_sections (one model per section) or in Settings below
(the top-level fields). Sources, strongest first: explicit arguments, environment variables
(prefix ``PERISCOPE_``, nested sections joined with ``__``, e.g.
``PERISCOPE_HLS__SEGMENT_DURATION=4``), the TOML file named by ``PERISCOPE_CONFIG`` or
``--config``, then the defaults. Also here: the check that refuses an unknown ``PERISCOPE_``
variable, and the two renderings of the settings (``serve --help``, ``config show``).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import textwrap
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
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

# The sections Settings is made of. A module that needs one section imports it from
# config_sections; the few that still import it from here get the same class.
from periscope_ingest.config_sections import (
    AuthSettings,
    DownloadSettings,
    HlsSettings,
    MemorySettings,
    RecordingSettings,
    RestreamSettings,
    RtmpSettings,
    Section,
    SunsetSettings,
    TlsSettings,
    WebhookSettings,
)
from periscope_ingest.config_services import (
    CatalogSettings,
    ClusterSettings,
    StorageSettings,
    url_without_password,
)


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
    cluster: ClusterSettings = ClusterSettings()
    auth: AuthSettings = AuthSettings()
    catalog: CatalogSettings = CatalogSettings()
    memory: MemorySettings = MemorySettings()

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
    storage: StorageSettings = StorageSettings()
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
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="The event loop the server runs on: uvloop (libuv's; measured to take less"
        " CPU per connection and per read, docs/benchmarks.md), or asyncio (the standard"
        " library's selector loop)",
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
        if isinstance(section, type) and issubclass(section, Section):
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
        if isinstance(section, type) and issubclass(section, Section):
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


def _plain(value: object, field: FieldInfo | None = None) -> object:
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and extra.get("password_in_url") and isinstance(value, str):
        return url_without_password(value)
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, Path | datetime):
        return str(value)
    return value


def settings_in_effect(settings: Settings) -> str:
    """The settings as TOML, secrets masked (config show): what the server would run with."""
    values = settings.model_dump()
    top, sections = [], {}
    for key, _env, field in _fields_with_env_names():
        section, _, name = key.rpartition(".")
        value = values[section][name] if section else values[name]
        shown = _toml_value(_plain(value, field))
        line = f"# {name} is unset" if value is None else f"{name} = {shown}"
        if section:
            sections.setdefault(section, []).append(line)
        else:
            top.append(line)
    out = top
    for section, lines in sections.items():
        out += ["", f"[{section}]", *lines]
    return "\n".join(out) + "\n"
