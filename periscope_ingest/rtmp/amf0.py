"""AMF0 encoding and decoding (Adobe "Action Message Format AMF 0" specification).

RTMP commands (connect, publish, onStatus, ...) and data messages (onMetaData) are sequences of
AMF0 values. Python mapping:

    float / int (not bool)  <-> number (always decoded as float)
    bool                    <-> boolean
    str                     <-> string, or long string when over 65535 bytes of UTF-8
    dict                    <-> anonymous object
    EcmaArray (a dict)      <-> ECMA array
    list                    <-> strict array
    None                    <-> null
    UNDEFINED               <-> undefined (and the "unsupported" marker on decode)
    datetime (aware)        <-> date (decoded as an aware UTC datetime)

Decoding is deliberately lenient where real encoders are known to be sloppy (wrong ECMA array
counts, a missing object-end marker at the very end of a message) and strict everywhere else:
malformed or unsupported input raises ProtocolError saying where and what.
"""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from typing import Final

from .errors import ProtocolError, shown

__all__ = ["UNDEFINED", "EcmaArray", "decode", "decode_all", "encode"]

# Type markers, section 2.1 of the AMF0 specification.
NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
RECORDSET: Final = 0x0E
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

# Objects nest recursively; a hostile client could otherwise exhaust the Python stack.
MAX_DEPTH: Final = 32
# Values (properties and array elements included) decoded from one message. connect and
# onMetaData carry a few dozen; a hostile message of one-byte values would otherwise cost the
# event loop a Python object and ~1 us per byte.
MAX_VALUES: Final = 1024

_UNSUPPORTED_NAMES: Final = {
    MOVIECLIP: "movieclip",
    REFERENCE: "reference",
    RECORDSET: "recordset",
    XML_DOCUMENT: "xml-document",
    TYPED_OBJECT: "typed-object",
    AVMPLUS: "avmplus-object (AMF3 switch)",
}

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE_TAIL = struct.Struct(">dh")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS: Final = timedelta(milliseconds=1)


class _Undefined:
    """The AMF0 undefined value; distinct from None, which is AMF0 null."""

    __slots__ = ()
    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class EcmaArray(dict):
    """A dict that encodes as an AMF0 ECMA array (what onMetaData usually is), not an object."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"EcmaArray({dict.__repr__(self)})"


# --------------------------------------------------------------------------------------- encode


def encode(*values: object) -> bytes:
    """Encode each value in turn and return the concatenation (one RTMP command or data body)."""
    out = bytearray()
    for value in values:
        _encode_value(out, value, 0)
    return bytes(out)


def _encode_utf8_short(out: bytearray, text: str) -> None:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"AMF0 object key of {len(raw)} bytes exceeds the 65535-byte limit")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, mapping: dict, depth: int) -> None:
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 object keys must be str, got {type(key).__name__}")
        _encode_utf8_short(out, key)
        _encode_value(out, item, depth)
    out += b"\x00\x00\x09"


def _encode_value(out: bytearray, value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"AMF0 value nested deeper than {MAX_DEPTH} levels")
    # bool before int: bool is a subclass of int but has its own AMF0 type.
    if isinstance(value, bool):
        out += b"\x01\x01" if value else b"\x01\x00"
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 0xFFFF:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        else:
            out.append(STRING)
            out += _U16.pack(len(raw))
        out += raw
    elif value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth + 1)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth + 1)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(out, item, depth + 1)
    elif isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("AMF0 dates need an aware datetime (naive times are ambiguous)")
        # The spec says the time-zone field "should" be 0 and readers ignore it: UTC only.
        out.append(DATE)
        out += _DATE_TAIL.pack((value - _EPOCH) / _ONE_MS, 0)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


# --------------------------------------------------------------------------------------- decode


def decode_all(data: bytes, max_values: int = MAX_VALUES) -> list:
    """Decode consecutive AMF0 values until the data is used up (at most max_values values,
    nested ones included)."""
    values = []
    offset = 0
    end = len(data)
    budget = [max_values, max_values]  # values left, the limit
    while offset < end:
        value, offset = _decode_value(data, offset, 0, budget)
        values.append(value)
    return values


def decode(data: bytes, offset: int = 0, max_values: int = MAX_VALUES) -> tuple[object, int]:
    """Decode one AMF0 value at offset; return it and the offset just past it."""
    return _decode_value(data, offset, 0, [max_values, max_values])


def _truncated(what: str, offset: int, data: bytes) -> ProtocolError:
    return ProtocolError(f"AMF0 {what} at offset {offset} is truncated (data is {len(data)} bytes)")


def _read_short_string(data: bytes, offset: int, what: str) -> tuple[str, int]:
    if offset + 2 > len(data):
        raise _truncated(what, offset, data)
    length = (data[offset] << 8) | data[offset + 1]
    start = offset + 2
    end = start + length
    if end > len(data):
        raise _truncated(what, offset, data)
    try:
        return bytes(data[start:end]).decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"AMF0 {what} at offset {offset} is not valid UTF-8: {exc}") from None


def _decode_properties(data: bytes, offset: int, depth: int, into: dict, budget: list[int]) -> int:
    """Read key/value pairs up to the object-end marker; return the offset after it."""
    end = len(data)
    while True:
        if offset >= end:
            # Some encoders drop the final object-end of the last value in a message; with
            # nothing left to misread, accepting it costs nothing.
            return offset
        if offset + 3 <= end and data[offset] == 0 and data[offset + 1] == 0:
            if data[offset + 2] == OBJECT_END:
                return offset + 3
        elif offset + 2 == end and data[offset] == 0 and data[offset + 1] == 0:
            return end  # empty key with the end marker cut off
        key, offset = _read_short_string(data, offset, "object key")
        if offset >= end:
            raise _truncated(f"value of property {shown(key)}", offset, data)
        into[key], offset = _decode_value(data, offset, depth, budget)


def _decode_value(data: bytes, offset: int, depth: int, budget: list[int]) -> tuple[object, int]:
    if offset >= len(data):
        raise _truncated("value", offset, data)
    budget[0] -= 1
    if budget[0] < 0:
        raise ProtocolError(f"AMF0 data holds more than {budget[1]} values (at offset {offset})")
    marker = data[offset]
    body = offset + 1
    if marker == NUMBER:
        if body + 8 > len(data):
            raise _truncated("number", offset, data)
        return _DOUBLE.unpack_from(data, body)[0], body + 8
    if marker == BOOLEAN:
        if body >= len(data):
            raise _truncated("boolean", offset, data)
        return data[body] != 0, body + 1
    if marker == STRING:
        return _read_short_string(data, body, "string")
    if marker == NULL:
        return None, body
    if marker in (UNDEFINED_MARKER, UNSUPPORTED):
        return UNDEFINED, body
    if marker in (OBJECT, ECMA_ARRAY):
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"AMF0 value at offset {offset} nests deeper than {MAX_DEPTH}")
        if marker == OBJECT:
            result: dict = {}
        else:
            # The count is only a hint: encoders get it wrong, and the object-end marker is
            # what actually terminates the array, so it is skipped rather than trusted.
            if body + 4 > len(data):
                raise _truncated("ECMA array", offset, data)
            body += 4
            result = EcmaArray()
        return result, _decode_properties(data, body, depth + 1, result, budget)
    if marker == STRICT_ARRAY:
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"AMF0 value at offset {offset} nests deeper than {MAX_DEPTH}")
        if body + 4 > len(data):
            raise _truncated("strict array", offset, data)
        count = _U32.unpack_from(data, body)[0]
        body += 4
        # Each element takes at least one byte: reject impossible counts before looping.
        if count > len(data) - body:
            raise ProtocolError(
                f"AMF0 strict array at offset {offset} claims {count} elements "
                f"but only {len(data) - body} bytes follow"
            )
        items = []
        for _ in range(count):
            item, body = _decode_value(data, body, depth + 1, budget)
            items.append(item)
        return items, body
    if marker == DATE:
        if body + 10 > len(data):
            raise _truncated("date", offset, data)
        millis, _timezone = _DATE_TAIL.unpack_from(data, body)
        try:
            if not math.isfinite(millis):
                raise OverflowError
            when = _EPOCH + timedelta(milliseconds=millis)
        except OverflowError:
            raise ProtocolError(f"AMF0 date at offset {offset} is out of range: {millis}") from None
        return when, body + 10
    if marker == LONG_STRING:
        if body + 4 > len(data):
            raise _truncated("long string", offset, data)
        length = _U32.unpack_from(data, body)[0]
        start = body + 4
        if start + length > len(data):
            raise _truncated("long string", offset, data)
        try:
            return bytes(data[start : start + length]).decode("utf-8"), start + length
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                f"AMF0 long string at offset {offset} is not UTF-8: {exc}"
            ) from None
    if marker == OBJECT_END:
        raise ProtocolError(f"AMF0 object-end marker at offset {offset} outside an object")
    name = _UNSUPPORTED_NAMES.get(marker)
    if name is not None:
        raise ProtocolError(
            f"unsupported AMF0 type marker 0x{marker:02x} ({name}) at offset {offset}"
        )
    raise ProtocolError(f"unknown AMF0 type marker 0x{marker:02x} at offset {offset}")
