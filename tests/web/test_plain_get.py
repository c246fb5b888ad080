"""parse_plain_get: which request heads the fast path may answer, and what it reads from them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.web.plain_get import (
    MAX_KEPT_HEAD_BYTES,
    MAX_KEPT_HEADS,
    ParsedHeads,
    PlainGet,
    parse_plain_get,
)

PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._~-/"
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$&'*+.^_`|~%"
# Headers a player sends that change nothing here.
NEUTRAL = st.sampled_from(["Host", "User-Agent", "Accept", "Accept-Encoding", "Origin", "X-Id"])
VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


def head(request_line: str, *fields: str) -> bytes:
    return "\r\n".join((request_line, *fields)).encode()


def test_a_player_request() -> None:
    got = parse_plain_get(
        head(
            "GET /live/main/index.m3u8 HTTP/1.1",
            "Host: example.org",
            "User-Agent: AppleCoreMedia/1.0",
            "Accept: */*",
        )
    )
    assert got == PlainGet("/live/main/index.m3u8", keep_alive=True, http10=False, file_only=False)


@pytest.mark.parametrize(
    ("fields", "keep_alive", "http10"),
    [
        (("HTTP/1.1",), True, False),
        (("HTTP/1.1", "Connection: close"), False, False),
        (("HTTP/1.1", "connection: Keep-Alive, CLOSE"), False, False),
        (("HTTP/1.0",), False, True),
        (("HTTP/1.0", "Connection: keep-alive"), True, True),
        (("HTTP/1.0", "Connection: keep-alive", "Connection: close"), False, True),
    ],
)
def test_connection_disposition(fields: tuple[str, ...], keep_alive: bool, http10: bool) -> None:
    version, *rest = fields
    got = parse_plain_get(head(f"GET /live/a/index.m3u8 {version}", "Host: h", *rest))
    assert got is not None and (got.keep_alive, got.http10) == (keep_alive, http10)


@pytest.mark.parametrize("name", ["Range", "If-Range", "If-None-Match", "If-Modified-Since"])
def test_range_and_conditionals_are_marked_file_only(name: str) -> None:
    got = parse_plain_get(head("GET /live/a/b/000001.ts HTTP/1.1", f"{name.upper()}: x"))
    assert got is not None and got.file_only


@pytest.mark.parametrize(
    "request_head",
    [
        head("HEAD /live/a/index.m3u8 HTTP/1.1"),
        head("POST /live/a/index.m3u8 HTTP/1.1", "Content-Length: 0"),
        head("get /live/a/index.m3u8 HTTP/1.1"),
        head("GET /live/a/index.m3u8?_HLS_msn=3 HTTP/1.1"),
        head("GET /live/a%2Fb/index.m3u8 HTTP/1.1"),
        head("GET http://h/live/a/index.m3u8 HTTP/1.1"),
        head("GET /live/a/index.m3u8 HTTP/2.0"),
        head("GET /live/a/index.m3u8  HTTP/1.1"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Content-Length: 5"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Transfer-Encoding: chunked"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Upgrade: websocket", "Connection: Upgrade"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Connection: upgrade"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Expect: 100-continue"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Host: h", " folded: continuation"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "no colon here"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "Bad Name: x"),
        head("GET /live/a/index.m3u8 HTTP/1.1", "X: a\x00b"),
        head("GET /live/a/index.m3u8 HTTP/1.1", ""),
        head("GET /live/a/index.m3u8 HTTP/1.1\nHost: bare-lf"),
    ],
)
def test_anything_else_is_left_to_aiohttp(request_head: bytes) -> None:
    assert parse_plain_get(request_head) is None


@given(
    path=st.text(PATH_CHARS, max_size=60),
    version=st.sampled_from(["1.0", "1.1"]),
    fields=st.lists(st.tuples(NEUTRAL, VALUE), max_size=8),
    close=st.booleans(),
    file_only=st.booleans(),
)
def test_what_is_read_is_what_was_sent(
    path: str, version: str, fields: list[tuple[str, str]], close: bool, file_only: bool
) -> None:
    lines = [f"{name}: {value}" for name, value in fields]
    if close:
        lines.append("Connection: close")
    if file_only:
        lines.append("Range: bytes=0-")
    got = parse_plain_get(head(f"GET /{path} HTTP/{version}", *lines))
    assert got == PlainGet(f"/{path}", not close and version == "1.1", version == "1.0", file_only)


@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    got = parse_plain_get(data)
    assert got is None or got.path.startswith("/")


@given(
    name=st.text(TOKEN_CHARS, min_size=1, max_size=20),
    value=VALUE,
)
def test_any_token_header_is_accepted(name: str, value: str) -> None:
    got = parse_plain_get(head("GET /x HTTP/1.1", f"{name}:{value}"))
    lowered = name.lower()
    blocked = lowered in {"content-length", "transfer-encoding", "upgrade", "expect", "connection"}
    assert (got is None) == blocked or lowered == "connection"


def test_x_forwarded_for_sent_twice_is_one_list_in_order() -> None:
    # HAProxy (option forwardfor) adds its own line after the one its client made up: the
    # proxy's hop must stay the rightmost, as aiohttp's side reads it too.
    got = parse_plain_get(
        head(
            "GET /live/a/index.m3u8 HTTP/1.1",
            "X-Forwarded-For: 198.51.100.9",
            "Host: h",
            "x-forwarded-for: 203.0.113.7, 192.0.2.1",
        )
    )
    assert got is not None and not got.file_only
    assert got.forwarded_for == "198.51.100.9,203.0.113.7, 192.0.2.1"


def test_parsed_heads_answer_a_repeated_head_with_the_same_request() -> None:
    heads = ParsedHeads()
    playlist = head("GET /live/a/index.m3u8 HTTP/1.1", "Host: h", "Connection: close")
    first = heads.parse(playlist)
    assert first == PlainGet("/live/a/index.m3u8", False, False, False)
    # The same bytes again (a new bytes object, as read from a socket): the kept answer.
    assert heads.parse(bytes(bytearray(playlist))) is first
    segment = head("GET /live/a/b/000001.ts HTTP/1.1", "Host: h", "Range: bytes=0-")
    assert heads.parse(segment) == PlainGet("/live/a/b/000001.ts", True, False, True)
    assert heads.parse(playlist) is first


def test_parsed_heads_are_bounded_and_keep_only_plain_gets() -> None:
    heads = ParsedHeads()
    refused = head("POST /live/a/index.m3u8 HTTP/1.1", "Content-Length: 0")
    assert heads.parse(refused) is None
    assert heads.parse(refused) is None
    long_head = head("GET /live/a/index.m3u8 HTTP/1.1", "X-Pad: " + "p" * MAX_KEPT_HEAD_BYTES)
    long_request = heads.parse(long_head)
    assert long_request is not None and long_request.path == "/live/a/index.m3u8"
    assert heads.parse(long_head) is not long_request  # parsed again, not kept
    first = heads.parse(head("GET /0 HTTP/1.1"))
    for n in range(1, MAX_KEPT_HEADS + 1):
        assert heads.parse(head(f"GET /{n} HTTP/1.1")) == PlainGet(f"/{n}", True, False, False)
    # Full: everything was dropped once, so the first head is parsed anew.
    again = heads.parse(head("GET /0 HTTP/1.1"))
    assert again == first and again is not first
    assert len(heads) <= MAX_KEPT_HEADS
