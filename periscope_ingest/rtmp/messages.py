"""RTMP message type ids, user control events, and payload helpers (RTMP 1.0, sections 5.4-7).

Encoders return message payloads (bytes); the chunk layer adds the headers. Decoders raise
ProtocolError with the message name when a payload is too short or badly typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from . import amf0
from .errors import ProtocolError, shown

# Message type ids.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
SHARED_OBJECT_AMF3: Final = 16
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
SHARED_OBJECT_AMF0: Final = 19
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22

# User control event types (first two bytes of a USER_CONTROL payload).
STREAM_BEGIN: Final = 0
STREAM_EOF: Final = 1
STREAM_DRY: Final = 2
SET_BUFFER_LENGTH: Final = 3
STREAM_IS_RECORDED: Final = 4
PING_REQUEST: Final = 6
PING_RESPONSE: Final = 7

# Set Peer Bandwidth limit types.
LIMIT_HARD: Final = 0
LIMIT_SOFT: Final = 1
LIMIT_DYNAMIC: Final = 2

# Chunk stream ids this server writes on. Protocol control must use 2 (spec 5.4); the others are
# the conventional choices of FMS, nginx-rtmp and FFmpeg.
CSID_PROTOCOL_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STREAM_COMMAND: Final = 5


# ------------------------------------------------------------------------- protocol control


def encode_uint32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, "big")


def encode_set_chunk_size(size: int) -> bytes:
    if not 1 <= size <= 0x7FFFFFFF:
        raise ValueError(f"chunk size {size} is outside 1..2**31-1")
    return size.to_bytes(4, "big")


def encode_acknowledgement(sequence_number: int) -> bytes:
    return encode_uint32(sequence_number)


def encode_window_ack_size(size: int) -> bytes:
    return encode_uint32(size)


def encode_set_peer_bandwidth(size: int, limit_type: int = LIMIT_DYNAMIC) -> bytes:
    return encode_uint32(size) + bytes((limit_type,))


def encode_user_control(event_type: int, *values: int) -> bytes:
    """User control payload: 16-bit event type, then 32-bit values (two for Set Buffer Length)."""
    return event_type.to_bytes(2, "big") + b"".join(encode_uint32(value) for value in values)


def decode_uint32(payload: bytes, what: str) -> int:
    """The leading 32-bit field of a protocol control message."""
    if len(payload) < 4:
        raise ProtocolError(f"{what} message has {len(payload)} bytes, expected at least 4")
    return int.from_bytes(payload[:4], "big")


def decode_user_control(payload: bytes) -> tuple[int, bytes]:
    """Return (event type, event data)."""
    if len(payload) < 2:
        raise ProtocolError(f"User Control message has {len(payload)} bytes, expected at least 2")
    return int.from_bytes(payload[:2], "big"), bytes(payload[2:])


# ---------------------------------------------------------------------------------- commands


def command(name: str, transaction_id: float, command_object: object, *args: object) -> bytes:
    """AMF0 command payload: name, transaction id, command object (often null), arguments."""
    return amf0.encode(name, float(transaction_id), command_object, *args)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    transaction_id: float
    command_object: object
    args: list = field(default_factory=list)


def amf0_body(payload: bytes, type_id: int) -> bytes | memoryview:
    """The AMF0 part of a command or data message.

    AMF3 command and data messages (types 17 and 15) from publishers start with a 0x00 byte (the
    AMF3 "switch" convention) followed by plain AMF0, so that byte is all that has to go.
    """
    if type_id in (COMMAND_AMF3, DATA_AMF3):
        if not payload:
            raise ProtocolError(f"empty AMF3 message (type {type_id})")
        if payload[0] != 0:
            raise ProtocolError(
                f"AMF3 message (type {type_id}) starts with 0x{payload[0]:02x}; "
                "only AMF0 bodies behind a 0x00 byte are supported"
            )
        return memoryview(payload)[1:]
    return payload


def decode_command(payload: bytes, type_id: int = COMMAND_AMF0) -> Command:
    """Decode a command message (type 20, or 17 with its leading byte)."""
    values = amf0.decode_all(amf0_body(payload, type_id))
    if not values:
        raise ProtocolError("empty command message")
    name = values[0]
    if not isinstance(name, str):
        raise ProtocolError(f"command name must be an AMF0 string, got {_amf_type_name(name)}")
    if len(values) < 2:
        raise ProtocolError(f"command {shown(name)} has no transaction id")
    transaction_id = values[1]
    if isinstance(transaction_id, bool) or not isinstance(transaction_id, float):
        raise ProtocolError(
            f"command {shown(name)}: transaction id must be an AMF0 number, "
            f"got {_amf_type_name(transaction_id)}"
        )
    command_object = values[2] if len(values) > 2 else None
    return Command(name, transaction_id, command_object, values[3:])


def decode_data(payload: bytes, type_id: int = DATA_AMF0) -> list:
    """Decode a data message (type 18, or 15 with its leading byte) into its AMF0 values."""
    return amf0.decode_all(amf0_body(payload, type_id))


def _amf_type_name(value: object) -> str:
    if value is None:
        return "null"
    if value is amf0.UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, amf0.EcmaArray):
        return "ECMA array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "strict array"
    return type(value).__name__
