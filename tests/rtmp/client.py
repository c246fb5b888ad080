"""A scripted RTMP client for tests: builds the bytes real publishers send, decodes replies."""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.rtmp import amf0
from periscope_ingest.rtmp import messages as msg
from periscope_ingest.rtmp.chunk import ChunkReader, ChunkWriter, Message
from periscope_ingest.rtmp.connection import ServerConnection

C1 = bytes(range(256)) * 6  # 1536 bytes, recognisable in S2
C0_C1 = b"\x03" + C1
C2 = bytes(1536)
SERVER_HANDSHAKE_SIZE = 1 + 1536 + 1536


@dataclass
class Reply:
    """One message the server sent, with its command decoded when it is one."""

    message: Message
    values: list | None = None  # AMF0 values of a command message

    @property
    def name(self) -> str | None:
        return self.values[0] if self.values else None


class ScriptedClient:
    """Produces client byte streams with a ChunkWriter, the way the named encoder would."""

    def __init__(self, chunk_size: int = 128) -> None:
        self.writer = ChunkWriter(chunk_size)

    def set_chunk_size(self, size: int) -> bytes:
        out = self.control(msg.SET_CHUNK_SIZE, msg.encode_set_chunk_size(size))
        self.writer.chunk_size = size
        return out

    def control(self, type_id: int, payload: bytes) -> bytes:
        return self.writer.write(Message(2, type_id, 0, 0, payload))

    def command(
        self,
        name: str,
        transaction_id: float,
        command_object: object,
        *args: object,
        stream_id: int = 0,
        csid: int = 3,
    ) -> bytes:
        payload = msg.command(name, transaction_id, command_object, *args)
        return self.writer.write(Message(csid, msg.COMMAND_AMF0, stream_id, 0, payload))

    def data(self, *values: object, stream_id: int, csid: int = 4, timestamp: int = 0) -> bytes:
        payload = amf0.encode(*values)
        return self.writer.write(Message(csid, msg.DATA_AMF0, stream_id, timestamp, payload))

    def media(
        self, type_id: int, payload: bytes, *, stream_id: int, timestamp: int, csid: int = 4
    ) -> bytes:
        return self.writer.write(Message(csid, type_id, stream_id, timestamp, payload))


class ServerOutput:
    """Decodes what a ServerConnection sends, following its Set Chunk Size like a client would."""

    def __init__(self) -> None:
        self.reader = ChunkReader()
        self.handshake = b""

    def feed(self, data: bytes) -> list[Reply]:
        missing = SERVER_HANDSHAKE_SIZE - len(self.handshake)
        if missing > 0:
            self.handshake += data[:missing]
            data = data[missing:]
        replies = []
        for message in self.reader.feed(data):
            values = None
            if message.type_id == msg.COMMAND_AMF0:
                values = amf0.decode_all(message.payload)
            replies.append(Reply(message, values))
        return replies


def exchange(
    connection: ServerConnection, output: ServerOutput, data: bytes
) -> tuple[list, list[Reply]]:
    """Feed the connection, collect its events and decode its replies."""
    events = connection.receive_data(data)
    return events, output.feed(connection.data_to_send())


def connected(
    app: str = "live", chunk_size: int = 128, **extra: object
) -> tuple[ServerConnection, ServerOutput, ScriptedClient]:
    """A connection that finished the handshake and a plain connect."""
    connection = ServerConnection()
    output = ServerOutput()
    client = ScriptedClient(chunk_size)
    properties = {"app": app, "tcUrl": f"rtmp://localhost/{app}", **extra}
    exchange(connection, output, C0_C1 + C2 + client.command("connect", 1, properties))
    return connection, output, client
