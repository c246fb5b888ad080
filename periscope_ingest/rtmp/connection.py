"""Sans-IO RTMP server connection: bytes in, events out, replies queued for the caller to send.

Modelled on h11: ServerConnection never touches a socket or a clock. The caller passes whatever
it read to receive_data(), acts on the returned events, and writes data_to_send() to the socket
after every call (receive_data and the accept/reject/stop methods all queue bytes).

What it answers on its own follows what OBS, FFmpeg and GStreamer wait for (see
/work/shared/NOTES-rtmp-clients.md): every command that carries a transaction id gets a reply
promptly, stream-level replies go on the message stream id the client used, and publishing is
only confirmed once the application calls accept_publish().
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import messages as msg
from .amf0 import UNDEFINED
from .chunk import ChunkReader, ChunkWriter, LimitNames, Message
from .errors import ProtocolError, shown
from .handshake import ServerHandshake

__all__ = [
    "AudioReceived",
    "Connected",
    "Event",
    "IgnoredMessage",
    "MetadataReceived",
    "PublishRequested",
    "PublishStopped",
    "RtmpLimits",
    "ServerConnection",
    "VideoReceived",
]

FMS_VERSION = "FMS/3,0,1,123"
# Bit flags FMS reports; 31 is the value FMS 3 sends and every publisher accepts.
FMS_CAPABILITIES = 31.0
# How many distinct unknown message stream ids sending media are reported (and remembered).
_MAX_UNKNOWN_MEDIA_STREAMS_REPORTED = 16

# Errors name the setting (config.RtmpSettings) that bounds what the client sent.
_LIMITS_BEFORE_PUBLISH = LimitNames(
    message_size="max_command_size",
    chunk_streams="max_chunk_streams_before_publish",
    buffered="max_chunk_streams_before_publish x max_command_size",
    when=" (the limit before a publish is accepted)",
)
_LIMITS_PUBLISHING = LimitNames(
    message_size="max_message_size",
    chunk_streams="max_chunk_streams",
    buffered="max_buffered_per_connection",
)


@dataclass(frozen=True, slots=True)
class RtmpLimits:
    """What one connection may make us hold. The server builds these from its settings
    (config.RtmpSettings, where each is described); the defaults here equal those settings'
    defaults, for tests and tools that build a connection by hand."""

    max_chunk_size: int = 65536  # largest Set Chunk Size we accept from a client
    max_message_size: int = 8 * 1024 * 1024  # audio and video, once a publish is accepted
    max_chunk_streams: int = 32  # once a publish is accepted
    # Every other message, and every message before a publish is accepted.
    max_command_size: int = 65536
    max_chunk_streams_before_publish: int = 8
    # Messages in progress on all chunk streams once publishing (before: the chunk streams
    # allowed times max_command_size).
    max_buffered_bytes: int = 16 * 1024 * 1024
    out_chunk_size: int = 4096  # what we announce and send with
    window_ack_size: int = 5_000_000  # announced to the client (Window Ack Size + Peer Bandwidth)
    max_streams: int = 8  # createStream calls (and publish targets) alive on one connection


# ------------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Connected:
    """The client's connect was answered with NetConnection.Connect.Success."""

    app: str  # without any "?query"
    tc_url: str | None
    properties: dict  # the client's connect command object, as sent


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with accept_publish() or reject_publish()."""

    stream_id: int
    app: str
    name: str  # the stream name (usually the stream key) without "?query"
    # What followed "?" in the connect's app and in the name, joined with "&" in that order:
    # publish authorisation tokens come in either (rtmp://host/live?t=1/key, .../live/key?t=1).
    query: str
    publish_type: str  # "live", "record" or "append"


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    stream_id: int
    timestamp: int
    values: dict  # onMetaData properties (an amf0.EcmaArray or plain dict)


# The media events, one per audio or video message, are not frozen: a frozen dataclass's
# __init__ sets every field through object.__setattr__, which makes building one three times as
# slow (0.4 µs instead of 0.13). Treat them as read-only all the same.
@dataclass(slots=True)
class AudioReceived:
    stream_id: int
    timestamp: int  # ms, modulo 2**32, as sent by the client
    payload: bytes  # FLV audio tag body


@dataclass(slots=True)
class VideoReceived:
    stream_id: int
    timestamp: int  # ms (DTS), modulo 2**32, as sent by the client
    payload: bytes  # FLV video tag body


@dataclass(frozen=True, slots=True)
class PublishStopped:
    """The client ended a publish it had requested.

    reason is the command that ended it: "FCUnpublish", "deleteStream" or "closeStream".
    """

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class IgnoredMessage:
    """Something valid that this server does not act on; for logging only."""

    description: str


Event = (
    Connected
    | PublishRequested
    | MetadataReceived
    | AudioReceived
    | VideoReceived
    | PublishStopped
    | IgnoredMessage
)


# ------------------------------------------------------------------------------ connection


_MEDIA_EVENTS: dict[int, type[AudioReceived] | type[VideoReceived]] = {
    msg.AUDIO: AudioReceived,
    msg.VIDEO: VideoReceived,
}


class _PublishState(enum.Enum):
    REQUESTED = enum.auto()  # PublishRequested emitted, application has not answered
    PUBLISHING = enum.auto()  # accepted: media is delivered
    STOPPED = enum.auto()  # rejected, stopped by either side; a new publish may follow


@dataclass(slots=True)
class _MessageStream:
    """A message stream id created by createStream (or assumed by a lenient publish)."""

    publish_state: _PublishState | None = None
    name: str = ""
    media_drop_reported: bool = False


class ServerConnection:
    def __init__(self, limits: RtmpLimits = RtmpLimits()) -> None:
        self._limits = limits
        self._handshake = ServerHandshake()
        # Until a publish is accepted the client has shown no key: small messages only.
        self._reader = ChunkReader(
            max_chunk_size=limits.max_chunk_size,
            max_message_size=limits.max_command_size,
            max_chunk_streams=limits.max_chunk_streams_before_publish,
            max_command_size=limits.max_command_size,
            max_buffered=limits.max_chunk_streams_before_publish * limits.max_command_size,
            limit_names=_LIMITS_BEFORE_PUBLISH,
        )
        self._writer = ChunkWriter()
        self._outgoing = bytearray()
        self._failure: ProtocolError | None = None
        self._app: str | None = None
        self._app_query = ""  # what followed "?" in the connect's app
        self._streams: dict[int, _MessageStream] = {}
        self._next_stream_id = 1
        self._bytes_received = 0
        self._ack_window: int | None = None  # set by the client's Window Ack Size
        self._bytes_at_last_ack = 0
        # Message streams that sent media we dropped, reported once each.
        self._unknown_media_streams: set[int] = set()
        # Streams whose publish the client ended (FCUnpublish, deleteStream, closeStream) while
        # it awaited the application's answer; that answer is then dropped instead of raising
        # or being applied to a later publish, since the application could not have known.
        self._abandoned_requests: set[int] = set()

    # ----------------------------------------------------------------------------- public

    @property
    def app(self) -> str | None:
        """The application name from connect (without query), or None before connect."""
        return self._app

    @property
    def handshake_complete(self) -> bool:
        return self._handshake.complete

    @property
    def bytes_in_progress(self) -> int:
        """The most that can be buffered until a message in progress completes (see
        ChunkReader.bytes_in_progress); what a server-wide budget should count."""
        return self._handshake.buffered_bytes + self._reader.bytes_in_progress

    @property
    def buffered_bytes(self) -> int:
        """Received bytes held for later: partial handshake, chunk and messages.

        Never more than 1537 + 1536 during the handshake; afterwards at most one chunk (header
        plus max_chunk_size) plus max_message_size for each of at most max_chunk_streams
        messages in progress. Excludes data_to_send(), which the caller drains.
        """
        return self._handshake.buffered_bytes + self._reader.buffered_bytes

    def receive_data(self, data: bytes) -> list[Event]:
        """Process bytes from the client; return the events they complete.

        Raises ProtocolError (or its subclass LimitExceeded) on invalid input; the connection is
        unusable afterwards and every later call raises too. Send data_to_send() even then: it
        may hold replies to messages processed before the error.
        """
        if self._failure is not None:
            raise ProtocolError(f"connection already failed: {self._failure}")
        try:
            return self._receive(data)
        except ProtocolError as exc:
            self._failure = exc
            raise

    def data_to_send(self) -> bytes:
        """Everything queued for the client since the last call."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def accept_publish(self, stream_id: int) -> None:
        """Confirm a PublishRequested: Stream Begin, then onStatus NetStream.Publish.Start.

        Media on the stream is delivered from now on. Calling it after the client already gave
        up (PublishStopped was emitted) does nothing, so a slow decision cannot crash the caller.
        """
        stream = self._streams.get(stream_id)
        if stream_id in self._abandoned_requests:
            self._abandoned_requests.discard(stream_id)
            return
        if stream is not None and stream.publish_state is _PublishState.STOPPED:
            return
        if stream is None or stream.publish_state is not _PublishState.REQUESTED:
            raise ValueError(f"message stream {stream_id} has no publish request to accept")
        stream.publish_state = _PublishState.PUBLISHING
        stream.media_drop_reported = False
        limits = self._limits
        self._reader.set_limits(
            limits.max_message_size,
            limits.max_chunk_streams,
            limits.max_command_size,
            limits.max_buffered_bytes,
            _LIMITS_PUBLISHING,
        )
        self._send_control(msg.USER_CONTROL, msg.encode_user_control(msg.STREAM_BEGIN, stream_id))
        self._send_on_status(stream_id, "status", "NetStream.Publish.Start", "Started publishing.")

    def reject_publish(
        self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName"
    ) -> None:
        """Refuse a publish with onStatus level "error"; the caller should then close."""
        if stream_id in self._abandoned_requests:
            self._abandoned_requests.discard(stream_id)
            return
        stream = self._streams.get(stream_id)
        if stream is not None and stream.publish_state is not None:
            stream.publish_state = _PublishState.STOPPED
        self._send_on_status(stream_id, "error", code, description)

    def stop_publish(self, stream_id: int, description: str = "Stopped publishing.") -> None:
        """End a publish from the server side with onStatus NetStream.Unpublish.Success."""
        if stream_id in self._abandoned_requests:
            self._abandoned_requests.discard(stream_id)
            return
        stream = self._streams.get(stream_id)
        if stream is not None and stream.publish_state is not None:
            stream.publish_state = _PublishState.STOPPED
        self._send_on_status(stream_id, "status", "NetStream.Unpublish.Success", description)

    # ------------------------------------------------------------------------ receiving

    def _receive(self, data: bytes) -> list[Event]:
        self._bytes_received += len(data)
        if not self._handshake.complete:
            data = self._handshake.receive_data(data)
            self._outgoing += self._handshake.data_to_send()
            if not self._handshake.complete:
                return []
        events: list[Event] = []
        if data:
            # Fast path for media on a publishing stream, the bulk of the traffic; everything
            # else (and media that is dropped) goes through _handle_message.
            get_event_type = _MEDIA_EVENTS.get
            get_stream = self._streams.get
            publishing = _PublishState.PUBLISHING
            for csid, type_id, stream_id, timestamp, payload in self._reader.feed_tuples(data):
                event_type = get_event_type(type_id)
                if event_type is not None:
                    stream = get_stream(stream_id)
                    if stream is not None and stream.publish_state is publishing:
                        events.append(event_type(stream_id, timestamp, payload))
                        continue
                message = Message(csid, type_id, stream_id, timestamp, payload)
                self._handle_message(message, events)
        self._maybe_acknowledge()
        return events

    def _maybe_acknowledge(self) -> None:
        # The spec asks for an Acknowledgement each time a window's worth of bytes has arrived;
        # clients do not wait for them (OBS and FFmpeg never check), but some log their absence.
        window = self._ack_window
        if window and self._bytes_received - self._bytes_at_last_ack >= window:
            self._bytes_at_last_ack = self._bytes_received
            self._send_control(
                msg.ACKNOWLEDGEMENT, msg.encode_acknowledgement(self._bytes_received)
            )

    def _handle_message(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if type_id == msg.VIDEO or type_id == msg.AUDIO:
            self._handle_media(message, events)
        elif type_id == msg.COMMAND_AMF0 or type_id == msg.COMMAND_AMF3:
            self._handle_command(message, events)
        elif type_id == msg.DATA_AMF0 or type_id == msg.DATA_AMF3:
            self._handle_data(message, events)
        elif type_id == msg.SET_CHUNK_SIZE or type_id == msg.ABORT:
            pass  # the ChunkReader applied it at the right point in the byte stream
        elif type_id == msg.ACKNOWLEDGEMENT or type_id == msg.SET_PEER_BANDWIDTH:
            pass  # we never wait for acknowledgements and do not limit our own output
        elif type_id == msg.WINDOW_ACK_SIZE:
            self._ack_window = msg.decode_uint32(message.payload, "Window Acknowledgement Size")
        elif type_id == msg.USER_CONTROL:
            event_type, event_data = msg.decode_user_control(message.payload)
            if event_type == msg.PING_REQUEST:
                timestamp = msg.decode_uint32(event_data, "Ping Request")
                self._send_control(
                    msg.USER_CONTROL, msg.encode_user_control(msg.PING_RESPONSE, timestamp)
                )
        elif type_id == msg.AGGREGATE:
            events.append(IgnoredMessage("aggregate messages are not supported"))
        elif type_id == msg.SHARED_OBJECT_AMF0 or type_id == msg.SHARED_OBJECT_AMF3:
            events.append(IgnoredMessage("shared object messages are not supported"))
        else:
            events.append(IgnoredMessage(f"unknown message type {type_id}"))

    def _handle_media(self, message: Message, events: list[Event]) -> None:
        stream_id = message.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None and stream.publish_state is _PublishState.PUBLISHING:
            if message.type_id == msg.VIDEO:
                events.append(VideoReceived(stream_id, message.timestamp, message.payload))
            else:
                events.append(AudioReceived(stream_id, message.timestamp, message.payload))
            return
        # Report once per stream (per publish), not per frame: a client that starts sending
        # before Publish.Start would otherwise flood the log.
        if stream is not None:
            if stream.media_drop_reported:
                return
            stream.media_drop_reported = True
        else:
            # Message stream ids are 32 bits: remembering every one a client invents would
            # let it grow this set without limit, so reporting stops after a few.
            if (
                stream_id in self._unknown_media_streams
                or len(self._unknown_media_streams) >= _MAX_UNKNOWN_MEDIA_STREAMS_REPORTED
            ):
                return
            self._unknown_media_streams.add(stream_id)
        kind = "video" if message.type_id == msg.VIDEO else "audio"
        events.append(
            IgnoredMessage(f"{kind} on message stream {stream_id} which is not publishing")
        )

    def _handle_data(self, message: Message, events: list[Event]) -> None:
        # Metadata is informational: a malformed data message is logged, not fatal.
        try:
            values = msg.decode_data(message.payload, message.type_id)
        except ProtocolError as exc:
            events.append(IgnoredMessage(f"malformed data message: {exc}"))
            return
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if not values or not isinstance(values[0], str):
            events.append(IgnoredMessage("data message without a name"))
            return
        if values[0] != "onMetaData":
            events.append(IgnoredMessage(f"data message {shown(values[0])}"))
            return
        if len(values) < 2 or not isinstance(values[1], dict):
            events.append(IgnoredMessage("onMetaData without an object or ECMA array"))
            return
        stream = self._streams.get(message.stream_id)
        if stream is None or stream.publish_state not in (
            _PublishState.REQUESTED,
            _PublishState.PUBLISHING,
        ):
            events.append(
                IgnoredMessage(f"onMetaData on message stream {message.stream_id} not publishing")
            )
            return
        events.append(MetadataReceived(message.stream_id, message.timestamp, values[1]))

    # ------------------------------------------------------------------------- commands

    def _handle_command(self, message: Message, events: list[Event]) -> None:
        try:
            cmd = msg.decode_command(message.payload, message.type_id)
        except ProtocolError as exc:
            raise ProtocolError(
                f"malformed command message on message stream {message.stream_id}: {exc}"
            ) from None
        name = cmd.name
        if name == "connect":
            self._on_connect(cmd, events)
            return
        if self._app is None:
            raise ProtocolError(f"command {shown(name)} before connect")
        stream_id = message.stream_id
        if name == "releaseStream":
            if cmd.transaction_id:
                self._send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
        elif name == "FCPublish":
            if cmd.transaction_id:
                self._send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
            # Some mobile encoders wait for this before createStream; it is harmless to others.
            self._send_command(
                stream_id,
                msg.command(
                    "onFCPublish",
                    0,
                    None,
                    {"code": "NetStream.Publish.Start", "description": "FCPublish accepted."},
                ),
            )
        elif name == "createStream":
            self._on_create_stream(cmd)
        elif name == "publish":
            self._on_publish(cmd, stream_id, events)
        elif name == "FCUnpublish":
            self._on_fc_unpublish(cmd, stream_id, events)
        elif name == "deleteStream":
            self._on_delete_stream(cmd, stream_id, events)
        elif name == "closeStream":
            target = self._publishing_stream(stream_id, _split_query(_string_arg(cmd, 0, ""))[0])
            if target is not None and self._stop_by_client(target, "closeStream", events):
                self._send_unpublish_success(target)
        elif name == "getStreamLength":
            if cmd.transaction_id:
                self._send_result(stream_id, cmd.transaction_id, None, 0.0)
        elif name == "play" or name == "play2":
            self._send_on_status(
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "this server does not play over RTMP; use HLS",
            )
            events.append(IgnoredMessage(f"{name} refused: this server does not play over RTMP"))
        elif name in ("_result", "_error", "onStatus", "onBWDone"):
            # Replies and notifications from the client; answering them would be wrong.
            events.append(IgnoredMessage(f"client sent {shown(name)}"))
        else:
            if cmd.transaction_id:
                self._send_command(
                    stream_id,
                    msg.command(
                        "_error",
                        cmd.transaction_id,
                        None,
                        {
                            "level": "error",
                            "code": "NetConnection.Call.Failed",
                            "description": f"unknown command {name}",
                        },
                    ),
                )
            events.append(IgnoredMessage(f"unknown command {shown(name)}"))

    def _on_connect(self, cmd: msg.Command, events: list[Event]) -> None:
        if self._app is not None:
            raise ProtocolError("second connect on the same connection")
        properties = cmd.command_object
        if not isinstance(properties, dict):
            raise ProtocolError(
                f"connect: command object must be an AMF0 object, got {properties!r:.60}"
            )
        app = properties.get("app", "")
        if not isinstance(app, str):
            raise ProtocolError(f"connect: app must be a string, got {app!r:.60}")
        # "live?token=..." happens when users paste a query into the server URL field.
        app, app_query = _split_query(app)
        tc_url = properties.get("tcUrl")
        if not isinstance(tc_url, str):
            tc_url = None
        object_encoding = properties.get("objectEncoding", 0.0)
        if isinstance(object_encoding, bool) or not isinstance(object_encoding, float):
            object_encoding = 0.0

        limits = self._limits
        self._send_control(msg.WINDOW_ACK_SIZE, msg.encode_window_ack_size(limits.window_ack_size))
        self._send_control(
            msg.SET_PEER_BANDWIDTH,
            msg.encode_set_peer_bandwidth(limits.window_ack_size, msg.LIMIT_DYNAMIC),
        )
        self._send_control(msg.SET_CHUNK_SIZE, msg.encode_set_chunk_size(limits.out_chunk_size))
        self._writer.chunk_size = limits.out_chunk_size
        self._send_result(
            0,
            cmd.transaction_id,
            {"fmsVer": FMS_VERSION, "capabilities": FMS_CAPABILITIES},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": object_encoding,
            },
        )
        self._app = app
        self._app_query = app_query
        events.append(Connected(app=app, tc_url=tc_url, properties=properties))

    def _on_create_stream(self, cmd: msg.Command) -> None:
        if len(self._streams) >= self._limits.max_streams:
            raise ProtocolError(
                f"createStream would open stream number {len(self._streams) + 1}, "
                f"exceeding max_streams={self._limits.max_streams}"
            )
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[stream_id] = _MessageStream()
        # FFmpeg insists on exactly [_result, txn, null, number].
        self._send_result(0, cmd.transaction_id, None, float(stream_id))

    def _on_publish(self, cmd: msg.Command, stream_id: int, events: list[Event]) -> None:
        if stream_id == 0:
            raise ProtocolError("publish on message stream 0 (call createStream first)")
        raw_name = cmd.args[0] if cmd.args else None
        if not isinstance(raw_name, str):
            raise ProtocolError(f"publish: stream name must be a string, got {raw_name!r:.60}")
        publish_type = _string_arg(cmd, 1, "live") or "live"
        stream = self._streams.get(stream_id)
        if stream is None:
            # Some clients assume createStream returns 1 and never ask; allow it within limits.
            if len(self._streams) >= self._limits.max_streams:
                raise ProtocolError(
                    f"publish on message stream {stream_id} would exceed "
                    f"max_streams={self._limits.max_streams}"
                )
            stream = self._streams[stream_id] = _MessageStream()
            self._next_stream_id = max(self._next_stream_id, stream_id + 1)
        if stream.publish_state in (_PublishState.REQUESTED, _PublishState.PUBLISHING):
            self._send_on_status(
                stream_id, "error", "NetStream.Publish.BadName", "already publishing"
            )
            events.append(IgnoredMessage(f"second publish on message stream {stream_id}"))
            return
        name, query = _split_query(raw_name)
        stream.publish_state = _PublishState.REQUESTED
        stream.name = name
        stream.media_drop_reported = False
        events.append(
            PublishRequested(
                stream_id=stream_id,
                app=self._app or "",
                name=name,
                query="&".join(q for q in (self._app_query, query) if q),
                publish_type=publish_type,
            )
        )

    def _publishing_stream(self, stream_id: int, name: str) -> int | None:
        """The publishing stream a stop command means.

        Clients disagree on where they say it: on the stream itself, or on stream 0 naming the
        stream (OBS's FCUnpublish; GStreamer's deleteStream and closeStream carry the name, not
        the id).
        """
        active = [
            sid
            for sid, stream in self._streams.items()
            if stream.publish_state in (_PublishState.REQUESTED, _PublishState.PUBLISHING)
        ]
        if stream_id in active:
            return stream_id
        named = [sid for sid in active if self._streams[sid].name == name]
        if named:
            return named[0]
        return active[0] if len(active) == 1 else None

    def _on_fc_unpublish(self, cmd: msg.Command, stream_id: int, events: list[Event]) -> None:
        name = _split_query(_string_arg(cmd, 0, ""))[0]
        target = self._publishing_stream(stream_id, name)
        if cmd.transaction_id:
            self._send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
        if target is not None and self._stop_by_client(target, "FCUnpublish", events):
            self._send_unpublish_success(target)

    def _on_delete_stream(self, cmd: msg.Command, stream_id: int, events: list[Event]) -> None:
        arg = cmd.args[0] if cmd.args else None
        if isinstance(arg, float) and arg.is_integer():
            target: int | None = int(arg)
        elif isinstance(arg, str):
            target = self._publishing_stream(stream_id, _split_query(arg)[0])
        else:
            raise ProtocolError(f"deleteStream: expected a stream id, got {arg!r:.60}")
        if target is None:
            return
        self._stop_by_client(target, "deleteStream", events)
        self._streams.pop(target, None)

    def _stop_by_client(self, stream_id: int, reason: str, events: list[Event]) -> bool:
        """Emit PublishStopped if the stream had a publish in progress; True if it did."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.publish_state not in (
            _PublishState.REQUESTED,
            _PublishState.PUBLISHING,
        ):
            return False
        if stream.publish_state is _PublishState.REQUESTED:
            # The application's answer to this request is still to come (OBS sends FCUnpublish
            # and deleteStream right away when it stops): it is then dropped, and cannot be
            # mistaken for an answer to a later publish on the same stream id.
            self._abandoned_requests.add(stream_id)
        stream.publish_state = _PublishState.STOPPED
        events.append(PublishStopped(stream_id=stream_id, reason=reason))
        return True

    # -------------------------------------------------------------------------- sending

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes) -> None:
        self._outgoing += self._writer.write(Message(csid, type_id, stream_id, 0, payload))

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._send(msg.CSID_PROTOCOL_CONTROL, type_id, 0, payload)

    def _send_command(self, stream_id: int, payload: bytes) -> None:
        # Replies to stream-level commands must be on the client's message stream: GStreamer's
        # rtmp2sink waits for onStatus there and hangs if it arrives on stream 0.
        csid = msg.CSID_COMMAND if stream_id == 0 else msg.CSID_STREAM_COMMAND
        self._send(csid, msg.COMMAND_AMF0, stream_id, payload)

    def _send_result(self, stream_id: int, transaction_id: float, *values: object) -> None:
        self._send_command(stream_id, msg.command("_result", transaction_id, *values))

    def _send_on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._send_command(stream_id, msg.command("onStatus", 0, None, info))

    def _send_unpublish_success(self, stream_id: int) -> None:
        self._send_on_status(
            stream_id, "status", "NetStream.Unpublish.Success", "Stopped publishing."
        )


def _split_query(name: str) -> tuple[str, str]:
    base, _, query = name.partition("?")
    return base, query


def _string_arg(cmd: msg.Command, index: int, default: str) -> str:
    value = cmd.args[index] if len(cmd.args) > index else None
    return value if isinstance(value, str) else default
