"""Server side of the plain RTMP handshake (RTMP 1.0 specification, section 5.2).

    client -> C0 (1 byte: version 3) + C1 (1536 bytes)
    server -> S0 (version 3) + S1 (time, zeros, random) + S2 (echo of C1)
    client -> C2 (1536 bytes, contents ignored)

S0+S1+S2 are produced together as soon as C0+C1 are complete: FFmpeg reads S2 before it sends C2,
so waiting for C2 first would deadlock. C1 blocks that carry the Flash Player "digest" scheme are
accepted without validation; no publisher we know of checks the server's answer.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable

from .errors import ProtocolError

RTMP_VERSION = 3
HANDSHAKE_BLOCK_SIZE = 1536

# RTMPE (encrypted RTMP) clients announce these versions; naming them saves a debugging session.
_ENCRYPTED_VERSIONS = {6: "encrypted RTMPE", 8: "RTMPE with XTEA", 9: "RTMPE with Blowfish"}


class HandshakeState(enum.Enum):
    WAITING_FOR_C0_C1 = enum.auto()
    WAITING_FOR_C2 = enum.auto()
    COMPLETE = enum.auto()


def _describe_version(version: int) -> str:
    encrypted = _ENCRYPTED_VERSIONS.get(version)
    if encrypted is not None:
        return f"unsupported RTMP version {version} ({encrypted} is not supported)"
    if version == 0x16:
        return (
            f"unsupported RTMP version {version} (this looks like a TLS ClientHello; use rtmp://)"
        )
    if 0x41 <= version <= 0x5A:
        return f"unsupported RTMP version {version} (this looks like a text protocol such as HTTP)"
    return f"unsupported RTMP version {version}"


class ServerHandshake:
    """Consumes C0, C1 and C2; queues S0+S1+S2. Bytes after C2 are returned to the caller."""

    __slots__ = ("_buffer", "_epoch_ms", "_outgoing", "_random_bytes", "state")

    def __init__(
        self, epoch_ms: int = 0, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        # epoch_ms is the S1 "time" field; sans-IO code reads no clock, and 0 is what the spec
        # allows and most servers send.
        self._epoch_ms = epoch_ms & 0xFFFFFFFF
        self._random_bytes = random_bytes
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self.state = HandshakeState.WAITING_FOR_C0_C1

    @property
    def complete(self) -> bool:
        return self.state is HandshakeState.COMPLETE

    @property
    def buffered_bytes(self) -> int:
        """Handshake bytes held until C0+C1 or C2 is complete (under 1537 + 1536)."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> bytes:
        """Consume handshake bytes; return whatever follows C2 (the start of the chunk stream)."""
        if self.state is HandshakeState.COMPLETE:
            return bytes(data)
        buffer = self._buffer
        buffer += data
        if self.state is HandshakeState.WAITING_FOR_C0_C1:
            # Check the version as soon as it arrives: an HTTP or TLS client should be told why
            # now, not after it has sent 1536 bytes it never will.
            if buffer and buffer[0] != RTMP_VERSION:
                raise ProtocolError(_describe_version(buffer[0]))
            if len(buffer) < 1 + HANDSHAKE_BLOCK_SIZE:
                return b""
            c1 = bytes(buffer[1 : 1 + HANDSHAKE_BLOCK_SIZE])
            del buffer[: 1 + HANDSHAKE_BLOCK_SIZE]
            self._outgoing += self._server_blocks(c1)
            self.state = HandshakeState.WAITING_FOR_C2
        if len(buffer) < HANDSHAKE_BLOCK_SIZE:
            return b""
        leftover = bytes(buffer[HANDSHAKE_BLOCK_SIZE:])
        buffer.clear()
        self.state = HandshakeState.COMPLETE
        return leftover

    def data_to_send(self) -> bytes:
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def _server_blocks(self, c1: bytes) -> bytes:
        random_part = self._random_bytes(HANDSHAKE_BLOCK_SIZE - 8)
        if len(random_part) != HANDSHAKE_BLOCK_SIZE - 8:
            raise ValueError("random_bytes returned the wrong number of bytes")
        s0 = bytes((RTMP_VERSION,))
        s1 = self._epoch_ms.to_bytes(4, "big") + b"\x00\x00\x00\x00" + random_part
        # S2 echoes C1 byte for byte; the "read time" field is left as the client's own time,
        # which every publisher we know of accepts.
        return s0 + s1 + c1
