"""Sans-IO RTMP server connection: bytes in, events out, replies queued for the caller to send.

Modelled on h11: ServerConnection never touches a socket or a clock. The caller passes whatever
it read to receive_data(), acts on the returned events, and writes data_to_send() to the socket
after every call (receive_data and the accept/reject/stop methods all queue bytes).

What it answers on its own follows what OBS, FFmpeg and GStreamer wait for: every command that
carries a transaction id gets a reply promptly, stream-level replies go on the message stream id
the client used, and publishing is only confirmed once the application calls accept_publish().

This module routes messages: media (the bulk of the traffic, on a fast path), data (onMetaData)
and protocol control here; commands to ServerCommands (server_commands.py), the acknowledgements
and pings every RTMP endpoint answers to ProtocolControl (control.py). The events and limits are
in connection_events.py, and importable from here.
"""

from __future__ import annotations

from . import messages as msg
from .chunk import ChunkReader
from .chunk_format import Message
from .connection_events import (
    LIMITS_BEFORE_PUBLISH,
    LIMITS_PUBLISHING,
    AudioReceived,
    Connected,
    Event,
    IgnoredMessage,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    RtmpLimits,
    VideoReceived,
)
from .control import ProtocolControl
from .errors import ProtocolError, shown
from .handshake import ServerHandshake
from .server_commands import PublishState, ServerCommands

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

# How many distinct unknown message stream ids sending media are reported (and remembered).
_MAX_UNKNOWN_MEDIA_STREAMS_REPORTED = 16

_MEDIA_EVENTS: dict[int, type[AudioReceived] | type[VideoReceived]] = {
    msg.AUDIO: AudioReceived,
    msg.VIDEO: VideoReceived,
}

_DEFAULT_LIMITS = RtmpLimits()


class ServerConnection:
    def __init__(self, limits: RtmpLimits = _DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._handshake = ServerHandshake()
        # Until a publish is accepted the client has shown no key: small messages only.
        self._reader = ChunkReader(
            max_chunk_size=limits.max_chunk_size,
            max_message_size=limits.max_command_size,
            max_chunk_streams=limits.max_chunk_streams_before_publish,
            max_command_size=limits.max_command_size,
            max_buffered=limits.max_chunk_streams_before_publish * limits.max_command_size,
            limit_names=LIMITS_BEFORE_PUBLISH,
        )
        self._control = ProtocolControl()
        self._commands = ServerCommands(limits, self._control)
        # The same dict as the commands' (never replaced): read by the media path.
        self._streams = self._commands.streams
        self._failure: ProtocolError | None = None
        # Message streams that sent media we dropped, reported once each.
        self._unknown_media_streams: set[int] = set()

    # ----------------------------------------------------------------------------- public

    @property
    def app(self) -> str | None:
        """The application name from connect (without query), or None before connect."""
        return self._commands.app

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
        return self._control.data_to_send()

    def accept_publish(self, stream_id: int) -> None:
        """Confirm a PublishRequested: Stream Begin, then onStatus NetStream.Publish.Start.

        Media on the stream is delivered from now on, and the publishing limits apply. Calling
        it after the client already gave up (PublishStopped was emitted) does nothing, so a slow
        decision cannot crash the caller.
        """
        if self._commands.accept_publish(stream_id):
            limits = self._limits
            self._reader.set_limits(
                limits.max_message_size,
                limits.max_chunk_streams,
                limits.max_command_size,
                limits.max_buffered_bytes,
                LIMITS_PUBLISHING,
            )

    def reject_publish(
        self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName"
    ) -> None:
        """Refuse a publish with onStatus level "error"; the caller should then close."""
        self._commands.reject_publish(stream_id, description, code)

    def stop_publish(self, stream_id: int, description: str = "Stopped publishing.") -> None:
        """End a publish from the server side with onStatus NetStream.Unpublish.Success."""
        self._commands.stop_publish(stream_id, description)

    # ------------------------------------------------------------------------ receiving

    def _receive(self, data: bytes) -> list[Event]:
        control = self._control
        control.bytes_received += len(data)
        if not self._handshake.complete:
            data = self._handshake.receive_data(data)
            control.outgoing += self._handshake.data_to_send()
            if not self._handshake.complete:
                return []
        events: list[Event] = []
        if data:
            # Fast path for media on a publishing stream, the bulk of the traffic; everything
            # else (and media that is dropped) goes through _handle_message.
            get_event_type = _MEDIA_EVENTS.get
            get_stream = self._streams.get
            publishing = PublishState.PUBLISHING
            for csid, type_id, stream_id, timestamp, payload in self._reader.feed_tuples(data):
                event_type = get_event_type(type_id)
                if event_type is not None:
                    stream = get_stream(stream_id)
                    if stream is not None and stream.publish_state is publishing:
                        events.append(event_type(stream_id, timestamp, payload))
                        continue
                message = Message(csid, type_id, stream_id, timestamp, payload)
                self._handle_message(message, events)
        control.maybe_acknowledge()
        return events

    def _handle_message(self, message: Message, events: list[Event]) -> None:
        type_id = message.type_id
        if type_id == msg.VIDEO or type_id == msg.AUDIO:
            self._handle_media(message, events)
        elif type_id == msg.COMMAND_AMF0 or type_id == msg.COMMAND_AMF3:
            self._commands.handle(message, events)
        elif type_id == msg.DATA_AMF0 or type_id == msg.DATA_AMF3:
            self._handle_data(message, events)
        elif type_id == msg.SET_CHUNK_SIZE or type_id == msg.ABORT:
            pass  # the ChunkReader applied it at the right point in the byte stream
        elif type_id == msg.ACKNOWLEDGEMENT or type_id == msg.SET_PEER_BANDWIDTH:
            pass  # we never wait for acknowledgements and do not limit our own output
        elif type_id == msg.WINDOW_ACK_SIZE:
            self._control.on_window_ack_size(message.payload)
        elif type_id == msg.USER_CONTROL:
            self._control.on_user_control(message.payload)
        elif type_id == msg.AGGREGATE:
            events.append(IgnoredMessage("aggregate messages are not supported"))
        elif type_id == msg.SHARED_OBJECT_AMF0 or type_id == msg.SHARED_OBJECT_AMF3:
            events.append(IgnoredMessage("shared object messages are not supported"))
        else:
            events.append(IgnoredMessage(f"unknown message type {type_id}"))

    def _handle_media(self, message: Message, events: list[Event]) -> None:
        stream_id = message.stream_id
        stream = self._streams.get(stream_id)
        if stream is not None and stream.publish_state is PublishState.PUBLISHING:
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
            PublishState.REQUESTED,
            PublishState.PUBLISHING,
        ):
            events.append(
                IgnoredMessage(f"onMetaData on message stream {message.stream_id} not publishing")
            )
            return
        events.append(MetadataReceived(message.stream_id, message.timestamp, values[1]))
