"""RTMP chunk stream: splitting messages into chunks and reassembling them (RTMP 1.0, section 5.3).

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

import struct
from dataclasses import dataclass

from .errors import LimitExceeded, ProtocolError

__all__ = ["ChunkReader", "ChunkWriter", "LimitNames", "Message", "MessageTuple"]

EXTENDED_TIMESTAMP = 0xFFFFFF
MAX_MESSAGE_LENGTH = 0xFFFFFF  # the length field has 3 bytes
MIN_CHUNK_STREAM_ID = 2  # 0 and 1 select the 2- and 3-byte basic header forms
MAX_CHUNK_STREAM_ID = 65599
DEFAULT_CHUNK_SIZE = 128

# Protocol control message types the reader must apply itself (see ChunkReader.feed).
_SET_CHUNK_SIZE = 1
_ABORT = 2
# The only message types that may be larger than max_command_size.
_AUDIO = 8
_VIDEO = 9

# Largest chunk header: 3-byte basic header, type-0 message header, extended timestamp.
_MAX_CHUNK_HEADER = 3 + 11 + 4

_U32 = struct.Struct(">I")
_U32_LE = struct.Struct("<I")
_TWO_U32 = struct.Struct(">II")


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


@dataclass(frozen=True, slots=True)
class LimitNames:
    """How LimitExceeded errors name the limits in force: after the setting an operator would
    change, so that the log line says which one the client hit."""

    message_size: str = "max_message_size"
    chunk_streams: str = "max_chunk_streams"
    buffered: str = "max_buffered"
    when: str = ""  # appended to the error, e.g. " (before a publish is accepted)"


@dataclass(slots=True)
class _InboundChunkStream:
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
    # folded into one bytearray at the end of every feed() (see _own_partial_messages).
    parts: list | None = None


class ChunkReader:
    """Turns the byte stream after the handshake into complete messages.

    Data can be split anywhere. A chunk header cut by the end of the data is kept (at most
    _MAX_CHUNK_HEADER bytes) and parsed once complete; state changes only then. A chunk whose
    header is complete is taken at once, its payload as far as it has arrived: the rest of that
    payload is expected first in the next feed().
    """

    __slots__ = (
        "_bytes_received",
        "_chunk_size",
        "_cut_chunk_left",
        "_cut_chunk_stream_id",
        "_header_buffer",
        "_in_progress",
        "_limit_names",
        "_streams",
        "max_buffered",
        "max_chunk_size",
        "max_chunk_streams",
        "max_command_size",
        "max_message_size",
    )

    def __init__(
        self,
        max_chunk_size: int = 65536,
        max_message_size: int = 16 * 1024 * 1024,
        max_chunk_streams: int = 64,
        max_command_size: int | None = None,
        max_buffered: int | None = None,
        limit_names: LimitNames = LimitNames(),
    ) -> None:
        self.max_chunk_size = max_chunk_size
        self.max_chunk_streams = max_chunk_streams
        self.set_limits(
            max_message_size, max_chunk_streams, max_command_size, max_buffered, limit_names
        )
        # Sum of the declared lengths of the messages being reassembled: what may be buffered
        # between feed() calls is at most this (plus a cut header), whatever the chunking.
        self._in_progress = 0
        self._chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _InboundChunkStream] = {}
        # The start of a chunk whose header the end of the data cut, for the next feed().
        self._header_buffer = bytearray()
        # The chunk whose payload the end of the data cut: its chunk stream id, and how many of
        # its payload bytes the next feed() starts with (0: no chunk was cut).
        self._cut_chunk_stream_id = 0
        self._cut_chunk_left = 0
        self._bytes_received = 0

    def set_limits(
        self,
        max_message_size: int,
        max_chunk_streams: int,
        max_command_size: int | None = None,
        max_buffered: int | None = None,
        limit_names: LimitNames = LimitNames(),
    ) -> None:
        """Change the limits between feed() calls (a server raises them once a publish is
        accepted: before that, a client with no key gets small messages only).

        max_command_size bounds every message but audio and video (commands, data, control:
        refused at their header, before any byte of them is buffered or decoded); max_buffered
        bounds the sum of the lengths of the messages in progress on all chunk streams.
        limit_names is how errors name them.
        """
        self._limit_names = limit_names
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_command_size = (
            max_message_size
            if max_command_size is None
            else min(max_command_size, max_message_size)
        )
        self.max_buffered = (
            max_message_size * max_chunk_streams if max_buffered is None else max_buffered
        )

    @property
    def bytes_received(self) -> int:
        """Total bytes passed to feed(), for acknowledgements."""
        return self._bytes_received

    @property
    def chunk_size(self) -> int:
        """The largest chunk payload the peer currently sends."""
        return self._chunk_size

    def set_chunk_size(self, size: int) -> None:
        if size & 0x80000000:
            raise ProtocolError(f"Set Chunk Size {size} has the reserved top bit set")
        if size < 1:
            raise ProtocolError(f"Set Chunk Size {size} is not a positive chunk size")
        if size > self.max_chunk_size:
            raise LimitExceeded(
                f"chunk size of {size} bytes exceeds max_chunk_size={self.max_chunk_size}"
            )
        self._chunk_size = size

    def abort(self, chunk_stream_id: int) -> None:
        """Discard the partially received message on a chunk stream (Abort Message).

        Should the data have cut a chunk of that message, the rest of the chunk is skipped too.
        """
        stream = self._streams.get(chunk_stream_id)
        if stream is not None:
            if stream.remaining:
                self._in_progress -= stream.length
            stream.remaining = 0
            stream.parts = None

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message they complete, in order.

        Set Chunk Size and Abort messages are applied here, at the exact point in the byte stream
        where they complete, because the chunks after them in the same data may already use the
        new size. They are still returned so the caller can see them.
        """
        return [Message(*fields) for fields in self.feed_tuples(data)]

    def feed_tuples(self, data: bytes) -> list[MessageTuple]:
        """feed(), with each message as a plain tuple of Message's fields.

        For callers that handle every audio and video frame: building a Message per frame is a
        tenth of the parsing time.
        """
        size = len(data)
        self._bytes_received += size
        if type(data) is not bytes:
            data = bytes(data)  # pieces are kept as views into it, so it must be immutable
        messages: list[MessageTuple] = []
        position = 0
        header_buffer = self._header_buffer
        if header_buffer:
            # Complete the cut header with the start of this data (a header is at most
            # _MAX_CHUNK_HEADER bytes) and parse on from there: parsing any prefix of the
            # stream is exact, so where it ends maps back to an offset in data.
            buffered = len(header_buffer)
            joined = bytes(header_buffer) + data[:_MAX_CHUNK_HEADER]
            parsed = self._parse(joined, memoryview(joined), 0, messages)
            if parsed < buffered:
                # Still inside a cut header (maybe a later one), so all of data is in joined.
                del header_buffer[:parsed]
                header_buffer += data
                self._own_partial_messages()
                return messages
            header_buffer.clear()
            position = parsed - buffered
        view = memoryview(data)
        if self._cut_chunk_left and position < size:
            position = self._continue_cut_chunk(view, position, messages)
        if not self._cut_chunk_left:
            position = self._parse(data, view, position, messages)
            if position < size:
                header_buffer += view[position:]
        self._own_partial_messages()
        return messages

    @property
    def buffered_bytes(self) -> int:
        """Memory held between feed() calls: a cut chunk header plus partial messages.

        A piece kept as a view counts as the whole object it views, because that is what it
        keeps alive. Bounded by _MAX_CHUNK_HEADER + (messages in progress) times
        max_message_size, at most max_chunk_streams of them.
        """
        total = len(self._header_buffer)
        viewed: set[int] = set()
        for stream in self._streams.values():
            for part in stream.parts or ():
                if isinstance(part, memoryview):
                    if id(part.obj) not in viewed:
                        viewed.add(id(part.obj))
                        total += len(part.obj)  # type: ignore[arg-type]
                else:
                    total += len(part)
        return total

    @property
    def bytes_in_progress(self) -> int:
        """The declared lengths of the messages being reassembled, plus a cut header: the most
        that can be buffered until one of them completes (what the server-wide budget counts)."""
        return self._in_progress + len(self._header_buffer)

    def _own_partial_messages(self) -> None:
        """Copy the pieces of unfinished messages out of the caller's data, into one bytearray.

        Pieces are views into the data passed to feed() while it runs (so a message arriving
        whole is copied once, by the final join). Keeping those views across calls would keep
        every feed()'s whole data alive for one small piece of it, and keeping one object per
        chunk would cost ~40 bytes of overhead for every 1-byte chunk: either would let memory
        grow far past max_message_size per message.
        """
        for stream in self._streams.values():
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

    def _continue_cut_chunk(
        self, view: memoryview, position: int, messages: list[MessageTuple]
    ) -> int:
        """Take the rest of the chunk payload the previous data cut; return where it ends."""
        take = min(self._cut_chunk_left, len(view) - position)
        self._cut_chunk_left -= take
        csid = self._cut_chunk_stream_id
        stream = self._streams[csid]
        parts = stream.parts
        if parts is not None:  # None if abort() discarded the message meanwhile
            parts.append(view[position : position + take])
            stream.remaining -= take
            if not stream.remaining:
                stream.parts = None
                self._in_progress -= stream.length
                payload = b"".join(parts)
                type_id = stream.type_id
                messages.append((csid, type_id, stream.stream_id, stream.timestamp, payload))
                if type_id <= _ABORT:
                    self._control(type_id, payload)
        return position + take

    def _parse(
        self,
        buffer: bytes,
        view: memoryview,
        position: int,
        messages: list[MessageTuple],
    ) -> int:
        """Parse chunks from position on; return where parsing ended.

        That is the end of the data, or the start of a chunk header the data cuts. A chunk
        payload the data cuts is taken as far as it goes and recorded for _continue_cut_chunk.
        """
        end = len(buffer)
        get_stream = self._streams.get
        chunk_size = self._chunk_size
        max_message_size = self.max_message_size
        max_command_size = self.max_command_size
        append_message = messages.append
        unpack_u32 = _U32.unpack_from
        unpack_2u32 = _TWO_U32.unpack_from

        while position < end:
            first = buffer[position]
            csid = first & 0x3F
            header_end = position + 1
            if csid < 2:
                if csid == 0:
                    if header_end + 1 > end:
                        break
                    csid = buffer[header_end] + 64
                    header_end += 1
                else:
                    if header_end + 2 > end:
                        break
                    csid = buffer[header_end] + (buffer[header_end + 1] << 8) + 64
                    header_end += 2

            stream = get_stream(csid)

            if first >= 0xC0 and stream is not None and stream.remaining:
                # A type-3 chunk continuing a message (most chunks of audio and video).
                if stream.extended:
                    skip = _repeated_extended_timestamp(buffer, header_end, end, stream)
                    if skip < 0:
                        break
                    header_end += skip
                payload_start = header_end
                remaining = stream.remaining
                parts = stream.parts
            else:
                fmt = first >> 6
                if stream is None:
                    if fmt != 0:
                        raise ProtocolError(
                            f"chunk stream {csid}: type-{fmt} header before any type-0 header"
                        )
                    if len(self._streams) >= self.max_chunk_streams:
                        names = self._limit_names
                        raise LimitExceeded(
                            f"chunk stream {csid} would be chunk stream number "
                            f"{len(self._streams) + 1}, exceeding"
                            f" {names.chunk_streams}={self.max_chunk_streams}{names.when}"
                        )
                elif stream.remaining:
                    raise ProtocolError(
                        f"chunk stream {csid}: type-{fmt} header while a message still has "
                        f"{stream.remaining} of {stream.length} bytes to come"
                    )

                # Parse the header into locals; state changes only once it is all present.
                # Fields are unpacked from header_end - 1 (the last basic header byte, masked
                # off) so that the 3-byte fields come out of one 4-byte big-endian read.
                if fmt <= 1:
                    # Types 0 and 1 share timestamp, length and type id; 0 adds the stream id.
                    payload_start = header_end + (11 if fmt == 0 else 7)
                    if payload_start > end:
                        break
                    time_field, length = unpack_2u32(buffer, header_end - 1)
                    time_field &= 0xFFFFFF
                    type_id = length & 0xFF
                    length >>= 8
                    if fmt == 0:
                        stream_id = _U32_LE.unpack_from(buffer, header_end + 7)[0]
                elif fmt == 2:
                    payload_start = header_end + 3
                    if payload_start > end:
                        break
                    time_field = unpack_u32(buffer, header_end - 1)[0] & 0xFFFFFF
                    length = stream.length  # type: ignore[union-attr]
                    type_id = stream.type_id  # type: ignore[union-attr]
                else:
                    # A new message repeating the previous header; the delta is applied again.
                    assert stream is not None
                    payload_start = header_end
                    length = stream.length
                    type_id = stream.type_id
                    time_field = stream.delta
                    if stream.extended:
                        skip = _repeated_extended_timestamp(buffer, header_end, end, stream)
                        if skip < 0:
                            break
                        payload_start += skip
                if fmt == 3:
                    extended = stream.extended  # type: ignore[union-attr]
                else:
                    extended = time_field == EXTENDED_TIMESTAMP
                    if extended:
                        if payload_start + 4 > end:
                            break
                        time_field = unpack_u32(buffer, payload_start)[0]
                        payload_start += 4
                if length > max_command_size:
                    # Checked at the header, before any byte of the message is kept.
                    if length > max_message_size:
                        names = self._limit_names
                        raise LimitExceeded(
                            f"chunk stream {csid}: message of {length} bytes exceeds"
                            f" {names.message_size}={max_message_size}{names.when}"
                        )
                    if type_id != _AUDIO and type_id != _VIDEO:
                        raise LimitExceeded(
                            f"chunk stream {csid}: message of type {type_id} and {length} bytes"
                            f" exceeds max_command_size={max_command_size} (only audio and"
                            " video may be larger)"
                        )

                # The header is complete: commit it.
                if stream is None:
                    stream = self._streams[csid] = _InboundChunkStream(_basic_header(3, csid))
                if fmt == 0:
                    # Absolute, and allowed to go backwards (FFmpeg does on DTS reordering).
                    # The field also becomes the "delta" a following type-3 header reapplies,
                    # which is what FFmpeg's writer assumes.
                    stream.timestamp = time_field
                    stream.stream_id = stream_id  # only type 0 carries it
                else:
                    stream.timestamp = (stream.timestamp + time_field) & 0xFFFFFFFF
                stream.delta = time_field
                stream.length = length
                stream.type_id = type_id
                if extended != stream.extended or (
                    extended and time_field != stream.extended_value
                ):
                    stream.extended = extended
                    stream.extended_value = time_field if extended else 0
                    stream.extended_bytes = time_field.to_bytes(4, "big") if extended else b""
                    stream.continuation = _basic_header(3, csid) + stream.extended_bytes
                remaining = length
                parts = None
                if length > chunk_size or payload_start + length > end:
                    # It will be reassembled from pieces: it counts against max_buffered until
                    # it is complete.
                    in_progress = self._in_progress + length
                    if in_progress > self.max_buffered:
                        names = self._limit_names
                        raise LimitExceeded(
                            f"chunk stream {csid}: a message of {length} bytes would make"
                            f" {in_progress} bytes of messages in progress, exceeding"
                            f" {names.buffered}={self.max_buffered}{names.when}"
                        )
                    self._in_progress = in_progress

            size = remaining if remaining < chunk_size else chunk_size
            payload_end = payload_start + size
            if payload_end > end:
                # The data ends inside this chunk's payload: keep what has arrived, and let
                # _continue_cut_chunk take the rest from the next data.
                piece = view[payload_start:end]
                if parts is None:
                    stream.parts = [piece]
                else:
                    parts.append(piece)
                stream.remaining = remaining - (end - payload_start)
                self._cut_chunk_stream_id = csid
                self._cut_chunk_left = payload_end - end
                return end
            position = payload_end
            remaining -= size
            if parts is None and not remaining:
                payload = buffer[payload_start:payload_end]
            else:
                if parts is None:
                    parts = [view[payload_start:payload_end]]
                else:
                    parts.append(view[payload_start:payload_end])
                if remaining:
                    # The continuation chunks of a message nearly always follow at once
                    # (writers interleave chunk streams between messages, not within them):
                    # take them here, checking only that each starts with this stream's type-3
                    # header. Anything else (another chunk stream's chunk, a writer that does
                    # not repeat the extended timestamp, the end of the data) is left to the
                    # loop above.
                    continuation = stream.continuation
                    header_size = len(continuation)
                    # Its first byte is compared on its own: an index costs a third of a
                    # startswith() call, which only longer headers need.
                    lead = continuation[0]
                    while (
                        position < end
                        and buffer[position] == lead
                        and (header_size == 1 or buffer.startswith(continuation, position))
                    ):
                        payload_start = position + header_size
                        size = remaining if remaining < chunk_size else chunk_size
                        payload_end = payload_start + size
                        if payload_end > end:
                            break
                        parts.append(view[payload_start:payload_end])
                        position = payload_end
                        remaining -= size
                        if not remaining:
                            break
                    if remaining:
                        stream.parts = parts
                        stream.remaining = remaining
                        continue
                stream.parts = None
                stream.remaining = 0
                self._in_progress -= stream.length
                payload = b"".join(parts)
            type_id = stream.type_id
            append_message((csid, type_id, stream.stream_id, stream.timestamp, payload))
            if type_id <= _ABORT:
                self._control(type_id, payload)
                chunk_size = self._chunk_size

        return position

    def _control(self, type_id: int, payload: bytes) -> None:
        """Apply a completed Set Chunk Size or Abort message."""
        # Applied whatever the message stream id: the peer's writer has switched either way.
        if type_id == _SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise ProtocolError(f"Set Chunk Size message has {len(payload)} bytes, expected 4")
            self.set_chunk_size(int.from_bytes(payload[:4], "big"))
        elif type_id == _ABORT:
            if len(payload) < 4:
                raise ProtocolError(f"Abort message has {len(payload)} bytes, expected 4")
            self.abort(int.from_bytes(payload[:4], "big"))


def _repeated_extended_timestamp(
    buffer: bytes | bytearray, offset: int, end: int, stream: _InboundChunkStream
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


@dataclass(slots=True)
class _OutboundChunkStream:
    timestamp: int
    delta: int
    length: int
    type_id: int
    stream_id: int
    extended: bool
    extended_value: int


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    rest = csid - 64
    return bytes(((fmt << 6) | 1, rest & 0xFF, rest >> 8))


class ChunkWriter:
    """Splits messages into chunks, compressing headers as far as the previous one allows.

    Header choice per message on a chunk stream id: type 0 the first time, when the message
    stream id changes or when time goes backwards; type 1 when length or type id change; type 2
    when only the delta changes; type 3 when everything, delta included, repeats.
    """

    __slots__ = ("_streams", "chunk_size", "repeat_extended_timestamps")

    def __init__(
        self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, repeat_extended_timestamps: bool = True
    ) -> None:
        # Change chunk_size only after writing the Set Chunk Size message that announces it.
        self.chunk_size = chunk_size
        # True matches FFmpeg and OBS (and the spec); False imitates writers that omit them.
        self.repeat_extended_timestamps = repeat_extended_timestamps
        self._streams: dict[int, _OutboundChunkStream] = {}

    def write(self, message: Message) -> bytes:
        csid = message.chunk_stream_id
        if not MIN_CHUNK_STREAM_ID <= csid <= MAX_CHUNK_STREAM_ID:
            raise ValueError(f"chunk stream id {csid} is outside 2..{MAX_CHUNK_STREAM_ID}")
        payload = message.payload
        length = len(payload)
        if length > MAX_MESSAGE_LENGTH:
            raise ValueError(f"message of {length} bytes does not fit the 3-byte length field")
        if not 0 <= message.type_id <= 0xFF:
            raise ValueError(f"message type id {message.type_id} is outside 0..255")
        if not 0 <= message.stream_id <= 0xFFFFFFFF:
            raise ValueError(f"message stream id {message.stream_id} is outside 32 bits")
        timestamp = message.timestamp & 0xFFFFFFFF
        previous = self._streams.get(csid)

        if (
            previous is None
            or previous.stream_id != message.stream_id
            or timestamp < previous.timestamp
        ):
            fmt = 0
            time_field = timestamp
        else:
            time_field = timestamp - previous.timestamp
            if previous.length != length or previous.type_id != message.type_id:
                fmt = 1
            elif time_field != previous.delta:
                fmt = 2
            else:
                fmt = 3

        out = bytearray(_basic_header(fmt, csid))
        if fmt == 3:
            assert previous is not None
            extended = previous.extended
            extended_value = previous.extended_value
            if extended:
                out += extended_value.to_bytes(4, "big")
        else:
            extended = time_field >= EXTENDED_TIMESTAMP
            extended_value = time_field if extended else 0
            out += (EXTENDED_TIMESTAMP if extended else time_field).to_bytes(3, "big")
            if fmt <= 1:
                out += length.to_bytes(3, "big")
                out.append(message.type_id)
                if fmt == 0:
                    out += message.stream_id.to_bytes(4, "little")
            if extended:
                out += time_field.to_bytes(4, "big")

        chunk_size = self.chunk_size
        out += payload[:chunk_size]
        if length > chunk_size:
            continuation = _basic_header(3, csid)
            if extended and self.repeat_extended_timestamps:
                continuation += extended_value.to_bytes(4, "big")
            view = memoryview(payload)
            for offset in range(chunk_size, length, chunk_size):
                out += continuation
                out += view[offset : offset + chunk_size]

        self._streams[csid] = _OutboundChunkStream(
            timestamp=timestamp,
            delta=time_field,
            length=length,
            type_id=message.type_id,
            stream_id=message.stream_id,
            extended=extended,
            extended_value=extended_value,
        )
        return bytes(out)
