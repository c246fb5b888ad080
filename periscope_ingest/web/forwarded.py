"""Who the client is behind a reverse proxy (trusted_proxies).

Behind nginx or Caddy every request comes from the proxy's address; the proxy says who its client
was in X-Forwarded-For (and whether it spoke HTTPS in X-Forwarded-Proto). Anyone can send those
headers, so they are believed only from the configured proxies, and X-Forwarded-For is read from
the right: each trusted hop appends the address it saw, so the rightmost address that is not a
trusted proxy is the client (the left part may be whatever the client made up). Limits, viewer
counts and logs then count the real client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: list[_Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusted(self, address: str | None) -> bool:
        if not address or not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer``, unless ``peer`` is a trusted proxy that forwarded."""
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",")]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop.split("%", 1)[0])
            except ValueError:
                return peer  # garbage where an address should be: believe nothing of it
            if not self.trusted(hop):
                return hop
        return hops[0]  # every hop is one of ours

    def scheme(self, peer: str, forwarded_proto: str | None, default: str) -> str:
        if forwarded_proto and self.trusted(peer):
            proto = forwarded_proto.split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                return proto
        return default
