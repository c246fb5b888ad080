import pytest

from periscope_ingest.rtmp import amf0
from periscope_ingest.rtmp import messages as msg
from periscope_ingest.rtmp.errors import ProtocolError


def test_constants_match_the_spec():
    assert (msg.SET_CHUNK_SIZE, msg.ABORT, msg.ACKNOWLEDGEMENT, msg.USER_CONTROL) == (1, 2, 3, 4)
    assert (msg.WINDOW_ACK_SIZE, msg.SET_PEER_BANDWIDTH, msg.AUDIO, msg.VIDEO) == (5, 6, 8, 9)
    assert (msg.DATA_AMF3, msg.COMMAND_AMF3, msg.DATA_AMF0, msg.COMMAND_AMF0) == (15, 17, 18, 20)
    assert msg.AGGREGATE == 22
    assert (msg.STREAM_BEGIN, msg.STREAM_EOF, msg.STREAM_DRY, msg.SET_BUFFER_LENGTH) == (0, 1, 2, 3)
    assert (msg.STREAM_IS_RECORDED, msg.PING_REQUEST, msg.PING_RESPONSE) == (4, 6, 7)


def test_protocol_control_payloads():
    assert msg.encode_set_chunk_size(4096) == b"\x00\x00\x10\x00"
    assert msg.encode_window_ack_size(5_000_000) == b"\x00\x4c\x4b\x40"
    assert msg.encode_set_peer_bandwidth(5_000_000) == b"\x00\x4c\x4b\x40\x02"
    assert msg.encode_acknowledgement(2**32 + 5) == b"\x00\x00\x00\x05"
    assert msg.encode_user_control(msg.STREAM_BEGIN, 1) == b"\x00\x00\x00\x00\x00\x01"
    assert msg.encode_user_control(msg.SET_BUFFER_LENGTH, 1, 3000) == (
        b"\x00\x03\x00\x00\x00\x01\x00\x00\x0b\xb8"
    )
    with pytest.raises(ValueError, match="chunk size 0"):
        msg.encode_set_chunk_size(0)


def test_decoders_name_the_message_when_short():
    assert msg.decode_uint32(b"\x00\x00\x01\x00", "Window Acknowledgement Size") == 256
    with pytest.raises(ProtocolError, match="Window Acknowledgement Size message has 2 bytes"):
        msg.decode_uint32(b"\x00\x01", "Window Acknowledgement Size")
    assert msg.decode_user_control(b"\x00\x06\x00\x00\x00\x09") == (6, b"\x00\x00\x00\x09")
    with pytest.raises(ProtocolError, match="User Control message has 1 bytes"):
        msg.decode_user_control(b"\x00")


def test_command_round_trip():
    payload = msg.command("publish", 5, None, "key", "live")
    assert payload == amf0.encode("publish", 5.0, None, "key", "live")
    assert msg.decode_command(payload) == msg.Command("publish", 5.0, None, ["key", "live"])
    assert msg.decode_command(b"\x00" + payload, msg.COMMAND_AMF3).name == "publish"


def test_command_without_command_object():
    assert msg.decode_command(amf0.encode("FCUnpublish", 0)) == msg.Command(
        "FCUnpublish", 0.0, None
    )


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "empty command message"),
        (amf0.encode(1.0, 2.0), "command name must be an AMF0 string, got number"),
        (amf0.encode("connect"), "command 'connect' has no transaction id"),
        (
            amf0.encode("connect", None),
            "'connect': transaction id must be an AMF0 number, got null",
        ),
        (amf0.encode("play", True), "'play': transaction id must be an AMF0 number, got boolean"),
    ],
)
def test_bad_commands(payload, error):
    with pytest.raises(ProtocolError, match=error):
        msg.decode_command(payload)


def test_amf3_message_must_start_with_a_zero_byte():
    with pytest.raises(ProtocolError, match="starts with 0x0a"):
        msg.decode_data(b"\x0a\x0b", msg.DATA_AMF3)
    assert msg.decode_data(b"\x00" + amf0.encode("onMetaData", {}), msg.DATA_AMF3) == [
        "onMetaData",
        {},
    ]
