"""What ChunkReader keeps per chunk stream between chunks and between feed() calls.

The header state each chunk stream's previous headers established, and the pieces of its message in
progress: how they are taken out of the caller's data at the end of a feed(), and how much memory
they hold. The parsing itself is ChunkReader._parse's (chunk.py).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "InboundChunkStream",
    "held_bytes",
    "own_partial_messages",
    "repeated_extended_timestamp",
]


@dataclass(slots=True)
class InboundChunkStream:
    """What the previous headers on one chunk stream id established."""

    # How a type-3 continuation chunk on this stream starts: the basic header, followed by
    # extended_bytes when the last header had an extended timestamp (as writers repeat it).
    continuation: bytes
    timestamp: int = 0  # absolute timestamp of the current (or last) message
    delta: int = 0  # reapplied by a type-3 header that starts a new message
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    # Whether the last type 0/1/2 header carried an extended timestamp, and its value: type-3
    # chunks on this stream may then repeat those 4 bytes.
    extended: bool = False
    extended_value: int = 0
    extended_bytes: bytes = b""  # extended_value as sent, for comparing with type-3 chunks
    remaining: int = 0  # payload bytes still missing from the message in progress
    # Received pieces of the message in progress: views into the data of the current feed(),
    # folded into one bytearray at the end of every feed() (see own_partial_messages).
    parts: list | None = None


def repeated_extended_timestamp(
    buffer: bytes | bytearray, offset: int, end: int, stream: InboundChunkStream
) -> int:
    """How many bytes of repeated extended timestamp start at offset: 0 or 4, or -1 to wait.

    The spec says type-3 chunks repeat the extended timestamp; FFmpeg and OBS do, some encoders
    do not. The 4 bytes are taken as a repetition only if they equal the stored value, the only
    reading consistent with both kinds of writer.
    """
    expected = stream.extended_bytes
    if end - offset >= 4:
        return 4 if buffer[offset : offset + 4] == expected else 0
    if buffer[offset:end] != expected[: end - offset]:
        return 0  # already differs: payload, not a repetition
    return -1


def own_partial_messages(streams: dict[int, InboundChunkStream]) -> None:
    """Copy the pieces of unfinished messages out of the caller's data, into one bytearray.

    Pieces are views into the data passed to feed() while it runs (so a message arriving
    whole is copied once, by the final join). Keeping those views across calls would keep
    every feed()'s whole data alive for one small piece of it, and keeping one object per
    chunk would cost ~40 bytes of overhead for every 1-byte chunk: either would let memory
    grow far past max_message_size per message.
    """
    for stream in streams.values():
        parts = stream.parts
        if parts is None or (len(parts) == 1 and type(parts[0]) is bytearray):
            continue
        if type(parts[0]) is bytearray:
            owned = parts[0]
            del parts[0]
        else:
            owned = bytearray()
        for part in parts:
            owned += part
        stream.parts = [owned]


def held_bytes(streams: dict[int, InboundChunkStream]) -> int:
    """Memory the pieces of the messages in progress hold (see ChunkReader.buffered_bytes)."""
    total = 0
    viewed: set[int] = set()
    for stream in streams.values():
        for part in stream.parts or ():
            if isinstance(part, memoryview):
                if id(part.obj) not in viewed:
                    viewed.add(id(part.obj))
                    total += len(part.obj)  # type: ignore[arg-type]
            else:
                total += len(part)
    return total
