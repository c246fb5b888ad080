"""Which HTTP request heads are a plain GET that web/fast_path.py may answer, and what it reads
from them. Pure: bytes in, a PlainGet or None out (None: aiohttp parses the request, and answers
or refuses it).

Only what a player sends is accepted: ``GET`` of an origin-form path made of unreserved
characters (no query, no escapes), HTTP/1.0 or 1.1, header lines that are a token, a colon and
a value without control characters (no obs-fold), and none of the fields that bring a body, a
protocol switch or an expectation. A Connection field decides keep-alive; Range and the
conditional fields mark the request as the file's (aiohttp's FileResponse answers those).

A player repeats the same head for every reload of a playlist, and a thousand viewers in one
player send the same head for each segment: ParsedHeads keeps what was read from each head seen
recently, so most requests cost one dict lookup instead of three regular expression passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"GET (/[A-Za-z0-9._~/-]*) HTTP/1\.([01])")
# Header lines, each ending in CRLF: a token, a colon, a value without control characters.
# obs-fold (a line starting with a space) and lines without a colon do not match.
_FIELDS = re.compile(rb"(?:[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
# Any of these makes the request aiohttp's: a body, a protocol switch, or an expectation.
_HANDED_OVER = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect"))
# Fields read here: those above, Connection, and those that make a segment request the file's
# (Range and the conditional ones, answered by aiohttp's FileResponse).
_NOTABLE = re.compile(
    rb"\r\n(content-length|transfer-encoding|upgrade|expect|connection"
    rb"|range|if-range|if-none-match|if-modified-since|x-forwarded-for):([^\r]*)"
)


# Heads kept by ParsedHeads: at most this many (all dropped when full, then kept again as they
# come), each at most this long (a longer one is parsed every time). At most 1 MiB of heads.
MAX_KEPT_HEADS = 512
MAX_KEPT_HEAD_BYTES = 2048


@dataclass(frozen=True, slots=True)
class PlainGet:
    """A GET web/fast_path.py may answer: its path, and whether the connection stays open."""

    path: str
    keep_alive: bool
    http10: bool
    file_only: bool  # has Range or a conditional header
    forwarded_for: str | None = None  # X-Forwarded-For (believed only from a trusted proxy)


def parse_plain_get(head: bytes) -> PlainGet | None:
    """A request head (without the blank line that ends it) as a PlainGet, or None when it is
    anything else: then aiohttp parses it, and answers or refuses it."""
    line_end = head.find(b"\r\n")
    if line_end < 0:
        request_line, fields = head, b""
    else:
        request_line, fields = head[:line_end], head[line_end:] + b"\r\n"
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None or _FIELDS.fullmatch(fields, 2) is None:
        return None
    http10 = match.group(2) == b"0"
    keep_alive = not http10
    file_only = False
    forwarded_for = None
    # A player's request usually has none of the fields that matter here: one search, no match.
    for field in _NOTABLE.finditer(fields.lower()):
        name = field.group(1)
        if name in _HANDED_OVER:
            return None
        if name == b"x-forwarded-for":
            # Lower-cased does not matter: addresses only. Sent several times, it is one list
            # in order (a proxy such as HAProxy adds its own line after the client's).
            hops = field.group(2).strip().decode("latin-1")
            forwarded_for = hops if forwarded_for is None else f"{forwarded_for},{hops}"
            continue
        if name != b"connection":
            file_only = True
            continue
        options = {option.strip() for option in field.group(2).split(b",")}
        if b"upgrade" in options:
            return None
        if b"close" in options:
            keep_alive = False
        elif b"keep-alive" in options and http10:
            keep_alive = True
    return PlainGet(match.group(1).decode("ascii"), keep_alive, http10, file_only, forwarded_for)


class ParsedHeads:
    """parse_plain_get, remembering its answer for each head seen recently (a PlainGet is
    immutable, so one is shared by every request that sent the same bytes). Heads that are not
    a plain GET are not kept: their connection goes to aiohttp for good."""

    def __init__(self) -> None:
        self._kept: dict[bytes, PlainGet] = {}

    def __len__(self) -> int:
        return len(self._kept)

    def parse(self, head: bytes) -> PlainGet | None:
        request = self._kept.get(head)
        if request is not None:
            return request
        request = parse_plain_get(head)
        if request is not None and len(head) <= MAX_KEPT_HEAD_BYTES:
            if len(self._kept) >= MAX_KEPT_HEADS:
                # Dropping all at once is simpler than an LRU and as good here: the heads in
                # use come back within a reload interval.
                self._kept.clear()
            self._kept[head] = request
        return request
