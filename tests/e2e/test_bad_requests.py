"""Malformed HTTP requests: a 400 and one log line each, without the request's bytes."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.server import ServerProcess

pytestmark = pytest.mark.e2e

SERVER_ENV = {"PERISCOPE_LOG_LEVEL": "INFO"}
SECRET = "Bearer hunter2-super-secret-token"
MALFORMED = [
    # (request, the reason logged)
    (
        f"GET /x HTTP/1.1\r\nHost: a\r\nAuthorization: {SECRET}\r\nX: \x01\x02\r\n\r\n",
        "Invalid header value char",
    ),
    (
        f"GET /healthz HTTP/1.1\r\nHost: a\r\nAuthorization: {SECRET}\r\n"
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "Content-Length can't be present with Transfer-Encoding",
    ),
    (
        f"GET /healthz HTTP/1.1\r\nAuthorization: {SECRET}\r\nX-Long: {'A' * 10000}\r\n\r\n",
        "LineTooLong",
    ),
    (f"GET /{SECRET}\x01 HTTP/1.1\r\nHost: a\r\n\r\n", "BadStatusLine"),
]


@pytest.mark.parametrize(("request_text", "reason"), MALFORMED)
def test_a_malformed_request_is_one_line_without_its_bytes(
    server: ServerProcess, request_text: str, reason: str
) -> None:
    before = server.log().splitlines()
    with socket.create_connection(("127.0.0.1", server.http_port), 5) as sock:
        sock.sendall(request_text.encode("latin-1"))
        assert sock.recv(100).startswith(b"HTTP/1.0 400 Bad Request")
    lines = server.wait_for(lambda: server.log().splitlines()[len(before) :], 5)
    assert len(lines) == 1, lines
    assert "http_bad_request client=127.0.0.1" in lines[0]
    assert f'reason="{reason}"' in lines[0] or f"reason={reason}" in lines[0]
    text = server.log()
    assert "hunter2" not in text and "\x01" not in text and "Traceback" not in text
