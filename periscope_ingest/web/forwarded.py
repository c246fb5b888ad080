"""Who the client is behind a reverse proxy (trusted_proxies).

Behind nginx or Caddy every request comes from the proxy's address; the proxy says who its client
was in X-Forwarded-For (and whether it spoke HTTPS in X-Forwarded-Proto). Anyone can send those
headers, so they are believed only from the configured proxies, and X-Forwarded-For is read from
the right: each trusted hop appends the address it saw, so the rightmost address that is not a
trusted proxy is the client (the left part may be whatever the client made up). Limits, viewer
counts and logs then count the real client.

A header sent more than once is one list, in order (RFC 9110, 5.3): callers join the values with
commas, so that a client's own X-Forwarded-For line before the proxy's cannot pass as the proxy's.
The address returned is always one this module parsed, written the standard way, never the text
the header carried.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> _Address | None:
    """``text`` as an address (zone id dropped, IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: list[_Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def _trusted(self, address: _Address) -> bool:
        return any(address in network for network in self._networks)

    def trusted(self, peer: str | None) -> bool:
        if not peer or not self._networks:
            return False
        address = _address(peer)
        return address is not None and self._trusted(address)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer``, unless ``peer`` is a trusted proxy that forwarded."""
        if not forwarded_for or not self.trusted(peer):
            return peer
        address = None
        for hop in reversed(forwarded_for.split(",")):
            address = _address(hop)
            if address is None:
                return peer  # garbage where an address should be: believe nothing of it
            if not self._trusted(address):
                return str(address)
        return str(address)  # every hop is one of ours: the leftmost one

    def scheme(self, peer: str, forwarded_proto: str | None, default: str) -> str:
        """``http`` or ``https`` as the trusted proxy's client spoke it (its last hop's word)."""
        if forwarded_proto and self.trusted(peer):
            proto = forwarded_proto.split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                return proto
        return default
