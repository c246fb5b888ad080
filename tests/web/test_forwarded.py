"""TrustedProxies: whose X-Forwarded-For and -Proto are believed, and which hop is the client;
then the same over real sockets, on aiohttp's side (GET /api/client)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.service import Service
from periscope_ingest.web.forwarded import TrustedProxies
from tests.in_process import local_settings

PROXIES = TrustedProxies(["127.0.0.1", "10.0.0.0/8", "fd00::/8"])

# Addresses outside the proxies' networks: clients.
clients = st.ip_addresses().filter(lambda a: not PROXIES.trusted(str(a)))
proxies = st.one_of(
    st.just(ipaddress.ip_address("127.0.0.1")),
    st.ip_addresses(network="10.0.0.0/8"),
    st.ip_addresses(network="fd00::/8"),
)
# Whatever a client may put in front: addresses, words, ports, spaces, empty items.
made_up = st.lists(
    st.one_of(
        st.ip_addresses().map(str), st.text("abcdef0123456789.:[] ", max_size=12), st.just("")
    ),
    max_size=4,
)


def test_untrusted_peer_is_the_client_whatever_it_says() -> None:
    assert PROXIES.client("192.0.2.5", "203.0.113.1") == "192.0.2.5"
    assert PROXIES.scheme("192.0.2.5", "https", "http") == "http"


@given(peer=clients, claimed=made_up)
def test_an_untrusted_peer_can_claim_nothing(peer, claimed: list[str]) -> None:
    forwarded = ", ".join(claimed)
    assert PROXIES.client(str(peer), forwarded) == str(peer)
    assert PROXIES.scheme(str(peer), "https", "http") == "http"


def standard(address) -> str:
    """How the server writes an address: IPv4-mapped IPv6 as the IPv4 address it carries."""
    return str(getattr(address, "ipv4_mapped", None) or address)


@given(claimed=made_up, client=clients, hops=st.lists(proxies, max_size=3), proxy=proxies)
def test_the_rightmost_untrusted_hop_is_the_client(claimed, client, hops, proxy) -> None:
    # What the client sent, then each trusted proxy appending the address it saw.
    forwarded = ", ".join([*claimed, str(client), *map(str, hops)])
    assert PROXIES.client(str(proxy), forwarded) == standard(client)


@given(client=clients, proxy=proxies)
def test_the_address_is_written_the_standard_way(client, proxy) -> None:
    # Upper case, a zone id, spaces: the one address they are, never the header's text.
    text = str(client).upper() + ("%eth0" if client.version == 6 else "")
    assert PROXIES.client(str(proxy), f" {text} , {proxy}") == standard(client)
    if client.version == 4:
        assert PROXIES.client(str(proxy), f"::FFFF:{client}") == str(client)


@given(proxy=proxies, garbage=st.sampled_from(["unknown", "1.2.3.4:5678", "", "_hidden", "::g"]))
def test_garbage_where_the_client_should_be_believes_nothing(proxy, garbage: str) -> None:
    assert PROXIES.client(str(proxy), f"203.0.113.1, {garbage}") == str(proxy)


@given(proxies=st.lists(proxies, min_size=1, max_size=3), proxy=proxies)
def test_only_proxies_forwarded_names_the_leftmost(proxies, proxy) -> None:
    assert PROXIES.client(str(proxy), ",".join(map(str, proxies))) == str(proxies[0])


def test_scheme_is_the_last_hops_word_and_only_http_or_https() -> None:
    assert PROXIES.scheme("10.1.2.3", "http, HTTPS", "http") == "https"
    assert PROXIES.scheme("10.1.2.3", "https, gopher", "http") == "http"
    assert PROXIES.scheme("::ffff:127.0.0.1", "https", "http") == "https"  # dual-stack socket


def test_no_proxies_trusts_nobody() -> None:
    nobody = TrustedProxies([])
    assert not nobody and not nobody.trusted("127.0.0.1")
    assert nobody.client("127.0.0.1", "203.0.113.1") == "127.0.0.1"


# Over real sockets: the server trusts 127.0.0.1 only; 127.0.0.2 is a client like any other.


@pytest.fixture
async def service(tmp_path: Path):
    svc = Service(local_settings(tmp_path / "d", trusted_proxies=["127.0.0.1"]))
    await svc.start()
    yield svc
    await svc.stop()


def ask(port: int, source: str, *fields: str) -> dict:
    """GET /api/client from ``source`` with these header lines (repeated names kept as sent)."""
    with socket.create_connection(("127.0.0.1", port), 5, (source, 0)) as sock:
        head = "\r\n".join(["GET /api/client HTTP/1.1", "Host: t", *fields, "Connection: close"])
        sock.sendall(head.encode() + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), status
    return json.loads(body)


async def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(service: Service) -> None:
    port = service.http_port
    claims = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")

    def run() -> list[dict]:
        return [
            ask(port, "127.0.0.2", *claims),
            ask(port, "127.0.0.1", *claims),
            ask(port, "127.0.0.1"),
            # The client's own line first, the proxy's (HAProxy's way) after it.
            ask(port, "127.0.0.1", "X-Forwarded-For: 198.51.100.9", "X-Forwarded-For: 203.0.113.8"),
        ]

    untrusted, trusted, plain, twice = await asyncio.to_thread(run)
    assert untrusted == {"address": "127.0.0.2", "scheme": "http"}
    assert trusted == {"address": "203.0.113.7", "scheme": "https"}
    assert plain == {"address": "127.0.0.1", "scheme": "http"}
    assert twice["address"] == "203.0.113.8"


async def test_api_client_answers_json(service: Service) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{service.http_port}/api/client") as response,
    ):
        assert response.status == 200
        assert await response.json() == {"address": "127.0.0.1", "scheme": "http"}
