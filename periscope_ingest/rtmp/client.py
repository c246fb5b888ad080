"""Sans-IO RTMP client that publishes: what restreaming uses to forward a live broadcast.

The mirror image of ServerConnection, and as blind to sockets and clocks: the caller writes
data_to_send() after every call, passes whatever it read to receive_data(), and acts on the
returned events. The conversation is the one OBS and FFmpeg hold with a server:

    C0+C1 ->                         <- S0+S1+S2
    C2, Set Chunk Size, connect ->   <- Window Ack Size, Set Peer Bandwidth, ..., _result
    releaseStream, FCPublish, createStream ->                <- _result(stream id)
    publish(name, "live") on that stream ->         <- onStatus NetStream.Publish.Start
    audio, video and data messages ->

C2 and connect go out only once S0, S1 and S2 are all in: some servers read C2 before they
parse anything else. Media is refused (ValueError) until PublishStarted was returned.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import amf0
from . import messages as msg
from .chunk import ChunkReader
from .chunk_format import Message
from .control import ProtocolControl
from .errors import ProtocolError
from .handshake import HANDSHAKE_BLOCK_SIZE, RTMP_VERSION

__all__ = [
    "ClientConnection",
    "InvalidTargetUrl",
    "PublishRefused",
    "PublishStarted",
    "ServerStatus",
    "TargetAddress",
    "parse_target_url",
]

# The chunk streams FFmpeg publishes on: audio and video apart, so each keeps its own
# compressed headers; metadata beside the stream's commands.
CSID_AUDIO = 4
CSID_VIDEO = 6
FLASH_VERSION = "FMLE/3.0 (compatible; periscope-ingest)"
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}

# Transaction ids of the commands whose replies matter.
_CONNECT = 1
_RELEASE_STREAM = 2
_FC_PUBLISH = 3
_CREATE_STREAM = 4


# ----------------------------------------------------------------------------------- URLs


class InvalidTargetUrl(ValueError):
    """A restream URL this client cannot publish to; the message says why."""


@dataclass(frozen=True, slots=True)
class TargetAddress:
    """Where to publish, as nginx-rtmp's push reads a URL: rtmp[s]://host[:port]/app/name.

    app is the first path segment; the stream name (often a secret key) is everything after
    it, query included.
    """

    tls: bool
    host: str
    port: int
    app: str
    stream_name: str

    @property
    def tc_url(self) -> str:
        scheme = "rtmps" if self.tls else "rtmp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.app}"

    @property
    def masked(self) -> str:
        """The URL without its stream name: safe for logs, metrics and public status."""
        return f"{self.tc_url}/***"


def parse_target_url(url: str) -> TargetAddress:
    if len(url) > 2048:
        raise InvalidTargetUrl("URL longer than 2048 characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidTargetUrl("URL contains spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidTargetUrl("only rtmp:// and rtmps:// URLs can be restreamed to")
    if parts.username is not None or parts.password is not None:
        raise InvalidTargetUrl("user:password@ in the URL is not supported")
    host = parts.hostname
    if not host:
        raise InvalidTargetUrl("the URL has no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise InvalidTargetUrl("the port is not a number from 1 to 65535") from None
    path = parts.path.lstrip("/")
    app, _, name = path.partition("/")
    if parts.query:
        name = f"{name}?{parts.query}"
    if not app or not name:
        raise InvalidTargetUrl(
            "the URL needs an application and a stream name: rtmp://host/app/stream-key"
        )
    return TargetAddress(scheme == "rtmps", host, port, app, name)


# --------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PublishStarted:
    """The server answered NetStream.Publish.Start: media may be sent."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class PublishRefused:
    """connect, createStream or publish failed (an _error, or an onStatus of level error)."""

    code: str
    description: str


@dataclass(frozen=True, slots=True)
class ServerStatus:
    """Any other onStatus, for logging (e.g. NetStream.Unpublish.Success from the server)."""

    level: str
    code: str
    description: str


ClientEvent = PublishStarted | PublishRefused | ServerStatus


class ClientState(enum.Enum):
    HANDSHAKE = enum.auto()  # C0+C1 sent, waiting for S0+S1+S2
    CONNECTING = enum.auto()  # connect sent
    CREATING_STREAM = enum.auto()  # releaseStream, FCPublish, createStream sent
    PUBLISH_REQUESTED = enum.auto()  # publish sent
    PUBLISHING = enum.auto()
    REFUSED = enum.auto()


# ----------------------------------------------------------------------------- connection


class ClientConnection:
    def __init__(
        self,
        app: str,
        stream_name: str,
        tc_url: str,
        *,
        chunk_size: int = 4096,
        max_message_size: int = 1024 * 1024,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._app = app
        self._stream_name = stream_name
        self._tc_url = tc_url
        self._chunk_size = chunk_size
        # The server only sends small control messages and commands.
        self._reader = ChunkReader(max_message_size=max_message_size)
        # Sending, acknowledgements and pings: the same as the server's (control.py).
        self._control = ProtocolControl()
        self._handshake = bytearray()
        self.stream_id = 0
        self.state = ClientState.HANDSHAKE
        c1 = bytes(8) + random_bytes(HANDSHAKE_BLOCK_SIZE - 8)
        if len(c1) != HANDSHAKE_BLOCK_SIZE:
            raise ValueError("random_bytes returned the wrong number of bytes")
        self._control.outgoing += bytes((RTMP_VERSION,)) + c1

    @property
    def publishing(self) -> bool:
        return self.state is ClientState.PUBLISHING

    def data_to_send(self) -> bytes:
        return self._control.data_to_send()

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[ClientEvent]:
        """Process bytes from the server; raises ProtocolError when they are not RTMP."""
        control = self._control
        control.bytes_received += len(data)
        events: list[ClientEvent] = []
        if self.state is ClientState.HANDSHAKE:
            data = self._receive_handshake(data)
            if self.state is ClientState.HANDSHAKE:
                return events
        if data:
            for message in self._reader.feed(data):
                self._handle(message, events)
        control.maybe_acknowledge()
        return events

    def _receive_handshake(self, data: bytes) -> bytes:
        buffer = self._handshake
        buffer += data
        if buffer and buffer[0] != RTMP_VERSION:
            raise ProtocolError(
                f"server answered the handshake with version {buffer[0]}, expected 3"
            )
        needed = 1 + 2 * HANDSHAKE_BLOCK_SIZE
        if len(buffer) < needed:
            return b""
        s1 = bytes(buffer[1 : 1 + HANDSHAKE_BLOCK_SIZE])
        rest = bytes(buffer[needed:])
        buffer.clear()
        self._control.outgoing += s1  # C2 echoes S1; S2 (our C1 echoed) is not checked, as OBS does
        self._control.send_control(msg.SET_CHUNK_SIZE, msg.encode_set_chunk_size(self._chunk_size))
        self._control.writer.chunk_size = self._chunk_size
        self._control.send_command(
            0,
            msg.command(
                "connect",
                _CONNECT,
                {
                    "app": self._app,
                    "type": "nonprivate",
                    "flashVer": FLASH_VERSION,
                    "tcUrl": self._tc_url,
                },
            ),
        )
        self.state = ClientState.CONNECTING
        return rest

    def _handle(self, message: Message, events: list[ClientEvent]) -> None:
        type_id = message.type_id
        if type_id == msg.COMMAND_AMF0 or type_id == msg.COMMAND_AMF3:
            self._handle_command(msg.decode_command(message.payload, type_id), events)
        elif type_id == msg.WINDOW_ACK_SIZE:
            self._control.on_window_ack_size(message.payload)
        elif type_id == msg.USER_CONTROL:
            self._control.on_user_control(message.payload)
        # Everything else is ignored: Set Chunk Size and Abort are applied by the reader;
        # acknowledgements, peer bandwidth, stream begin and data concern no publisher.

    def _handle_command(self, cmd: msg.Command, events: list[ClientEvent]) -> None:
        name = cmd.name
        if name == "_result":
            if cmd.transaction_id == _CONNECT and self.state is ClientState.CONNECTING:
                self._control.send_command(
                    0, msg.command("releaseStream", _RELEASE_STREAM, None, self._stream_name)
                )
                self._control.send_command(
                    0, msg.command("FCPublish", _FC_PUBLISH, None, self._stream_name)
                )
                self._control.send_command(0, msg.command("createStream", _CREATE_STREAM, None))
                self.state = ClientState.CREATING_STREAM
            elif cmd.transaction_id == _CREATE_STREAM and self.state is ClientState.CREATING_STREAM:
                stream_id = cmd.args[0] if cmd.args else None
                if not isinstance(stream_id, float) or not 1 <= stream_id <= 0xFFFFFFFF:
                    raise ProtocolError(
                        f"createStream _result without a stream id: {cmd.args!r:.60}"
                    )
                self.stream_id = int(stream_id)
                self._control.send_command(
                    self.stream_id, msg.command("publish", 0, None, self._stream_name, "live")
                )
                self.state = ClientState.PUBLISH_REQUESTED
        elif name == "_error":
            # FFmpeg treats _error to releaseStream and FCPublish as warnings; so do we.
            if cmd.transaction_id in (_CONNECT, _CREATE_STREAM):
                code, description = _status_of(cmd)
                self._refused(code or "NetConnection.Call.Failed", description, events)
        elif name == "onStatus":
            code, description = _status_of(cmd)
            info = cmd.args[0] if cmd.args and isinstance(cmd.args[0], dict) else {}
            level = info.get("level") if isinstance(info.get("level"), str) else ""
            if level == "error" and self.state is not ClientState.PUBLISHING:
                self._refused(code, description, events)
            elif code == "NetStream.Publish.Start" and self.state is ClientState.PUBLISH_REQUESTED:
                self.state = ClientState.PUBLISHING
                events.append(PublishStarted(self.stream_id))
            else:
                events.append(ServerStatus(level, code, description))
        # onBWDone, onFCPublish, _checkbw and the like need no answer from a publisher.

    def _refused(self, code: str, description: str, events: list[ClientEvent]) -> None:
        self.state = ClientState.REFUSED
        events.append(PublishRefused(code, description))

    # -- sending -----------------------------------------------------------------------------

    def send_audio(self, timestamp: int, payload: bytes) -> None:
        self._send_media(CSID_AUDIO, msg.AUDIO, timestamp, payload)

    def send_video(self, timestamp: int, payload: bytes) -> None:
        self._send_media(CSID_VIDEO, msg.VIDEO, timestamp, payload)

    def send_metadata(self, timestamp: int, values: dict) -> None:
        """onMetaData, the way publishers send it (through @setDataFrame)."""
        body = amf0.encode("@setDataFrame", "onMetaData", amf0.EcmaArray(values))
        self._send_media(msg.CSID_STREAM_COMMAND, msg.DATA_AMF0, timestamp, body)

    def unpublish(self) -> None:
        """Say goodbye the way OBS does before closing: FCUnpublish, then deleteStream."""
        if self.state is not ClientState.PUBLISHING:
            return
        self._control.send_command(0, msg.command("FCUnpublish", 0, None, self._stream_name))
        self._control.send_command(0, msg.command("deleteStream", 0, None, float(self.stream_id)))
        self.state = ClientState.REFUSED  # nothing more may be sent

    def _send_media(self, csid: int, type_id: int, timestamp: int, payload: bytes) -> None:
        if self.state is not ClientState.PUBLISHING:
            raise ValueError("media before NetStream.Publish.Start")
        control = self._control
        control.outgoing += control.writer.write(
            Message(csid, type_id, self.stream_id, timestamp, payload)
        )


def _status_of(cmd: msg.Command) -> tuple[str, str]:
    """(code, description) from the info object of an onStatus or _error."""
    info = cmd.args[0] if cmd.args and isinstance(cmd.args[0], dict) else {}
    code = info.get("code")
    description = info.get("description")
    return (
        code if isinstance(code, str) else "",
        description[:200] if isinstance(description, str) else "",
    )
