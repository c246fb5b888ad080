"""What a ServerConnection reports and what it may hold: its events and its limits.

The events are what ServerConnection.receive_data() returns (connection.py, where they are
importable too); RtmpLimits bounds what one client can make the connection buffer or open.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chunk_limits import LimitNames

__all__ = [
    "LIMITS_BEFORE_PUBLISH",
    "LIMITS_PUBLISHING",
    "AudioReceived",
    "Connected",
    "Event",
    "IgnoredMessage",
    "MetadataReceived",
    "PublishRequested",
    "PublishStopped",
    "RtmpLimits",
    "VideoReceived",
]


@dataclass(frozen=True, slots=True)
class RtmpLimits:
    """What one connection may make us hold. The server builds these from its settings
    (config.RtmpSettings, where each is described); the defaults here equal those settings'
    defaults, for tests and tools that build a connection by hand."""

    max_chunk_size: int = 65536  # largest Set Chunk Size we accept from a client
    max_message_size: int = 8 * 1024 * 1024  # audio and video, once a publish is accepted
    max_chunk_streams: int = 32  # once a publish is accepted
    # Every other message, and every message before a publish is accepted.
    max_command_size: int = 65536
    max_chunk_streams_before_publish: int = 8
    # Messages in progress on all chunk streams once publishing (before: the chunk streams
    # allowed times max_command_size).
    max_buffered_bytes: int = 16 * 1024 * 1024
    out_chunk_size: int = 4096  # what we announce and send with
    window_ack_size: int = 5_000_000  # announced to the client (Window Ack Size + Peer Bandwidth)
    max_streams: int = 8  # createStream calls (and publish targets) alive on one connection


# Errors name the setting (config.RtmpSettings) that bounds what the client sent.
LIMITS_BEFORE_PUBLISH = LimitNames(
    message_size="max_command_size",
    chunk_streams="max_chunk_streams_before_publish",
    buffered="max_chunk_streams_before_publish x max_command_size",
    when=" (the limit before a publish is accepted)",
)
LIMITS_PUBLISHING = LimitNames(
    message_size="max_message_size",
    chunk_streams="max_chunk_streams",
    buffered="max_buffered_per_connection",
)


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Connected:
    """The client's connect was answered with NetConnection.Connect.Success."""

    app: str  # without any "?query"
    tc_url: str | None
    properties: dict  # the client's connect command object, as sent


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with accept_publish() or reject_publish()."""

    stream_id: int
    app: str
    name: str  # the stream name (usually the stream key) without "?query"
    # What followed "?" in the connect's app and in the name, joined with "&" in that order:
    # publish authorisation tokens come in either (rtmp://host/live?t=1/key, .../live/key?t=1).
    query: str
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    stream_id: int
    timestamp: int
    values: dict  # onMetaData properties (an amf0.EcmaArray or plain dict)


# The media events, one per audio or video message, are not frozen: a frozen dataclass's
# __init__ sets every field through object.__setattr__, which makes building one three times as
# slow (0.4 µs instead of 0.13). Treat them as read-only all the same.
@dataclass(slots=True)
class AudioReceived:
    stream_id: int
    timestamp: int  # ms, modulo 2**32, as sent by the client
    payload: bytes  # FLV audio tag body


@dataclass(slots=True)
class VideoReceived:
    stream_id: int
    timestamp: int  # ms (DTS), modulo 2**32, as sent by the client
    payload: bytes  # FLV video tag body


@dataclass(frozen=True, slots=True)
class PublishStopped:
    """The client ended a publish it had requested.

    reason is the command that ended it: "FCUnpublish", "deleteStream" or "closeStream".
    """

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class IgnoredMessage:
    """Something valid that this server does not act on; for logging only."""

    description: str


Event = (
    Connected
    | PublishRequested
    | MetadataReceived
    | AudioReceived
    | VideoReceived
    | PublishStopped
    | IgnoredMessage
)
