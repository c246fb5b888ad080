"""The RTMP chunk format (RTMP 1.0, section 5.3): what the reader and the writer share.

Every chunk starts with a basic header (format 0-3 and a chunk stream id of 1, 2 or 3 bytes) and a
message header whose size depends on the format:

    type 0 (11 bytes): timestamp, length, type id, message stream id  -- absolute timestamp
    type 1 (7 bytes):  timestamp delta, length, type id               -- same stream id
    type 2 (3 bytes):  timestamp delta                                 -- same length and type
    type 3 (0 bytes):  nothing; continues a message, or repeats the previous header and delta

A timestamp field of 0xFFFFFF means a 4-byte extended timestamp follows. State is kept per chunk
stream id and never per message type, because OBS sends audio, video and metadata on one chunk
stream.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message", "MessageTuple", "basic_header"]

EXTENDED_TIMESTAMP = 0xFFFFFF
MAX_MESSAGE_LENGTH = 0xFFFFFF  # the length field has 3 bytes
MIN_CHUNK_STREAM_ID = 2  # 0 and 1 select the 2- and 3-byte basic header forms
MAX_CHUNK_STREAM_ID = 65599
DEFAULT_CHUNK_SIZE = 128


@dataclass(slots=True)
class Message:
    """One reassembled RTMP message.

    timestamp is the absolute time in milliseconds, modulo 2**32, as accumulated from the chunk
    headers (type-0 absolute values plus the deltas of types 1, 2 and 3).
    """

    chunk_stream_id: int
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


# A message as ChunkReader.feed_tuples() returns it: the fields of Message, in the same order.
MessageTuple = tuple[int, int, int, int, bytes]


def basic_header(fmt: int, csid: int) -> bytes:
    """The basic header of a chunk: format and chunk stream id, in 1, 2 or 3 bytes."""
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))
