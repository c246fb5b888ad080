"""Whole sessions scripted the way OBS, FFmpeg and GStreamer send them."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periscope_ingest.rtmp import amf0
from periscope_ingest.rtmp import messages as msg
from periscope_ingest.rtmp.amf0 import UNDEFINED, EcmaArray
from periscope_ingest.rtmp.chunk import Message
from periscope_ingest.rtmp.connection import (
    AudioReceived,
    Connected,
    IgnoredMessage,
    MetadataReceived,
    PublishRequested,
    PublishStopped,
    RtmpLimits,
    ServerConnection,
    VideoReceived,
)
from periscope_ingest.rtmp.errors import LimitExceeded, ProtocolError

from .client import C0_C1, C1, C2, ScriptedClient, ServerOutput, connected, exchange

OBS_FLASH_VER = "FMLE/3.0 (compatible; FMSc/1.0)"
AVC_SEQUENCE_HEADER = b"\x17\x00\x00\x00\x00" + bytes.fromhex("01640028ffe1")
AAC_SEQUENCE_HEADER = b"\xaf\x00\x12\x10"
EXT_START = 0x01000000  # timestamps past 0xFFFFFF need extended timestamps


def commands(replies):
    return [(r.message.stream_id, r.values) for r in replies if r.values is not None]


def obs_session() -> tuple[list[bytes], int]:
    """The byte stream OBS sends, split into the steps it takes (and the stream id it expects)."""
    client = ScriptedClient()
    steps = [C0_C1, C2]
    steps.append(
        client.set_chunk_size(4096)
        + client.command(
            "connect",
            1,
            {
                "app": "live",
                "type": "nonprivate",
                "flashVer": OBS_FLASH_VER,
                "swfUrl": "rtmp://example.com/live",
                "tcUrl": "rtmp://example.com/live",
            },
        )
    )
    # OBS does not wait for the replies to these three.
    steps.append(
        client.command("releaseStream", 2, None, "mykey")
        + client.command("FCPublish", 3, None, "mykey")
        + client.command("createStream", 4, None)
    )
    steps.append(client.command("publish", 5, None, "mykey", "live", stream_id=1, csid=4))
    metadata = EcmaArray(width=1920.0, height=1080.0, videocodecid=7.0, encoder="obs-output")
    media = client.data("@setDataFrame", "onMetaData", metadata, stream_id=1)
    media += client.media(msg.VIDEO, AVC_SEQUENCE_HEADER, stream_id=1, timestamp=EXT_START)
    media += client.media(msg.AUDIO, AAC_SEQUENCE_HEADER, stream_id=1, timestamp=EXT_START)
    keyframe = b"\x17\x01\x00\x00\x00" + bytes(range(256)) * 40  # 10245 bytes: 3 chunks
    media += client.media(msg.VIDEO, keyframe, stream_id=1, timestamp=EXT_START + 33)
    media += client.media(
        msg.AUDIO, b"\xaf\x01" + bytes(300), stream_id=1, timestamp=EXT_START + 23
    )
    media += client.media(
        msg.VIDEO, b"\x27\x01\x00\x00\x00" + bytes(5000), stream_id=1, timestamp=EXT_START + 66
    )
    steps.append(media)
    steps.append(
        client.command("FCUnpublish", 6, None, "mykey")
        + client.command("deleteStream", 7, None, 1.0)
    )
    return steps, 1


def run_obs(feed) -> tuple[list, list]:
    """Run the OBS session, accepting the publish when asked; returns (events, replies)."""
    connection = ServerConnection()
    output = ServerOutput()
    steps, _ = obs_session()
    events, replies = [], []
    for step in steps:
        new_events = feed(connection, step)
        events += new_events
        for event in new_events:
            if isinstance(event, PublishRequested):
                connection.accept_publish(event.stream_id)
        replies += output.feed(connection.data_to_send())
    return events, replies


def feed_at_once(connection, data):
    return connection.receive_data(data)


def feed_bytewise(connection, data):
    events = []
    for i in range(len(data)):
        events += connection.receive_data(data[i : i + 1])
    return events


def test_obs_session():
    events, replies = run_obs(feed_at_once)

    assert events[0] == Connected(
        app="live",
        tc_url="rtmp://example.com/live",
        properties={
            "app": "live",
            "type": "nonprivate",
            "flashVer": OBS_FLASH_VER,
            "swfUrl": "rtmp://example.com/live",
            "tcUrl": "rtmp://example.com/live",
        },
    )
    assert events[1] == PublishRequested(
        stream_id=1, app="live", name="mykey", query="", publish_type="live"
    )
    assert events[2] == MetadataReceived(
        stream_id=1,
        timestamp=0,
        values={"width": 1920.0, "height": 1080.0, "videocodecid": 7.0, "encoder": "obs-output"},
    )
    media = [(type(e).__name__, e.timestamp, len(e.payload)) for e in events[3:8]]
    assert media == [
        ("VideoReceived", EXT_START, len(AVC_SEQUENCE_HEADER)),
        ("AudioReceived", EXT_START, len(AAC_SEQUENCE_HEADER)),
        ("VideoReceived", EXT_START + 33, 10245),
        ("AudioReceived", EXT_START + 23, 302),
        ("VideoReceived", EXT_START + 66, 5005),
    ]
    assert events[3] == VideoReceived(1, EXT_START, AVC_SEQUENCE_HEADER)
    assert events[5].payload == b"\x17\x01\x00\x00\x00" + bytes(range(256)) * 40
    assert events[8:] == [PublishStopped(stream_id=1, reason="FCUnpublish")]

    control = [(r.message.type_id, r.message.payload) for r in replies[:3]]
    assert control == [
        (msg.WINDOW_ACK_SIZE, (5_000_000).to_bytes(4, "big")),
        (msg.SET_PEER_BANDWIDTH, (5_000_000).to_bytes(4, "big") + b"\x02"),
        (msg.SET_CHUNK_SIZE, (4096).to_bytes(4, "big")),
    ]
    assert all(r.message.chunk_stream_id == 2 for r in replies[:3])
    connect_result = replies[3]
    assert connect_result.message.chunk_stream_id == 3
    assert connect_result.message.stream_id == 0
    assert connect_result.values == [
        "_result",
        1.0,
        {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
        {
            "level": "status",
            "code": "NetConnection.Connect.Success",
            "description": "Connection succeeded.",
            "objectEncoding": 0.0,
        },
    ]
    rest = commands(replies[4:])
    assert rest[:4] == [
        (0, ["_result", 2.0, None, UNDEFINED]),
        (0, ["_result", 3.0, None, UNDEFINED]),
        (
            0,
            [
                "onFCPublish",
                0.0,
                None,
                {"code": "NetStream.Publish.Start", "description": "FCPublish accepted."},
            ],
        ),
        (0, ["_result", 4.0, None, 1.0]),
    ]
    # After accept_publish: Stream Begin(1) on stream 0, then Publish.Start on stream 1.
    stream_begin = next(r for r in replies if r.message.type_id == msg.USER_CONTROL)
    assert stream_begin.message.payload == b"\x00\x00\x00\x00\x00\x01"
    assert rest[4] == (
        1,
        [
            "onStatus",
            0.0,
            None,
            {
                "level": "status",
                "code": "NetStream.Publish.Start",
                "description": "Started publishing.",
            },
        ],
    )
    assert replies.index(stream_begin) < [r.values for r in replies].index(rest[4][1])
    assert rest[5] == (0, ["_result", 6.0, None, UNDEFINED])
    assert rest[6][0] == 1
    assert rest[6][1][3]["code"] == "NetStream.Unpublish.Success"
    assert len(rest) == 7  # deleteStream has no reply


def test_obs_session_fed_one_byte_at_a_time_gives_the_same_events_and_replies():
    events, replies = run_obs(feed_at_once)
    events_bytewise, replies_bytewise = run_obs(feed_bytewise)
    assert events_bytewise == events
    assert [(r.message, r.values) for r in replies_bytewise] == [
        (r.message, r.values) for r in replies
    ]


def test_server_writes_with_the_announced_chunk_size():
    connection, output, client = connected()
    exchange(connection, output, client.command("createStream", 2, None))
    exchange(connection, output, client.command("publish", 3, None, "k", "live", stream_id=1))
    connection.accept_publish(1)
    raw = connection.data_to_send()
    # Both replies are short; what matters is that a client reading at 4096 decodes them.
    assert [r.message.type_id for r in output.feed(raw)] == [msg.USER_CONTROL, msg.COMMAND_AMF0]
    assert output.reader.chunk_size == 4096


def test_ffmpeg_session():
    connection = ServerConnection(RtmpLimits(out_chunk_size=60000))
    output = ServerOutput()
    client = ScriptedClient(128)
    connect = client.command(
        "connect",
        1,
        {
            "app": "live?secret=1",
            "flashVer": "FMLE/3.0 (compatible; Lavf61.1.100)",
            "tcUrl": "rtmp://localhost:1935/live?secret=1",
            "fourCcList": ["av01", "vp09", "hvc1"],
            "objectEncoding": 0.0,
        },
    )
    events, replies = exchange(connection, output, C0_C1)
    assert len(connection.data_to_send()) == 0
    assert output.handshake[1537:] == C1  # S2 echoed before C2 was sent
    events, replies = exchange(connection, output, C2 + connect)
    assert events[0].app == "live"
    assert events[0].properties["fourCcList"] == ["av01", "vp09", "hvc1"]
    assert replies[2].message.payload == (60000).to_bytes(4, "big")
    # FFmpeg echoes our chunk size and switches to it.
    steps = client.set_chunk_size(60000)
    steps += client.command("releaseStream", 2, None, "key")
    steps += client.command("FCPublish", 3, None, "key")
    steps += client.command("createStream", 4, None)
    events, replies = exchange(connection, output, steps)
    assert commands(replies)[-1] == (0, ["_result", 4.0, None, 1.0])
    events, replies = exchange(
        connection, output, client.command("publish", 5, None, "key?x=y", "live", stream_id=1)
    )
    assert events == [PublishRequested(1, "live", "key", "secret=1&x=y", "live")]
    assert replies == []  # nothing until the application decides
    connection.accept_publish(1)
    media = b""
    for i in range(5):
        # Audio on chunk stream 4, video on 6; timestamps go backwards between them.
        media += client.media(msg.AUDIO, b"\xaf\x01" + bytes(10), stream_id=1, timestamp=i * 23)
        media += client.media(
            msg.VIDEO, b"\x27\x01" + bytes(70000), stream_id=1, timestamp=i * 20, csid=6
        )
    events, _ = exchange(connection, output, media)
    assert [(type(e), e.timestamp) for e in events] == [
        item for i in range(5) for item in ((AudioReceived, i * 23), (VideoReceived, i * 20))
    ]
    assert all(len(e.payload) == 70002 for e in events if isinstance(e, VideoReceived))


def test_gstreamer_session_reply_codes_and_stream_ids():
    connection = ServerConnection()
    output = ServerOutput()
    client = ScriptedClient()
    _, replies = exchange(
        connection,
        output,
        C0_C1 + C2 + client.command("connect", 1, {"app": "app", "tcUrl": "rtmp://h/app"}),
    )
    assert replies[-1].values[3]["code"] == "NetConnection.Connect.Success"
    _, replies = exchange(connection, output, client.command("createStream", 2, None))
    assert replies[-1].values == ["_result", 2.0, None, 1.0]
    events, _ = exchange(
        connection, output, client.command("publish", 3, None, "stream", "live", stream_id=1)
    )
    connection.accept_publish(events[0].stream_id)
    replies = output.feed(connection.data_to_send())
    on_status = [r for r in replies if r.values is not None]
    assert len(on_status) == 1
    assert on_status[0].message.stream_id == 1
    assert on_status[0].values[3]["code"] == "NetStream.Publish.Start"


def test_create_stream_ids_increase():
    connection, output, client = connected()
    _, replies = exchange(
        connection,
        output,
        client.command("createStream", 2, None) + client.command("createStream", 3, None),
    )
    assert [r.values[3] for r in replies] == [1.0, 2.0]


def test_stream_limit():
    connection, output, client = connected()
    data = b"".join(client.command("createStream", 2 + i, None) for i in range(8))
    exchange(connection, output, data)
    with pytest.raises(ProtocolError, match="max_streams=8"):
        connection.receive_data(client.command("createStream", 20, None))


# ----------------------------------------------------------------------------- publish control


def publishing(stream_id: int = 1, accept: bool = True):
    connection, output, client = connected()
    exchange(connection, output, client.command("createStream", 2, None))
    events, _ = exchange(
        connection,
        output,
        client.command("publish", 3, None, "key", "live", stream_id=stream_id, csid=8),
    )
    assert events[0].stream_id == stream_id
    if accept:
        connection.accept_publish(stream_id)
        output.feed(connection.data_to_send())
    return connection, output, client


def test_reject_publish_sends_an_error_on_the_stream():
    connection, output, _ = publishing(accept=False)
    connection.reject_publish(1, "unknown stream key", code="NetStream.Publish.Denied")
    replies = output.feed(connection.data_to_send())
    assert [(r.message.stream_id, r.values) for r in replies] == [
        (
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "error",
                    "code": "NetStream.Publish.Denied",
                    "description": "unknown stream key",
                },
            ],
        ),
    ]


def test_reject_publish_default_code():
    connection, output, _ = publishing(accept=False)
    connection.reject_publish(1, "in use")
    assert (
        output.feed(connection.data_to_send())[0].values[3]["code"] == "NetStream.Publish.BadName"
    )


def test_stop_publish():
    connection, output, client = publishing()
    connection.stop_publish(1)
    replies = output.feed(connection.data_to_send())
    assert replies[0].message.stream_id == 1
    assert replies[0].values[3] == {
        "level": "status",
        "code": "NetStream.Unpublish.Success",
        "description": "Stopped publishing.",
    }
    events, _ = exchange(
        connection, output, client.media(msg.VIDEO, b"\x17", stream_id=1, timestamp=0)
    )
    assert events == [IgnoredMessage("video on message stream 1 which is not publishing")]


def test_accept_publish_without_request_is_a_programming_error():
    connection, _, _ = connected()
    with pytest.raises(ValueError, match="no publish request"):
        connection.accept_publish(1)


def test_accept_after_the_client_gave_up_does_nothing():
    connection, output, client = publishing(accept=False)
    events, _ = exchange(connection, output, client.command("deleteStream", 4, None, 1.0))
    assert events == [PublishStopped(1, "deleteStream")]
    connection.accept_publish(1)
    assert connection.data_to_send() == b""


def test_media_before_accept_is_dropped_and_reported_once():
    connection, output, client = publishing(accept=False)
    data = b"".join(
        client.media(msg.VIDEO, b"\x17\x01", stream_id=1, timestamp=i) for i in range(3)
    )
    events, _ = exchange(connection, output, data)
    assert events == [IgnoredMessage("video on message stream 1 which is not publishing")]
    connection.accept_publish(1)
    events, _ = exchange(connection, output, client.media(msg.VIDEO, b"", stream_id=1, timestamp=5))
    assert events == [VideoReceived(1, 5, b"")]  # empty payloads pass through


def test_second_publish_on_the_same_stream_is_rejected():
    connection, output, client = publishing()
    events, replies = exchange(
        connection, output, client.command("publish", 4, None, "key", "live", stream_id=1)
    )
    assert events == [IgnoredMessage("second publish on message stream 1")]
    assert replies[0].message.stream_id == 1
    assert replies[0].values[3] == {
        "level": "error",
        "code": "NetStream.Publish.BadName",
        "description": "already publishing",
    }


def test_publish_on_an_uncreated_stream_is_accepted_leniently():
    connection, output, client = connected()
    events, _ = exchange(connection, output, client.command("publish", 0, None, "key", stream_id=1))
    assert events == [PublishRequested(1, "live", "key", "", "live")]


def test_publish_on_stream_zero_is_an_error():
    connection, _, client = connected()
    with pytest.raises(ProtocolError, match="publish on message stream 0"):
        connection.receive_data(client.command("publish", 0, None, "key", "live"))


def test_close_stream_stops_once_and_replies_on_the_stream():
    connection, output, client = publishing()
    close = client.command("closeStream", 0, None, stream_id=1, csid=8)
    events, replies = exchange(connection, output, close)
    assert events == [PublishStopped(1, "closeStream")]
    assert commands(replies) == [
        (
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "status",
                    "code": "NetStream.Unpublish.Success",
                    "description": "Stopped publishing.",
                },
            ],
        ),
    ]
    events, _ = exchange(connection, output, client.command("deleteStream", 0, None, 1.0))
    assert events == []  # already stopped: once only


def test_metadata_bare_and_via_set_data_frame():
    connection, output, client = publishing()
    data = client.data("onMetaData", {"width": 640.0}, stream_id=1, timestamp=7)
    data += client.data("@setDataFrame", "onMetaData", EcmaArray(height=480.0), stream_id=1)
    data += client.data("onTextData", {"text": "hi"}, stream_id=1)
    # AMF3 data message: one 0x00 byte, then AMF0.
    data += client.writer.write(
        Message(4, msg.DATA_AMF3, 1, 9, b"\x00" + amf0.encode("onMetaData", {"fps": 30.0}))
    )
    events, _ = exchange(connection, output, data)
    assert events == [
        MetadataReceived(1, 7, {"width": 640.0}),
        MetadataReceived(1, 0, {"height": 480.0}),
        IgnoredMessage("data message 'onTextData'"),
        MetadataReceived(1, 9, {"fps": 30.0}),
    ]


# ----------------------------------------------------------------------------- other commands


def test_unknown_command_with_transaction_gets_error():
    connection, output, client = connected()
    events, replies = exchange(
        connection,
        output,
        client.command("_checkbw", 5, None) + client.command("someNotify", 0, None),
    )
    assert events == [
        IgnoredMessage("unknown command '_checkbw'"),
        IgnoredMessage("unknown command 'someNotify'"),
    ]
    assert commands(replies) == [
        (
            0,
            [
                "_error",
                5.0,
                None,
                {
                    "level": "error",
                    "code": "NetConnection.Call.Failed",
                    "description": "unknown command _checkbw",
                },
            ],
        ),
    ]


def test_get_stream_length_and_play():
    connection, output, client = connected()
    events, replies = exchange(
        connection,
        output,
        client.command("getStreamLength", 3, None, "key")
        + client.command("play", 0, None, "key", stream_id=1),
    )
    assert commands(replies)[0] == (0, ["_result", 3.0, None, 0.0])
    assert commands(replies)[1][0] == 1
    assert commands(replies)[1][1][3]["code"] == "NetStream.Play.Failed"
    assert commands(replies)[1][1][3]["level"] == "error"
    assert len(events) == 1 and isinstance(events[0], IgnoredMessage)


def test_amf3_command_is_decoded_after_its_leading_byte():
    connection, output, client = connected()
    payload = b"\x00" + msg.command("createStream", 2, None)
    _, replies = exchange(
        connection, output, client.writer.write(Message(3, msg.COMMAND_AMF3, 0, 0, payload))
    )
    assert replies[0].values == ["_result", 2.0, None, 1.0]


def test_connect_echoes_object_encoding_and_strips_query():
    connection, output, client = ServerConnection(), ServerOutput(), ScriptedClient()
    events, replies = exchange(
        connection,
        output,
        C0_C1 + C2 + client.command("connect", 1, {"app": "live?k=v", "objectEncoding": 3.0}),
    )
    assert events[0].app == "live"
    assert events[0].tc_url is None
    assert connection.app == "live"
    assert replies[-1].values[3]["objectEncoding"] == 3.0


_QUERY = st.text(st.sampled_from("abz09=&%?/._-"), max_size=12)


@given(app_query=_QUERY, name_query=_QUERY)
def test_the_publish_query_joins_the_apps_and_the_names(app_query, name_query):
    # rtmp://host/live?token=1/key (OBS's Server field) and rtmp://host/live/key?token=1 both
    # carry a publish token; the publish authorisation callback gets either, or both joined.
    connection, output, client = ServerConnection(), ServerOutput(), ScriptedClient()
    app = "live" + (f"?{app_query}" if app_query else "")
    name = "key" + (f"?{name_query}" if name_query else "")
    events, _ = exchange(
        connection,
        output,
        C0_C1
        + C2
        + client.command("connect", 1, {"app": app})
        + client.command("createStream", 2, None)
        + client.command("publish", 3, None, name, "live", stream_id=1),
    )
    requested = [e for e in events if isinstance(e, PublishRequested)]
    joined = "&".join(q for q in (app_query, name_query) if q)
    assert [(r.app, r.name, r.query) for r in requested] == [("live", "key", joined)]


# ----------------------------------------------------------------------------- protocol control


def test_ping_request_gets_ping_response():
    connection, output, client = connected()
    ping = client.control(msg.USER_CONTROL, msg.encode_user_control(msg.PING_REQUEST, 123456))
    _, replies = exchange(connection, output, ping)
    assert [(r.message.type_id, r.message.payload) for r in replies] == [
        (msg.USER_CONTROL, b"\x00\x07" + (123456).to_bytes(4, "big"))
    ]
    # Other user control events are ignored silently.
    _, replies = exchange(
        connection, output, client.control(msg.USER_CONTROL, msg.encode_user_control(3, 1, 100))
    )
    assert replies == []


def test_acknowledgements_after_each_window():
    connection, output, client = publishing()
    exchange(connection, output, client.control(msg.WINDOW_ACK_SIZE, (10_000).to_bytes(4, "big")))
    received = connection._control.bytes_received
    acks = []
    for i in range(6):
        frame = client.media(msg.VIDEO, bytes(3000), stream_id=1, timestamp=i)
        received += len(frame)
        _, replies = exchange(connection, output, frame)
        assert all(r.message.type_id == msg.ACKNOWLEDGEMENT for r in replies)
        acks += [(i, received, r.message.payload) for r in replies]
    assert [(i, int.from_bytes(payload, "big")) for i, _, payload in acks] == [
        (i, total) for i, total, _ in acks
    ]
    assert len(acks) == 1  # 6 x ~3030 bytes = one window of 10000 since the last ack


def test_acknowledgement_sequence_number_counts_all_bytes():
    connection = ServerConnection()
    output = ServerOutput()
    client = ScriptedClient()
    data = C0_C1 + C2 + client.control(msg.WINDOW_ACK_SIZE, (100).to_bytes(4, "big"))
    data += client.command("connect", 1, {"app": "live"})
    _, replies = exchange(connection, output, data)
    acks = [r for r in replies if r.message.type_id == msg.ACKNOWLEDGEMENT]
    assert len(acks) == 1
    assert int.from_bytes(acks[0].message.payload, "big") == len(data)


def test_client_acknowledgement_and_peer_bandwidth_are_accepted_silently():
    connection, output, client = connected()
    data = client.control(msg.ACKNOWLEDGEMENT, (1).to_bytes(4, "big"))
    data += client.control(msg.SET_PEER_BANDWIDTH, msg.encode_set_peer_bandwidth(1000, 2))
    assert exchange(connection, output, data) == ([], [])


def test_aggregate_messages_are_ignored():
    connection, output, client = publishing()
    events, _ = exchange(
        connection, output, client.media(msg.AGGREGATE, bytes(30), stream_id=1, timestamp=0)
    )
    assert events == [IgnoredMessage("aggregate messages are not supported")]


# ----------------------------------------------------------------------------- failures


def test_garbage_after_handshake():
    connection = ServerConnection()
    connection.receive_data(C0_C1 + C2)
    with pytest.raises(ProtocolError, match="chunk stream 50: type-1 header before any type-0"):
        connection.receive_data(b"\x72garbage")
    with pytest.raises(ProtocolError, match="connection already failed: chunk stream 50"):
        connection.receive_data(b"")


def test_amf_garbage_in_connect():
    connection = ServerConnection()
    client = ScriptedClient()
    bad = client.writer.write(Message(3, msg.COMMAND_AMF0, 0, 0, b"\x02\x00\x07connect\x00\x3f"))
    with pytest.raises(
        ProtocolError, match=r"malformed command message .* AMF0 number at offset 10 is truncated"
    ):
        connection.receive_data(C0_C1 + C2 + bad)


def test_transaction_id_of_the_wrong_type_names_the_command():
    connection = ServerConnection()
    client = ScriptedClient()
    bad = client.writer.write(
        Message(3, msg.COMMAND_AMF0, 0, 0, amf0.encode("connect", "1", {"app": "live"}))
    )
    with pytest.raises(ProtocolError, match="'connect': transaction id must be an AMF0 number"):
        connection.receive_data(C0_C1 + C2 + bad)
    missing = ScriptedClient().writer.write(
        Message(3, msg.COMMAND_AMF0, 0, 0, amf0.encode("connect"))
    )
    with pytest.raises(ProtocolError, match="'connect' has no transaction id"):
        ServerConnection().receive_data(C0_C1 + C2 + missing)


def test_command_before_connect():
    connection = ServerConnection()
    with pytest.raises(ProtocolError, match="'createStream' before connect"):
        connection.receive_data(C0_C1 + C2 + ScriptedClient().command("createStream", 2, None))


def test_second_connect():
    connection, _, client = connected()
    with pytest.raises(ProtocolError, match="second connect"):
        connection.receive_data(client.command("connect", 2, {"app": "live"}))


def test_connect_without_an_object():
    connection = ServerConnection()
    with pytest.raises(ProtocolError, match="connect: command object must be an AMF0 object"):
        connection.receive_data(C0_C1 + C2 + ScriptedClient().command("connect", 1, None))


def test_limits_are_applied_to_client_input():
    connection = ServerConnection(RtmpLimits(max_chunk_size=1000, max_message_size=5000))
    client = ScriptedClient()
    with pytest.raises(LimitExceeded, match="max_chunk_size=1000"):
        connection.receive_data(C0_C1 + C2 + client.set_chunk_size(1001))
    connection, _, client = publishing_with(RtmpLimits(max_message_size=100_000))
    with pytest.raises(
        LimitExceeded, match="message of 100001 bytes exceeds max_message_size=100000"
    ):
        connection.receive_data(client.media(msg.VIDEO, bytes(100_001), stream_id=1, timestamp=0))


# A type-0 chunk header (1 + 11 bytes) and one chunk of 128 bytes, the client's chunk size:
# the rest of the message never comes.
FIRST_CHUNK = 12 + 128


def publishing_with(limits: RtmpLimits):
    """A connection whose publish was accepted, with these limits."""
    connection = ServerConnection(limits)
    client = ScriptedClient()
    connection.receive_data(C0_C1 + C2 + client.command("connect", 1, {"app": "live"}))
    connection.receive_data(client.command("createStream", 2, None))
    connection.receive_data(client.command("publish", 3, None, "k", "live", stream_id=1, csid=8))
    connection.accept_publish(1)
    connection.data_to_send()
    return connection, None, client


def test_before_a_publish_only_small_messages_are_taken():
    """No key shown yet: 64 KiB per message, a few chunk streams, and the size is refused at
    the header, before a byte of the message is kept."""
    connection = ServerConnection()
    client = ScriptedClient()
    connection.receive_data(C0_C1 + C2)
    with pytest.raises(
        LimitExceeded,
        match=r"65537 bytes exceeds max_command_size=65536 \(the limit before a publish",
    ):
        # Only the header and one chunk of an 8 MiB-claiming frame are sent.
        connection.receive_data(
            client.media(msg.VIDEO, bytes(65_537), stream_id=1, timestamp=0)[:200]
        )
    assert connection.buffered_bytes < 300


def test_before_a_publish_a_few_chunk_streams_only():
    connection = ServerConnection()
    client = ScriptedClient()
    connection.receive_data(C0_C1 + C2)
    for csid in range(3, 11):  # 8 chunk streams, each with a message in progress
        connection.receive_data(
            client.media(msg.VIDEO, bytes(60_000), stream_id=1, timestamp=0, csid=csid)[
                :FIRST_CHUNK
            ]
        )
    assert connection.bytes_in_progress == 8 * 60_000
    with pytest.raises(LimitExceeded, match="max_chunk_streams_before_publish=8"):
        connection.receive_data(
            client.media(msg.VIDEO, bytes(10), stream_id=1, timestamp=0, csid=11)
        )


def test_before_a_publish_what_is_held_is_bounded_fed_one_byte_at_a_time():
    """Chunk streams each start a message of just under 64 KiB, one byte per read: at no point
    is more held than 8 x max_command_size (plus a cut header), and the ninth chunk stream (the
    Set Chunk Size used the first) is refused naming the setting that applies before a publish."""
    connection = ServerConnection()
    client = ScriptedClient()
    connection.receive_data(C0_C1 + C2 + client.set_chunk_size(4096))
    limits = RtmpLimits()
    cap = limits.max_chunk_streams_before_publish * limits.max_command_size + 18
    attack = b"".join(
        client.media(msg.VIDEO, bytes(65_000), stream_id=1, timestamp=0, csid=csid)[: 12 + 4096]
        for csid in range(3, 12)
    )
    most = 0
    with pytest.raises(
        LimitExceeded, match=r"max_chunk_streams_before_publish=8 \(the limit before a publish"
    ):
        for byte in attack:
            connection.receive_data(bytes((byte,)))
            most = max(most, connection.buffered_bytes)
            assert connection.bytes_in_progress <= cap
    assert 7 * 4096 <= most <= cap


def test_commands_and_data_are_small_even_when_publishing():
    connection, _, client = publishing_with(RtmpLimits())
    for type_id in (msg.DATA_AMF0, msg.COMMAND_AMF0, msg.COMMAND_AMF3, msg.SHARED_OBJECT_AMF0):
        connection, _, client = publishing_with(RtmpLimits())
        header_only = client.media(type_id, bytes(65_537), stream_id=1, timestamp=0)[:20]
        with pytest.raises(LimitExceeded, match=f"type {type_id} .* max_command_size=65536"):
            connection.receive_data(header_only)
    # Audio and video may be larger once publishing.
    connection, _, client = publishing_with(RtmpLimits())
    frame = bytes([0x17, 1]) + bytes(200_000)
    events = connection.receive_data(client.media(msg.VIDEO, frame, stream_id=1, timestamp=0))
    assert [len(e.payload) for e in events] == [len(frame)]


def test_messages_in_progress_are_bounded_in_total_when_publishing():
    limits = RtmpLimits(max_message_size=1_000_000, max_buffered_bytes=2_500_000)
    connection, _, client = publishing_with(limits)
    for csid in (4, 5):
        connection.receive_data(
            client.media(msg.VIDEO, bytes(1_000_000), stream_id=1, timestamp=0, csid=csid)[
                :FIRST_CHUNK
            ]
        )
    with pytest.raises(LimitExceeded, match="exceeding max_buffered_per_connection=2500000"):
        connection.receive_data(
            client.media(msg.VIDEO, bytes(600_000), stream_id=1, timestamp=0, csid=6)[:FIRST_CHUNK]
        )


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 70_000), min_size=1, max_size=20),
    cut=st.integers(1, 3000),
    csids=st.lists(st.integers(3, 40), min_size=1, max_size=20),
)
def test_what_a_client_without_a_key_makes_us_hold_is_bounded(sizes, cut, csids):
    """Whatever messages a client starts and never finishes before publishing, the bytes held
    never exceed 8 chunk streams x 64 KiB: it is refused first."""
    connection = ServerConnection()
    client = ScriptedClient()
    connection.receive_data(C0_C1 + C2)
    limit = 8 * 65_536 + 20  # messages in progress plus one cut chunk header
    try:
        for size, csid in zip(sizes, csids * len(sizes), strict=False):
            data = client.media(msg.VIDEO, bytes(size), stream_id=1, timestamp=0, csid=csid)
            for start in range(0, min(len(data) - 1, 4 * cut), cut):
                connection.receive_data(data[start : start + cut])
                assert connection.buffered_bytes <= limit
                assert connection.bytes_in_progress <= limit
    except LimitExceeded:
        pass
    except ProtocolError:
        pass  # a new header on a chunk stream with a message still in progress


def test_rtmpe_client_is_refused_with_a_clear_message():
    with pytest.raises(ProtocolError, match="encrypted RTMPE is not supported"):
        ServerConnection().receive_data(b"\x06" + bytes(1536))


def test_handshake_complete_property():
    connection = ServerConnection()
    connection.receive_data(C0_C1)
    assert not connection.handshake_complete
    assert connection.app is None
    connection.receive_data(C2)
    assert connection.handshake_complete


def test_gstreamer_stop_commands_name_the_stream_on_stream_zero():
    # GStreamer's rtmp2sink sends FCUnpublish, closeStream and deleteStream on message stream 0
    # with the stream *name* as argument (not the id).
    connection, output, client = publishing()
    events, replies = exchange(
        connection, output, client.command("FCUnpublish", 0, None, "key", stream_id=0)
    )
    assert events == [PublishStopped(1, "FCUnpublish")]
    assert [(r.message.stream_id, r.name, r.values[3]["code"]) for r in replies] == [
        (1, "onStatus", "NetStream.Unpublish.Success")
    ]
    events, _ = exchange(
        connection, output, client.command("deleteStream", 0, None, "key", stream_id=0)
    )
    assert events == []  # stopped once only
    connection, output, client = publishing()
    events, _ = exchange(
        connection, output, client.command("deleteStream", 0, None, "key", stream_id=0)
    )
    assert events == [PublishStopped(1, "deleteStream")]


def test_delete_stream_without_an_id_is_a_protocol_error():
    connection, _output, client = publishing()
    with pytest.raises(ProtocolError, match="deleteStream: expected a stream id"):
        connection.receive_data(client.command("deleteStream", 0, None, True))


def test_client_chosen_names_are_quoted_short_and_on_one_line():
    connection, output, client = connected()
    name = "evil\nname" + "x" * 10_000
    events, _ = exchange(connection, output, client.command(name, 0, None))
    (event,) = events
    assert isinstance(event, IgnoredMessage)
    assert event.description == "unknown command " + repr(name[:40]) + "…"
    assert "\n" not in event.description and len(event.description) < 70
