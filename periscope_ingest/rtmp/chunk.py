"""Reading RTMP chunks (RTMP 1.0, section 5.3): the byte stream after the handshake in, complete
messages out. The header formats are described in chunk_format; what is kept per chunk stream in
chunk_streams; limit errors in chunk_limits; writing in chunk_writer (ChunkWriter and Message are
importable from here too, where tests and tools take them).

Over 450 lines on purpose: ChunkReader._parse, about half of this module, is one long function.
It runs once per chunk, and a publisher at chunk size 128 sends about 3000 chunks per second of
video; its header parsing, limit checks and the inner loop over a message's continuation chunks
stay inline, with what it needs bound to locals. Measured: the whole connection costs about
0.24 µs per chunk (scripts/bench/rtmp_parse.py) and one Python call about 0.05 µs, so each
helper called per chunk would add about a fifth. Only rare paths (errors, cut headers, the
memory accounting at the end of a feed) leave it, and those live in the modules named above.
"""

from __future__ import annotations

import struct

from .chunk_format import (
    DEFAULT_CHUNK_SIZE,
    EXTENDED_TIMESTAMP,
    Message,
    MessageTuple,
    basic_header,
)
from .chunk_limits import (
    LimitNames,
    command_too_large,
    message_too_large,
    too_many_chunk_streams,
    too_much_in_progress,
)
from .chunk_streams import (
    InboundChunkStream,
    held_bytes,
    own_partial_messages,
    repeated_extended_timestamp,
)
from .chunk_writer import ChunkWriter
from .errors import LimitExceeded, ProtocolError

__all__ = ["ChunkReader", "ChunkWriter", "LimitNames", "Message", "MessageTuple"]


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

_DEFAULT_LIMIT_NAMES = LimitNames()


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
        limit_names: LimitNames = _DEFAULT_LIMIT_NAMES,
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
        self._streams: dict[int, InboundChunkStream] = {}
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
        limit_names: LimitNames = _DEFAULT_LIMIT_NAMES,
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
                own_partial_messages(self._streams)
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
        own_partial_messages(self._streams)
        return messages

    @property
    def buffered_bytes(self) -> int:
        """Memory held between feed() calls: a cut chunk header plus partial messages.

        A piece kept as a view counts as the whole object it views, because that is what it
        keeps alive. Bounded by _MAX_CHUNK_HEADER + (messages in progress) times
        max_message_size, at most max_chunk_streams of them.
        """
        return len(self._header_buffer) + held_bytes(self._streams)

    @property
    def bytes_in_progress(self) -> int:
        """The declared lengths of the messages being reassembled, plus a cut header: the most
        that can be buffered until one of them completes (what the server-wide budget counts)."""
        return self._in_progress + len(self._header_buffer)

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
                    skip = repeated_extended_timestamp(buffer, header_end, end, stream)
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
                        raise too_many_chunk_streams(
                            self._limit_names, csid, len(self._streams), self.max_chunk_streams
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
                        skip = repeated_extended_timestamp(buffer, header_end, end, stream)
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
                        raise message_too_large(self._limit_names, csid, length, max_message_size)
                    if type_id != _AUDIO and type_id != _VIDEO:
                        raise command_too_large(csid, type_id, length, max_command_size)

                # The header is complete: commit it.
                if stream is None:
                    stream = self._streams[csid] = InboundChunkStream(basic_header(3, csid))
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
                    stream.continuation = basic_header(3, csid) + stream.extended_bytes
                remaining = length
                parts = None
                if length > chunk_size or payload_start + length > end:
                    # It will be reassembled from pieces: it counts against max_buffered until
                    # it is complete.
                    in_progress = self._in_progress + length
                    if in_progress > self.max_buffered:
                        raise too_much_in_progress(
                            self._limit_names, csid, length, in_progress, self.max_buffered
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
