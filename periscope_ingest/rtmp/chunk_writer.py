"""Writing RTMP messages as chunks (RTMP 1.0, section 5.3.1), header compression included."""

from __future__ import annotations

from dataclasses import dataclass

from .chunk_format import (
    DEFAULT_CHUNK_SIZE,
    EXTENDED_TIMESTAMP,
    MAX_CHUNK_STREAM_ID,
    MAX_MESSAGE_LENGTH,
    MIN_CHUNK_STREAM_ID,
    Message,
    basic_header,
)

__all__ = ["ChunkWriter"]


@dataclass(slots=True)
class _OutboundChunkStream:
    timestamp: int
    delta: int
    length: int
    type_id: int
    stream_id: int
    extended: bool
    extended_value: int


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

        out = bytearray(basic_header(fmt, csid))
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
            continuation = basic_header(3, csid)
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
