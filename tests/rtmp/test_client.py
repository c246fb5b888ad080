"""The publishing client (restreaming) against our own server connection and scripted replies."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from periscope_ingest.rtmp import amf0
from periscope_ingest.rtmp import messages as msg
from periscope_ingest.rtmp.chunk import ChunkReader, ChunkWriter, Message
from periscope_ingest.rtmp.client import (
    ClientConnection,
    InvalidTargetUrl,
    PublishRefused,
    PublishStarted,
    ServerStatus,
    parse_target_url,
)
from periscope_ingest.rtmp.connection import (
    AudioReceived,
    Connected,
    MetadataReceived,
    PublishRequested,
    ServerConnection,
    VideoReceived,
)
from periscope_ingest.rtmp.errors import ProtocolError
from periscope_ingest.rtmp.handshake import HANDSHAKE_BLOCK_SIZE

AVC_HEADER = b"\x17\x00\x00\x00\x00" + bytes.fromhex("01640028ffe1")
KEYFRAME = b"\x17\x01\x00\x00\x00" + bytes(range(256)) * 40  # larger than any chunk size
AAC_HEADER = b"\xaf\x00\x12\x10"


def new_client() -> ClientConnection:
    return ClientConnection("live", "key?x=1", "rtmp://example:1935/live", chunk_size=4096)


def byte_at_a_time(client: ClientConnection, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events += client.receive_data(data[i : i + 1])
    return events


def converse(client: ClientConnection, server: ServerConnection, *, accept: bool = True):
    """Shuttle bytes both ways until quiet; the client is fed one byte at a time."""
    client_events: list = []
    server_events: list = []
    for _ in range(20):
        out = client.data_to_send()
        if out:
            for event in server.receive_data(out):
                server_events.append(event)
                if isinstance(event, PublishRequested):
                    if accept:
                        server.accept_publish(event.stream_id)
                    else:
                        server.reject_publish(event.stream_id, "no such key")
        back = server.data_to_send()
        if not out and not back:
            break
        client_events += byte_at_a_time(client, back)
    return client_events, server_events


def test_publishes_to_our_server_one_byte_at_a_time():
    client = new_client()
    server = ServerConnection()
    client_events, server_events = converse(client, server)
    assert client_events == [PublishStarted(1)]
    assert client.publishing
    connected = [e for e in server_events if isinstance(e, Connected)]
    assert connected[0].app == "live"
    assert connected[0].tc_url == "rtmp://example:1935/live"
    requested = [e for e in server_events if isinstance(e, PublishRequested)]
    assert [(r.name, r.query, r.publish_type) for r in requested] == [("key", "x=1", "live")]

    # Media as sent, timestamps past the 24-bit field included, split into 4096-byte chunks.
    client.send_metadata(0, {"width": 640.0, "encoder": "test"})
    client.send_video(0, AVC_HEADER)
    client.send_audio(0, AAC_HEADER)
    client.send_video(0x01000005, KEYFRAME)
    client.send_audio(0x01000010, b"\xaf\x01abc")
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[0], MetadataReceived)
    assert dict(events[0].values) == {"width": 640.0, "encoder": "test"}
    media = [(type(e), e.timestamp, e.payload) for e in events[1:]]
    assert media == [
        (VideoReceived, 0, AVC_HEADER),
        (AudioReceived, 0, AAC_HEADER),
        (VideoReceived, 0x01000005, KEYFRAME),
        (AudioReceived, 0x01000010, b"\xaf\x01abc"),
    ]


def test_refusal_is_reported_and_media_is_refused():
    client = new_client()
    client_events, _ = converse(client, ServerConnection(), accept=False)
    assert client_events == [PublishRefused("NetStream.Publish.BadName", "no such key")]
    with pytest.raises(ValueError):
        client.send_video(0, KEYFRAME)


def test_unpublish_ends_the_stream_at_the_server():
    client = new_client()
    server = ServerConnection()
    converse(client, server)
    client.unpublish()
    events = server.receive_data(client.data_to_send())
    assert [type(e).__name__ for e in events] == ["PublishStopped"]


class ScriptedServer:
    """Replies built by hand, the way nginx-rtmp sends them (its own chunk size, pings)."""

    def __init__(self) -> None:
        self.writer = ChunkWriter()
        self.reader = ChunkReader()

    def control(self, type_id: int, payload: bytes) -> bytes:
        return self.writer.write(Message(2, type_id, 0, 0, payload))

    def command(self, stream_id: int, *values) -> bytes:
        payload = amf0.encode(*values)
        return self.writer.write(Message(3, msg.COMMAND_AMF0, stream_id, 0, payload))

    def read_commands(self, data: bytes) -> list:
        return [
            (m.type_id, msg.decode_command(m.payload).name if m.type_id == 20 else m.payload)
            for m in self.reader.feed(data)
        ]


def test_handshake_waits_for_s2_then_sends_c2_and_connect():
    client = new_client()
    c0c1 = client.data_to_send()
    assert len(c0c1) == 1 + HANDSHAKE_BLOCK_SIZE and c0c1[0] == 3
    s1 = bytes(range(256)) * 6
    assert byte_at_a_time(client, b"\x03" + s1 + c0c1[1:-1]) == []
    assert client.data_to_send() == b""  # S2 is one byte short
    client.receive_data(c0c1[-1:])
    out = client.data_to_send()
    assert out[:HANDSHAKE_BLOCK_SIZE] == s1  # C2 echoes S1
    server = ScriptedServer()
    assert server.read_commands(out[HANDSHAKE_BLOCK_SIZE:]) == [
        (msg.SET_CHUNK_SIZE, (4096).to_bytes(4, "big")),
        (msg.COMMAND_AMF0, "connect"),
    ]


def test_nginx_style_replies_fed_byte_at_a_time():
    client = new_client()
    c0c1 = client.data_to_send()
    client.receive_data(b"\x03" + bytes(HANDSHAKE_BLOCK_SIZE) + c0c1[1:])
    server = ScriptedServer()
    server.reader.feed(client.data_to_send()[HANDSHAKE_BLOCK_SIZE:])
    server.reader.set_chunk_size(4096)
    success = {"level": "status", "code": "NetConnection.Connect.Success", "description": "ok"}
    replies = server.control(msg.WINDOW_ACK_SIZE, msg.encode_window_ack_size(100))
    replies += server.control(msg.SET_CHUNK_SIZE, msg.encode_set_chunk_size(60))
    server.writer.chunk_size = 60  # the next command is split into 60-byte chunks
    replies += server.command(0, "_result", 1.0, {"fmsVer": "FMS/3,0,1,123"}, success)
    replies += server.control(msg.USER_CONTROL, msg.encode_user_control(msg.PING_REQUEST, 77))
    assert byte_at_a_time(client, replies) == []
    sent = server.read_commands(client.data_to_send())
    acks = [int.from_bytes(p, "big") for t, p in sent if t == msg.ACKNOWLEDGEMENT]
    assert [s for s in sent if s[0] != msg.ACKNOWLEDGEMENT] == [
        (msg.COMMAND_AMF0, "releaseStream"),
        (msg.COMMAND_AMF0, "FCPublish"),
        (msg.COMMAND_AMF0, "createStream"),
        (msg.USER_CONTROL, msg.encode_user_control(msg.PING_RESPONSE, 77)),
    ]
    # An acknowledgement each time a 100-byte window of what arrived was exceeded.
    total = 1 + 2 * HANDSHAKE_BLOCK_SIZE + len(replies)
    assert len(acks) >= 2 and acks[-1] <= total
    assert all(later - earlier == 100 for earlier, later in itertools.pairwise(acks))
    replies = server.command(0, "_error", 2.0, None, {"level": "error", "code": "x"})
    replies += server.command(0, "onFCPublish", 0.0, None, {"code": "NetStream.Publish.Start"})
    replies += server.command(0, "_result", 4.0, None, 7.0)
    assert byte_at_a_time(client, replies) == []  # an _error to releaseStream is only a warning
    sent = server.read_commands(client.data_to_send())
    assert [s for s in sent if s[0] != msg.ACKNOWLEDGEMENT] == [(msg.COMMAND_AMF0, "publish")]
    start = {"level": "status", "code": "NetStream.Publish.Start", "description": "go"}
    events = byte_at_a_time(client, server.command(7, "onStatus", 0.0, None, start))
    assert events == [PublishStarted(7)]
    bye = {"level": "status", "code": "NetStream.Unpublish.Success", "description": "bye"}
    events = byte_at_a_time(client, server.command(7, "onStatus", 0.0, None, bye))
    assert events == [ServerStatus("status", "NetStream.Unpublish.Success", "bye")]


def test_connect_error_is_a_refusal():
    client = new_client()
    c0c1 = client.data_to_send()
    client.receive_data(b"\x03" + bytes(HANDSHAKE_BLOCK_SIZE) + c0c1[1:])
    server = ScriptedServer()
    rejected = {"level": "error", "code": "NetConnection.Connect.Rejected", "description": "no"}
    events = byte_at_a_time(client, server.command(0, "_error", 1.0, None, rejected))
    assert events == [PublishRefused("NetConnection.Connect.Rejected", "no")]


def test_not_rtmp_is_a_protocol_error():
    client = new_client()
    with pytest.raises(ProtocolError, match="version 72"):
        client.receive_data(b"HTTP/1.1 400 Bad Request\r\n")


# ------------------------------------------------------------------------------------- URLs


def test_target_urls():
    target = parse_target_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-1234")
    assert (target.tls, target.host, target.port, target.app, target.stream_name) == (
        False,
        "a.rtmp.youtube.com",
        1935,
        "live2",
        "abcd-efgh-1234",
    )
    assert target.tc_url == "rtmp://a.rtmp.youtube.com:1935/live2"
    assert "abcd" not in target.masked
    secure = parse_target_url("rtmps://live.example:4443/app/sub/key?auth=1")
    assert (secure.tls, secure.port, secure.stream_name) == (True, 4443, "sub/key?auth=1")
    assert parse_target_url("rtmps://h/app/k").port == 443
    for bad in (
        "http://h/app/key",
        "rtmp://h/app",
        "rtmp:///app/key",
        "rtmp://h:99999/app/key",
        "rtmp://user:pw@h/app/key",
        "rtmp://h/app/key with space",
        "srt://h/app/key",
    ):
        with pytest.raises(InvalidTargetUrl):
            parse_target_url(bad)


@given(st.text(max_size=80))
def test_any_text_is_parsed_or_refused_with_a_reason(text):
    try:
        target = parse_target_url(text)
    except InvalidTargetUrl as exc:
        assert str(exc)
    else:
        assert target.app and target.stream_name and target.host
        assert target.stream_name not in target.masked


@given(
    st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True),
    st.integers(1, 65535),
    st.from_regex(r"[A-Za-z0-9_]{1,10}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True),
)
def test_valid_urls_round_trip(host, port, app, key):
    target = parse_target_url(f"rtmp://{host}:{port}/{app}/{key}")
    assert (target.host, target.port, target.app, target.stream_name) == (host, port, app, key)
    assert target.tc_url == f"rtmp://{host}:{port}/{app}"
