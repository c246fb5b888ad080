"""The JSON bodies of the HTTP API, as pydantic models.

Handlers build every JSON answer through these models (``respond``) and parse every JSON request
with them, and /api/openapi.json is generated from the same models: the description cannot drift
from what the server sends.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(_Out):
    error: str


class HealthOut(_Out):
    status: str
    version: str
    live_streams: int


class ClientOut(_Out):
    address: str = Field(
        description="the client's address as the server counts it: the connection's peer, or"
        " behind a trusted proxy (trusted_proxies) the one its X-Forwarded-For names"
    )
    scheme: str = Field(description="http or https, as the client spoke to the server or proxy")


class RestreamStatusOut(_Out):
    id: int
    target: str = Field(description="the target URL without its stream key")
    state: str = Field(description="connecting, live, retrying or failed (refused by the target)")
    bytes_sent: int
    drops: int = Field(description="messages dropped because the target was too slow")
    reconnects: int
    last_error: str | None


class RestreamTargetOut(_Out):
    id: int
    target: str = Field(description="the target URL without its stream key")
    created_at: str


class RestreamTargetsOut(_Out):
    targets: list[RestreamTargetOut]


class NewRestreamTarget(_In):
    url: str = Field(description="rtmp:// or rtmps:// URL: rtmp://host[:port]/app/stream-key")


class StreamOut(_Out):
    key: str
    channel: str
    broadcast_id: str
    started_at: str
    video_codec: str | None
    audio_codec: str | None
    resolution: str | None = Field(description="WIDTHxHEIGHT")
    width: int | None
    height: int | None
    frame_rate: float | None = Field(description="measured frames per second")
    audio_sample_rate: int | None
    audio_channels: int | None
    bitrate: int | None = Field(description="measured media bits per second")
    segments: int
    playlist: str
    reconnecting: bool = Field(description="the publisher dropped off; within reconnect grace")
    viewers: int = Field(description="clients that reloaded the live playlist in the last 30 s")
    restream: list[RestreamStatusOut] = Field(description="each restream target's status")


class StreamsOut(_Out):
    streams: list[StreamOut]


class BroadcastOut(_Out):
    id: str
    channel: str
    started_at: str
    status: str = Field(description="live, ended, interrupted or deleted")
    title: str | None
    ended_at: str | None
    duration: float = Field(description="seconds of recorded media")
    size: int = Field(description="bytes of recorded segments")
    segments: int
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    discontinuities: int = Field(description="reconnects continued within the grace window")
    mp4_size: int | None
    replay: str
    mp4: str
    mp4_ready: bool


class BroadcastPage(_Out):
    broadcasts: list[BroadcastOut]
    next: str | None = Field(description="URL of the next page, null on the last")


class BroadcastChanges(_In):
    title: str | None = Field(None, max_length=200)


class ServiceOut(_Out):
    phase: str = Field(description="open, registrations_closed, broadcasts_closed or shutdown")
    registrations_close_at: str | None
    broadcasts_close_at: str | None
    shutdown_at: str | None
    accepts_registrations: bool
    accepts_broadcasts: bool
    downloads_available: bool


class PhaseChange(_In):
    phase: str


class NewAccount(_In):
    handle: str


class CredentialsOut(_Out):
    handle: str
    stream_key: str
    token: str


class RotatedKeyOut(_Out):
    handle: str
    stream_key: str


class AccountOut(_Out):
    handle: str
    created_at: str
    disabled: bool
    key_rotated_at: str | None


class AccountsOut(_Out):
    accounts: list[AccountOut]


def respond(
    model: type[BaseModel], data: dict, status: int = 200, cache: str = "no-cache"
) -> web.Response:
    """A JSON answer, checked against its model on the way out."""
    body = model.model_validate(data).model_dump_json()
    return web.Response(
        text=body, status=status, content_type="application/json", headers={"Cache-Control": cache}
    )
