"""What both ends of an RTMP connection do alike: send, and answer the peer's protocol control.

ServerConnection (connection.py) and ClientConnection (client.py) each hold one ProtocolControl. It
owns the outgoing side (the ChunkWriter and the bytes queued for the caller to send) and the
protocol control a peer expects answered the same way by a server and a client: an
Acknowledgement each time a window's worth of bytes has arrived (once the peer announced a
Window Acknowledgement Size), and a Ping Response to every Ping Request.
"""

from __future__ import annotations

from . import messages as msg
from .chunk_format import Message
from .chunk_writer import ChunkWriter

__all__ = ["ProtocolControl"]


class ProtocolControl:
    __slots__ = ("_ack_window", "_bytes_at_last_ack", "bytes_received", "outgoing", "writer")

    def __init__(self) -> None:
        self.writer = ChunkWriter()
        self.outgoing = bytearray()
        # Every byte received, handshake included: what Acknowledgements count.
        self.bytes_received = 0
        self._ack_window: int | None = None  # set by the peer's Window Ack Size
        self._bytes_at_last_ack = 0

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        out = bytes(self.outgoing)
        self.outgoing.clear()
        return out

    # -- the peer's protocol control ---------------------------------------------------------

    def on_window_ack_size(self, payload: bytes) -> None:
        self._ack_window = msg.decode_uint32(payload, "Window Acknowledgement Size")

    def on_user_control(self, payload: bytes) -> None:
        """Answer a Ping Request; the other user control events need no answer."""
        event_type, event_data = msg.decode_user_control(payload)
        if event_type == msg.PING_REQUEST:
            timestamp = msg.decode_uint32(event_data, "Ping Request")
            self.send_control(
                msg.USER_CONTROL, msg.encode_user_control(msg.PING_RESPONSE, timestamp)
            )

    def maybe_acknowledge(self) -> None:
        """Send an Acknowledgement if a window's worth of bytes arrived since the last one.

        The spec asks for them; peers do not wait for them (OBS and FFmpeg never check), but
        some log their absence. Called once per receive_data(), after counting its bytes.
        """
        window = self._ack_window
        if window and self.bytes_received - self._bytes_at_last_ack >= window:
            self._bytes_at_last_ack = self.bytes_received
            self.send_control(msg.ACKNOWLEDGEMENT, msg.encode_acknowledgement(self.bytes_received))

    # -- sending -----------------------------------------------------------------------------

    def send_control(self, type_id: int, payload: bytes) -> None:
        self.outgoing += self.writer.write(
            Message(msg.CSID_PROTOCOL_CONTROL, type_id, 0, 0, payload)
        )

    def send_command(self, stream_id: int, payload: bytes) -> None:
        # Replies to stream-level commands must be on the peer's message stream: GStreamer's
        # rtmp2sink waits for onStatus there and hangs if it arrives on stream 0.
        csid = msg.CSID_COMMAND if stream_id == 0 else msg.CSID_STREAM_COMMAND
        self.outgoing += self.writer.write(Message(csid, msg.COMMAND_AMF0, stream_id, 0, payload))
