"""What can go wrong with a cluster's Redis, in a module light enough for every node to import
(live/cluster.py, which loads the Redis client, is imported only when cluster.redis_url is set).
"""

from __future__ import annotations


class ClusterError(Exception):
    """Redis cannot be reached or refused us: the message says where (never the password)."""


class LeaseUnavailable(Exception):
    """The channel's lease (or its broadcast's hand-over) could not be checked: Redis is
    unreachable."""
