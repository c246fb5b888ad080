"""The server's side of the NetConnection and NetStream commands (AMF0/AMF3 command messages).

ServerCommands answers connect, releaseStream, FCPublish, createStream, publish, the stop commands
(FCUnpublish, deleteStream, closeStream) and the rest the way OBS, FFmpeg and GStreamer wait for:
every command that carries a transaction id gets a reply promptly (encoders have been seen to
time out around releaseStream and FCPublish), and stream-level replies go on the message stream
id the client used (GStreamer's rtmp2sink waits for ever on an onStatus sent on stream 0). It
owns the message streams and their publish state; ServerConnection (connection.py) routes the
command messages here, reads the publish state for media, and passes on the application's
answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from . import messages as msg
from .amf0 import UNDEFINED
from .chunk_format import Message
from .connection_events import (
    Connected,
    Event,
    IgnoredMessage,
    PublishRequested,
    PublishStopped,
    RtmpLimits,
)
from .control import ProtocolControl
from .errors import ProtocolError, shown

__all__ = ["MessageStream", "PublishState", "ServerCommands"]

FMS_VERSION = "FMS/3,0,1,123"
# Bit flags FMS reports; 31 is the value FMS 3 sends and every publisher accepts.
FMS_CAPABILITIES = 31.0


class PublishState(enum.Enum):
    REQUESTED = enum.auto()  # PublishRequested emitted, application has not answered
    PUBLISHING = enum.auto()  # accepted: media is delivered
    STOPPED = enum.auto()  # rejected, stopped by either side; a new publish may follow


@dataclass(slots=True)
class MessageStream:
    """A message stream id created by createStream (or assumed by a lenient publish)."""

    publish_state: PublishState | None = None
    name: str = ""
    media_drop_reported: bool = False


class ServerCommands:
    """The command conversation of one server connection, and the message streams it creates."""

    def __init__(self, limits: RtmpLimits, out: ProtocolControl) -> None:
        self._limits = limits
        self.out = out
        self.app: str | None = None  # from connect, without query; None before connect
        self.app_query = ""  # what followed "?" in the connect's app
        # Never replaced, only changed: ServerConnection keeps a reference for its media path.
        self.streams: dict[int, MessageStream] = {}
        self._next_stream_id = 1
        # Streams whose publish the client ended (FCUnpublish, deleteStream, closeStream) while
        # it awaited the application's answer; that answer is then dropped instead of raising
        # or being applied to a later publish, since the application could not have known.
        self._abandoned_requests: set[int] = set()

    # -- the application's answers -----------------------------------------------------------

    def accept_publish(self, stream_id: int) -> bool:
        """Confirm a PublishRequested: Stream Begin, then onStatus NetStream.Publish.Start.

        True if the stream publishes from now on; False if the client already gave up
        (PublishStopped was emitted), so that a slow decision cannot crash the caller.
        """
        stream = self.streams.get(stream_id)
        if stream_id in self._abandoned_requests:
            self._abandoned_requests.discard(stream_id)
            return False
        if stream is not None and stream.publish_state is PublishState.STOPPED:
            return False
        if stream is None or stream.publish_state is not PublishState.REQUESTED:
            raise ValueError(f"message stream {stream_id} has no publish request to accept")
        stream.publish_state = PublishState.PUBLISHING
        stream.media_drop_reported = False
        self.out.send_control(
            msg.USER_CONTROL, msg.encode_user_control(msg.STREAM_BEGIN, stream_id)
        )
        self.send_on_status(stream_id, "status", "NetStream.Publish.Start", "Started publishing.")
        return True

    def reject_publish(
        self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName"
    ) -> None:
        """Refuse a publish with onStatus level "error"; the caller should then close."""
        if self._stopped(stream_id):
            self.send_on_status(stream_id, "error", code, description)

    def stop_publish(self, stream_id: int, description: str = "Stopped publishing.") -> None:
        """End a publish from the server side with onStatus NetStream.Unpublish.Success."""
        if self._stopped(stream_id):
            self.send_on_status(stream_id, "status", "NetStream.Unpublish.Success", description)

    def _stopped(self, stream_id: int) -> bool:
        """Mark the stream's publish stopped; False if the client already abandoned the request
        (then nothing is sent: it is not waiting for an answer)."""
        if stream_id in self._abandoned_requests:
            self._abandoned_requests.discard(stream_id)
            return False
        stream = self.streams.get(stream_id)
        if stream is not None and stream.publish_state is not None:
            stream.publish_state = PublishState.STOPPED
        return True

    # -- the client's commands ---------------------------------------------------------------

    def handle(self, message: Message, events: list[Event]) -> None:
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
        if self.app is None:
            raise ProtocolError(f"command {shown(name)} before connect")
        stream_id = message.stream_id
        if name == "releaseStream":
            if cmd.transaction_id:
                self.send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
        elif name == "FCPublish":
            if cmd.transaction_id:
                self.send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
            # Some mobile encoders wait for this before createStream; it is harmless to others.
            self.out.send_command(
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
                self.send_unpublish_success(target)
        elif name == "getStreamLength":
            if cmd.transaction_id:
                self.send_result(stream_id, cmd.transaction_id, None, 0.0)
        elif name == "play" or name == "play2":
            self.send_on_status(
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
                self.out.send_command(
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
        if self.app is not None:
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
        self.out.send_control(
            msg.WINDOW_ACK_SIZE, msg.encode_window_ack_size(limits.window_ack_size)
        )
        self.out.send_control(
            msg.SET_PEER_BANDWIDTH,
            msg.encode_set_peer_bandwidth(limits.window_ack_size, msg.LIMIT_DYNAMIC),
        )
        self.out.send_control(msg.SET_CHUNK_SIZE, msg.encode_set_chunk_size(limits.out_chunk_size))
        self.out.writer.chunk_size = limits.out_chunk_size
        self.send_result(
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
        self.app = app
        self.app_query = app_query
        events.append(Connected(app=app, tc_url=tc_url, properties=properties))

    def _on_create_stream(self, cmd: msg.Command) -> None:
        if len(self.streams) >= self._limits.max_streams:
            raise ProtocolError(
                f"createStream would open stream number {len(self.streams) + 1}, "
                f"exceeding max_streams={self._limits.max_streams}"
            )
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self.streams[stream_id] = MessageStream()
        # FFmpeg insists on exactly [_result, txn, null, number].
        self.send_result(0, cmd.transaction_id, None, float(stream_id))

    def _on_publish(self, cmd: msg.Command, stream_id: int, events: list[Event]) -> None:
        if stream_id == 0:
            raise ProtocolError("publish on message stream 0 (call createStream first)")
        raw_name = cmd.args[0] if cmd.args else None
        if not isinstance(raw_name, str):
            raise ProtocolError(f"publish: stream name must be a string, got {raw_name!r:.60}")
        publish_type = _string_arg(cmd, 1, "live") or "live"
        stream = self.streams.get(stream_id)
        if stream is None:
            # Some clients assume createStream returns 1 and never ask; allow it within limits.
            if len(self.streams) >= self._limits.max_streams:
                raise ProtocolError(
                    f"publish on message stream {stream_id} would exceed "
                    f"max_streams={self._limits.max_streams}"
                )
            stream = self.streams[stream_id] = MessageStream()
            self._next_stream_id = max(self._next_stream_id, stream_id + 1)
        if stream.publish_state in (PublishState.REQUESTED, PublishState.PUBLISHING):
            self.send_on_status(
                stream_id, "error", "NetStream.Publish.BadName", "already publishing"
            )
            events.append(IgnoredMessage(f"second publish on message stream {stream_id}"))
            return
        name, query = _split_query(raw_name)
        stream.publish_state = PublishState.REQUESTED
        stream.name = name
        stream.media_drop_reported = False
        events.append(
            PublishRequested(
                stream_id=stream_id,
                app=self.app or "",
                name=name,
                query="&".join(q for q in (self.app_query, query) if q),
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
            for sid, stream in self.streams.items()
            if stream.publish_state in (PublishState.REQUESTED, PublishState.PUBLISHING)
        ]
        if stream_id in active:
            return stream_id
        named = [sid for sid in active if self.streams[sid].name == name]
        if named:
            return named[0]
        return active[0] if len(active) == 1 else None

    def _on_fc_unpublish(self, cmd: msg.Command, stream_id: int, events: list[Event]) -> None:
        name = _split_query(_string_arg(cmd, 0, ""))[0]
        target = self._publishing_stream(stream_id, name)
        if cmd.transaction_id:
            self.send_result(stream_id, cmd.transaction_id, None, UNDEFINED)
        if target is not None and self._stop_by_client(target, "FCUnpublish", events):
            self.send_unpublish_success(target)

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
        self.streams.pop(target, None)

    def _stop_by_client(self, stream_id: int, reason: str, events: list[Event]) -> bool:
        """Emit PublishStopped if the stream had a publish in progress; True if it did."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.publish_state not in (
            PublishState.REQUESTED,
            PublishState.PUBLISHING,
        ):
            return False
        if stream.publish_state is PublishState.REQUESTED:
            # The application's answer to this request is still to come (OBS sends FCUnpublish
            # and deleteStream right away when it stops): it is then dropped, and cannot be
            # mistaken for an answer to a later publish on the same stream id.
            self._abandoned_requests.add(stream_id)
        stream.publish_state = PublishState.STOPPED
        events.append(PublishStopped(stream_id=stream_id, reason=reason))
        return True

    # -------------------------------------------------------------------------- sending

    def send_result(self, stream_id: int, transaction_id: float, *values: object) -> None:
        self.out.send_command(stream_id, msg.command("_result", transaction_id, *values))

    def send_on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self.out.send_command(stream_id, msg.command("onStatus", 0, None, info))

    def send_unpublish_success(self, stream_id: int) -> None:
        self.send_on_status(
            stream_id, "status", "NetStream.Unpublish.Success", "Stopped publishing."
        )


def _split_query(name: str) -> tuple[str, str]:
    base, _, query = name.partition("?")
    return base, query


def _string_arg(cmd: msg.Command, index: int, default: str) -> str:
    value = cmd.args[index] if len(cmd.args) > index else None
    return value if isinstance(value, str) else default
