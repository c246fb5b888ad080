"""Which clients count as one for the per-address limits.

An IPv4 address is one client. An IPv6 client usually holds a whole /64 (SLAAC, privacy
addresses: a phone changes its address within its /64 at will), so a per-address limit keyed on
the full IPv6 address would be no limit at all: IPv6 clients are grouped by their /64, as nginx's
limit_conn users do with a map, and IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, seen on
dual-stack sockets) count as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress


def address_group(host: str) -> str:
    """The key the per-address limits count ``host`` under."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return host  # not an IP address (a Unix socket, "?"): counted as itself
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
