import pytest

from periscope_ingest.rtmp.errors import ProtocolError
from periscope_ingest.rtmp.handshake import HandshakeState, ServerHandshake

C1 = bytes((i * 7) & 0xFF for i in range(1536))
C2 = bytes(1536)


def fixed_random(size: int) -> bytes:
    return b"\xab" * size


def test_answers_c0_c1_with_s0_s1_s2_at_once_without_waiting_for_c2():
    handshake = ServerHandshake(epoch_ms=0x01020304, random_bytes=fixed_random)
    assert handshake.receive_data(b"\x03" + C1) == b""
    out = handshake.data_to_send()
    assert len(out) == 1 + 1536 + 1536
    assert out[0] == 3
    s1 = out[1:1537]
    assert s1[:4] == b"\x01\x02\x03\x04"
    assert s1[4:8] == b"\x00\x00\x00\x00"
    assert s1[8:] == b"\xab" * 1528
    assert out[1537:] == C1  # S2 echoes C1
    assert handshake.state is HandshakeState.WAITING_FOR_C2
    assert handshake.data_to_send() == b""


def test_c1_fed_in_pieces():
    handshake = ServerHandshake()
    stream = b"\x03" + C1
    for piece in (stream[:1], stream[1:2], stream[2:700], stream[700:-1]):
        handshake.receive_data(piece)
        assert handshake.data_to_send() == b""
    handshake.receive_data(stream[-1:])
    out = handshake.data_to_send()
    assert len(out) == 3073
    assert out[1537:] == C1


def test_one_byte_at_a_time_then_c2_and_leftover_chunk_data():
    handshake = ServerHandshake()
    stream = b"\x03" + C1 + C2 + b"chunk data"
    leftover = b""
    for i in range(len(stream)):
        leftover += handshake.receive_data(stream[i : i + 1])
    assert handshake.complete
    assert leftover == b"chunk data"
    assert handshake.data_to_send()[1537:] == C1


def test_everything_in_one_feed_returns_bytes_after_c2():
    handshake = ServerHandshake()
    assert handshake.receive_data(b"\x03" + C1 + C2 + b"\x02rest") == b"\x02rest"
    assert handshake.complete
    assert handshake.receive_data(b"more") == b"more"


def test_digest_c1_is_accepted_and_echoed():
    digest_c1 = bytes(4) + b"\x80\x00\x07\x02" + bytes(range(200)) * 7 + bytes(128)
    handshake = ServerHandshake()
    handshake.receive_data(b"\x03" + digest_c1)
    assert handshake.data_to_send()[1537:] == digest_c1


@pytest.mark.parametrize(
    ("first_byte", "expected"),
    [
        (6, "unsupported RTMP version 6 (encrypted RTMPE is not supported)"),
        (0x16, "TLS"),
        (ord("G"), "HTTP"),
        (0, "unsupported RTMP version 0"),
    ],
)
def test_bad_version_fails_on_the_first_byte(first_byte, expected):
    handshake = ServerHandshake()
    with pytest.raises(ProtocolError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        handshake.receive_data(bytes((first_byte,)))
