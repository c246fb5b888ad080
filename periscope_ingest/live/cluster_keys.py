"""The names of what the nodes of a cluster share in Redis, in one place.

periscope:node:<node>                 hash: this node's HTTP/RTMP addresses, start, version
                                      (expires unless the node renews it: a node list)
periscope:lease:<channel>             the node that may take media for the channel
periscope:live:<channel>              hash: the live edge of the channel's broadcast (its
                                      playlist text and delta, master playlist, what it
                                      lists, /api/streams)
periscope:media:<channel>:<broadcast>:<file>   the newest segments and parts, and the init
                                      segments listed, expiring
periscope:poster:<channel>:<broadcast> the live poster JPEG, expiring after hls.poster_interval
periscope:interest:<channel>          another node's viewers want the channel's media (expiring,
                                      renewed while they watch): only then is it mirrored
periscope:changed:<channel>           pub/sub: the live edge changed (LL-HLS wake-ups)
periscope:viewers:<channel>           hash: each node's count of the channel's viewers
periscope:broadcast:<channel>         hash: the channel's broadcast that may still continue (its id,
                                      the node holding it, when that node last said so): a
                                      publisher back on another node continues it
periscope:recovery                    held by the node finalising crashed broadcasts (one at a time)
"""

from __future__ import annotations

PREFIX = "periscope:"


def node_key(node: str) -> str:
    return f"{PREFIX}node:{node}"


def lease_key(channel: str) -> str:
    return f"{PREFIX}lease:{channel}"


def live_key(channel: str) -> str:
    return f"{PREFIX}live:{channel}"


def media_key(channel: str, broadcast_id: str, name: str) -> str:
    return f"{PREFIX}media:{channel}:{broadcast_id}:{name}"


def broadcast_key(channel: str) -> str:
    return f"{PREFIX}broadcast:{channel}"


def poster_key(channel: str, broadcast_id: str) -> str:
    return f"{PREFIX}poster:{channel}:{broadcast_id}"


def viewers_key(channel: str) -> str:
    return f"{PREFIX}viewers:{channel}"


def interest_key(channel: str) -> str:
    return f"{PREFIX}interest:{channel}"


def changed_channel(channel: str) -> str:
    return f"{PREFIX}changed:{channel}"


RECOVERY_KEY = f"{PREFIX}recovery"
NODES_PATTERN = f"{PREFIX}node:*"
LIVE_PATTERN = f"{PREFIX}live:*"
LEASES_PATTERN = f"{PREFIX}lease:*"
BROADCASTS_PATTERN = f"{PREFIX}broadcast:*"
CHANGED_PATTERN = f"{PREFIX}changed:*"


def channel_of(key: str, kind: str) -> str:
    """The channel in a live/lease/changed key (channel names hold no ':')."""
    return key.removeprefix(f"{PREFIX}{kind}:")
