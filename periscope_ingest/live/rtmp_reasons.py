"""Why the RTMP listener refused or closed a connection, or refused a publish: metric labels.

Each reason travels with the refusal or close it labels (an RtmpServer admission Refusal, the
argument of RtmpSession._fail and _refuse), so a metric label is chosen where the decision is
made, never recovered from the free-text message that goes to the log and to the client. The
values are the label values of periscope_rtmp_connections_refused,
periscope_rtmp_connections_failed and periscope_publishes_refused: bounded, and stable for
dashboards.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["CloseReason", "ConnectionRefusal", "MetricLabel", "PublishRefusal", "Refusal"]


class ConnectionRefusal(enum.StrEnum):
    """A new connection was not taken in (periscope_rtmp_connections_refused)."""

    MAX_CONNECTIONS_PER_ADDRESS = "max_connections_per_address"
    MAX_CONNECTIONS = "max_connections"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A connection refused at admission: the metric label, and the reason for the log."""

    label: ConnectionRefusal
    reason: str


class CloseReason(enum.StrEnum):
    """The server closed a connection it had taken in (periscope_rtmp_connections_failed)."""

    LIMIT = "limit"  # a per-connection limit or the server-wide max_buffered_total
    PROTOCOL_ERROR = "protocol_error"
    MALFORMED_MEDIA = "malformed_media"
    EVICTED = "evicted"  # its slot went to a new connection (RtmpServer.admit)
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    PUBLISH_DEADLINE = "publish_deadline"


class PublishRefusal(enum.StrEnum):
    """A publish request was refused (periscope_publishes_refused)."""

    REPEATED = "repeated"  # a second publish on one connection
    WRONG_APP = "wrong_app"
    BROADCASTS_CLOSED = "broadcasts_closed"  # the service's lifecycle refuses publishing
    BAD_KEY = "bad_key"
    CALLBACK = "callback"  # the publish callback (auth.publish_url) said no
    FULL = "full"  # max_publishers
    BUSY = "busy"  # the channel is live from another publisher
    OTHER = "other"


# Any of the above: what a refusal or close is counted under.
MetricLabel = ConnectionRefusal | CloseReason | PublishRefusal
