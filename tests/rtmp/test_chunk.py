"""ChunkReader and ChunkWriter: headers built by hand, so the two cannot hide each other's bugs."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periscope_ingest.rtmp.chunk import ChunkReader, ChunkWriter, Message
from periscope_ingest.rtmp.errors import LimitExceeded, ProtocolError

AUDIO, VIDEO, COMMAND = 8, 9, 20


def basic(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes(((fmt << 6) | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    return bytes(((fmt << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


def u24(value: int) -> bytes:
    return value.to_bytes(3, "big")


def type0(csid, timestamp, length, type_id, stream_id) -> bytes:
    field = min(timestamp, 0xFFFFFF)
    header = basic(0, csid) + u24(field) + u24(length) + bytes((type_id,))
    header += stream_id.to_bytes(4, "little")
    return header + (timestamp.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type1(csid, delta, length, type_id) -> bytes:
    field = min(delta, 0xFFFFFF)
    header = basic(1, csid) + u24(field) + u24(length) + bytes((type_id,))
    return header + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type2(csid, delta) -> bytes:
    field = min(delta, 0xFFFFFF)
    return basic(2, csid) + u24(field) + (delta.to_bytes(4, "big") if field == 0xFFFFFF else b"")


def type3(csid, extended: int | None = None) -> bytes:
    return basic(3, csid) + (extended.to_bytes(4, "big") if extended is not None else b"")


def set_chunk_size_message(size: int) -> bytes:
    return type0(2, 0, 4, 1, 0) + size.to_bytes(4, "big")


def feed_all(data: bytes, reader: ChunkReader | None = None) -> list[Message]:
    return (reader or ChunkReader()).feed(data)


def feed_bytewise(data: bytes) -> list[Message]:
    reader = ChunkReader()
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    return out


# --------------------------------------------------------------------------- header types


def test_type0_message():
    data = type0(3, 1234, 5, COMMAND, 0x01020304) + b"hello"
    assert feed_all(data) == [Message(3, COMMAND, 0x01020304, 1234, b"hello")]


def test_type1_type2_and_type3_headers_accumulate_deltas():
    data = (
        type0(4, 1000, 3, VIDEO, 1)
        + b"abc"
        + type1(4, 10, 2, AUDIO)
        + b"de"
        + type2(4, 5)
        + b"fg"
        + type3(4)  # new message: same length, type, stream, delta 5 reapplied
        + b"hi"
    )
    assert feed_all(data) == [
        Message(4, VIDEO, 1, 1000, b"abc"),
        Message(4, AUDIO, 1, 1010, b"de"),
        Message(4, AUDIO, 1, 1015, b"fg"),
        Message(4, AUDIO, 1, 1020, b"hi"),
    ]


def test_type3_after_type0_reapplies_the_type0_timestamp_as_delta():
    # FFmpeg's writer assumes the type-0 timestamp field is the delta a type-3 header repeats.
    data = type0(6, 40, 1, VIDEO, 1) + b"a" + type3(6) + b"b" + type3(6) + b"c"
    assert [m.timestamp for m in feed_all(data)] == [40, 80, 120]


def test_type0_may_go_backwards():
    data = type0(4, 500, 1, AUDIO, 1) + b"a" + type0(4, 480, 1, AUDIO, 1) + b"b"
    assert [m.timestamp for m in feed_all(data)] == [500, 480]


def test_delta_wraps_modulo_2_to_the_32():
    data = type0(4, 0xFFFFFFF0, 1, AUDIO, 1) + b"a" + type2(4, 0x20) + b"b"
    assert [m.timestamp for m in feed_all(data)] == [0xFFFFFFF0, 0x10]


def test_message_split_over_chunks_with_type3_continuations():
    payload = bytes(range(256)) + b"xyz"
    data = type0(4, 7, len(payload), VIDEO, 1) + payload[:128]
    data += type3(4) + payload[128:256] + type3(4) + payload[256:]
    assert feed_all(data) == [Message(4, VIDEO, 1, 7, payload)]


def test_empty_message():
    data = type0(4, 3, 0, AUDIO, 1) + type0(4, 4, 1, AUDIO, 1) + b"x"
    assert feed_all(data) == [Message(4, AUDIO, 1, 3, b""), Message(4, AUDIO, 1, 4, b"x")]


# --------------------------------------------------------------------------- chunk stream ids


@pytest.mark.parametrize(
    ("csid", "encoded"),
    [
        (2, b"\x02"),
        (63, b"\x3f"),
        (64, b"\x00\x00"),
        (319, b"\x00\xff"),
        (320, b"\x01\x00\x01"),
        (65599, b"\x01\xff\xff"),
    ],
)
def test_chunk_stream_id_forms(csid, encoded):
    header_tail = u24(9) + u24(2) + bytes((AUDIO,)) + (1).to_bytes(4, "little")
    assert feed_all(encoded + header_tail + b"ok") == [Message(csid, AUDIO, 1, 9, b"ok")]
    written = ChunkWriter().write(Message(csid, AUDIO, 1, 9, b"ok"))
    assert written == encoded + header_tail + b"ok"


def test_three_byte_form_for_a_small_id_is_the_same_chunk_stream():
    # csid 100 written in the 3-byte form, then continued in the 2-byte form.
    data = b"\x01\x24\x00" + u24(5) + u24(2) + bytes((AUDIO,)) + bytes(4) + b"ab"
    data += b"\xc0\x24" + b"cd"
    assert feed_all(data) == [Message(100, AUDIO, 0, 5, b"ab"), Message(100, AUDIO, 0, 10, b"cd")]


def test_interleaved_audio_and_video_mid_message():
    video = bytes(range(200)) + bytes(100)
    audio1, audio2 = b"A" * 50, b"B" * 60
    data = (
        type0(6, 100, len(video), VIDEO, 1)
        + video[:128]
        + type0(4, 90, len(audio1), AUDIO, 1)
        + audio1
        + type3(6)
        + video[128:256]
        + type1(4, 23, len(audio2), AUDIO)
        + audio2
        + type3(6)
        + video[256:]
    )
    assert feed_all(data) == [
        Message(4, AUDIO, 1, 90, audio1),
        Message(4, AUDIO, 1, 113, audio2),
        Message(6, VIDEO, 1, 100, video),
    ]
    assert feed_bytewise(data) == feed_all(data)


def test_audio_and_video_sharing_one_chunk_stream_like_obs():
    data = type0(4, 0, 2, VIDEO, 1) + b"v1" + type1(4, 0, 3, AUDIO) + b"a01"
    data += type1(4, 33, 2, VIDEO) + b"v2"
    assert feed_all(data) == [
        Message(4, VIDEO, 1, 0, b"v1"),
        Message(4, AUDIO, 1, 0, b"a01"),
        Message(4, VIDEO, 1, 33, b"v2"),
    ]


# --------------------------------------------------------------------------- extended timestamps

BIG = 0x01234567  # needs an extended timestamp


def three_chunk_payload(first_continuation_start: bytes = b"") -> bytes:
    rest = 300 - len(first_continuation_start)
    body = bytes(i % 251 for i in range(rest))
    return body[:128] + first_continuation_start + body[128:]


@pytest.mark.parametrize("repeated", [True, False])
def test_extended_type0_with_and_without_repetition_in_continuations(repeated):
    payload = three_chunk_payload()
    extended = BIG if repeated else None
    data = type0(4, BIG, 300, VIDEO, 1) + payload[:128]
    data += type3(4, extended) + payload[128:256] + type3(4, extended) + payload[256:]
    assert feed_all(data) == [Message(4, VIDEO, 1, BIG, payload)]
    assert feed_bytewise(data) == [Message(4, VIDEO, 1, BIG, payload)]


def test_unrepeated_extended_timestamp_with_payload_differing_in_last_byte():
    # The continuation payload starts with 3 of the 4 extended bytes: still payload.
    payload = three_chunk_payload(BIG.to_bytes(4, "big")[:3] + b"\x00")
    data = type0(4, BIG, 300, VIDEO, 1) + payload[:128]
    data += type3(4) + payload[128:256] + type3(4) + payload[256:]
    assert feed_all(data) == [Message(4, VIDEO, 1, BIG, payload)]
    assert feed_bytewise(data) == [Message(4, VIDEO, 1, BIG, payload)]


@pytest.mark.parametrize("repeated", [True, False])
def test_extended_delta_on_type1_and_type2(repeated):
    delta = 0x01000000
    extended = delta if repeated else None
    payload = bytes(200)
    data = type0(4, 10, 1, AUDIO, 1) + b"a"
    data += type1(4, delta, 200, VIDEO) + payload[:128] + type3(4, extended) + payload[128:]
    data += type2(4, delta + 5) + payload[:128] + type3(4, (delta + 5) if repeated else None)
    data += payload[128:]
    # A type-3 header starting a message reapplies the extended delta (and may repeat it).
    data += type3(4, delta + 5) + payload[:128] + type3(4, extended and delta + 5)
    data += payload[128:]
    assert [m.timestamp for m in feed_all(data)] == [
        10,
        10 + delta,
        10 + 2 * delta + 5,
        10 + 3 * delta + 10,
    ]
    assert [m.payload for m in feed_all(data)] == [b"a", payload, payload, payload]


def test_extended_timestamp_exactly_0xffffff():
    data = type0(4, 0xFFFFFF, 2, AUDIO, 1) + b"ab"
    assert data[1:4] == b"\xff\xff\xff"
    assert feed_all(data) == [Message(4, AUDIO, 1, 0xFFFFFF, b"ab")]


# --------------------------------------------------------------------------- control


def test_set_chunk_size_applies_to_the_very_next_chunk_in_the_same_feed():
    payload = bytes(range(250)) * 4  # 1000 bytes
    data = set_chunk_size_message(500)
    data += type0(4, 0, 1000, VIDEO, 1) + payload[:500] + type3(4) + payload[500:]
    data += set_chunk_size_message(300)
    data += type0(4, 1, 1000, VIDEO, 1) + payload[:300] + type3(4) + payload[300:600]
    data += type3(4) + payload[600:900] + type3(4) + payload[900:]
    reader = ChunkReader()
    messages = reader.feed(data)
    assert [(m.type_id, m.payload) for m in messages if m.type_id == VIDEO] == [
        (VIDEO, payload),
        (VIDEO, payload),
    ]
    assert [m.type_id for m in messages] == [1, VIDEO, 1, VIDEO]
    assert reader.chunk_size == 300
    assert feed_bytewise(data) == messages


def test_set_chunk_size_bounds():
    reader = ChunkReader(max_chunk_size=4096)
    with pytest.raises(ProtocolError, match="top bit"):
        reader.set_chunk_size(0x80000100)
    with pytest.raises(ProtocolError, match="not a positive"):
        reader.set_chunk_size(0)
    with pytest.raises(LimitExceeded, match="chunk size of 4097 bytes exceeds max_chunk_size=4096"):
        reader.set_chunk_size(4097)
    reader.set_chunk_size(4096)
    assert reader.chunk_size == 4096


def test_set_chunk_size_over_the_limit_in_the_stream_raises():
    with pytest.raises(LimitExceeded, match="max_chunk_size=65536"):
        ChunkReader().feed(set_chunk_size_message(1 << 20))


def test_abort_message_discards_the_partial_message():
    data = type0(4, 0, 300, VIDEO, 1) + bytes(128)
    data += type0(2, 0, 4, 2, 0) + (4).to_bytes(4, "big")  # Abort(chunk stream 4)
    data += type0(4, 50, 3, AUDIO, 1) + b"new"
    messages = feed_all(data)
    assert [m.type_id for m in messages] == [2, AUDIO]
    assert messages[1] == Message(4, AUDIO, 1, 50, b"new")


def test_abort_method():
    reader = ChunkReader()
    assert reader.feed(type0(4, 0, 300, VIDEO, 1) + bytes(128)) == []
    reader.abort(4)
    reader.abort(99)  # unknown chunk stream: nothing to do
    assert reader.feed(type2(4, 10) + bytes(128)) == []  # a new message with the old length
    assert reader.feed(type3(4) + bytes(128) + type3(4) + bytes(44)) == [
        Message(4, VIDEO, 1, 10, bytes(300))
    ]


# --------------------------------------------------------------------------- errors and limits


def test_type1_before_type0_is_a_protocol_error():
    with pytest.raises(ProtocolError, match=r"^chunk stream 5: type-1 header before any type-0"):
        feed_all(type1(5, 0, 1, AUDIO) + b"x")


def test_new_header_in_the_middle_of_a_message_is_a_protocol_error():
    data = type0(4, 0, 300, VIDEO, 1) + bytes(128) + type2(4, 1)
    with pytest.raises(ProtocolError, match="still has 172 of 300 bytes"):
        feed_all(data)


def test_message_size_limit():
    reader = ChunkReader(max_message_size=1000)
    with pytest.raises(LimitExceeded, match="message of 1001 bytes exceeds max_message_size=1000"):
        reader.feed(type0(4, 0, 1001, VIDEO, 1))


def test_default_message_size_limit_is_16_mib():
    reader = ChunkReader()
    reader.set_chunk_size(65536)
    # 16 MiB + 1 does not fit the 3-byte length field, so the largest encodable length passes.
    assert reader.feed(type0(4, 0, 0xFFFFFF, VIDEO, 1)) == []
    with pytest.raises(
        LimitExceeded, match="message of 20000 bytes exceeds max_message_size=19999"
    ):
        ChunkReader(max_message_size=19999).feed(type0(4, 0, 20000, VIDEO, 1))


def test_chunk_stream_count_limit():
    reader = ChunkReader(max_chunk_streams=3)
    reader.feed(b"".join(type0(csid, 0, 1, AUDIO, 1) + b"x" for csid in (2, 3, 4)))
    reader.feed(type0(3, 0, 1, AUDIO, 1) + b"x")  # known stream: fine
    with pytest.raises(LimitExceeded, match="max_chunk_streams=3"):
        reader.feed(type0(5, 0, 1, AUDIO, 1) + b"x")


def test_bytes_received_counts_everything_fed():
    reader = ChunkReader()
    reader.feed(type0(4, 0, 3, AUDIO, 1))
    reader.feed(b"ab")
    assert reader.bytes_received == 14
    reader.feed(b"c")
    assert reader.bytes_received == 15


def test_feed_accepts_bytearray_and_memoryview():
    data = type0(4, 0, 3, AUDIO, 1) + b"abc"
    assert ChunkReader().feed(bytearray(data)) == ChunkReader().feed(memoryview(data))


# --------------------------------------------------------------------------- writer


def formats(data: bytes) -> int:
    return data[0] >> 6


def test_writer_header_compression():
    writer = ChunkWriter()
    assert formats(writer.write(Message(4, AUDIO, 1, 0, b"x" * 10))) == 0
    assert formats(writer.write(Message(4, AUDIO, 1, 33, b"y" * 10))) == 2
    assert formats(writer.write(Message(4, AUDIO, 1, 66, b"z" * 10))) == 3
    assert formats(writer.write(Message(4, AUDIO, 1, 99, b"z" * 11))) == 1
    assert formats(writer.write(Message(4, VIDEO, 1, 132, b"z" * 11))) == 1
    assert formats(writer.write(Message(4, VIDEO, 1, 100, b"z" * 11))) == 0  # backwards
    assert formats(writer.write(Message(4, VIDEO, 2, 133, b"z" * 11))) == 0  # stream changed
    assert writer.write(Message(4, VIDEO, 2, 166, b"z" * 11)) == b"\x84" + u24(33) + b"z" * 11


def test_writer_repeats_extended_timestamp_in_continuations_by_default():
    payload = bytes(300)
    data = ChunkWriter().write(Message(4, VIDEO, 1, BIG, payload))
    ext = BIG.to_bytes(4, "big")
    assert data == (
        type0(4, BIG, 300, VIDEO, 1)
        + payload[:128]
        + b"\xc4"
        + ext
        + payload[128:256]
        + b"\xc4"
        + ext
        + payload[256:]
    )
    plain = ChunkWriter(repeat_extended_timestamps=False).write(Message(4, VIDEO, 1, BIG, payload))
    assert plain == type0(4, BIG, 300, VIDEO, 1) + payload[:128] + b"\xc4" + payload[128:256] + (
        b"\xc4" + payload[256:]
    )


def test_writer_chunk_size_is_settable():
    writer = ChunkWriter()
    writer.chunk_size = 4096
    data = writer.write(Message(3, COMMAND, 0, 0, bytes(4000)))
    assert len(data) == 12 + 4000


def test_writer_rejects_unencodable_messages():
    with pytest.raises(ValueError, match="chunk stream id 1"):
        ChunkWriter().write(Message(1, AUDIO, 0, 0, b""))
    with pytest.raises(ValueError, match="3-byte length"):
        ChunkWriter().write(Message(3, AUDIO, 0, 0, bytes(0x1000000)))


# --------------------------------------------------------------------------- properties

CSIDS = st.sampled_from([2, 3, 4, 5, 6, 63, 64, 65, 319, 320, 1000, 65599])
TIMESTAMPS = st.one_of(
    st.integers(0, 1000),
    st.integers(0xFFFFF0, 0x1000010),
    st.integers(0xFFFFFF00, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
)
MESSAGES = st.builds(
    Message,
    chunk_stream_id=CSIDS,
    type_id=st.sampled_from([3, 4, 5, 6, AUDIO, VIDEO, 15, 18, COMMAND, 22]),
    stream_id=st.sampled_from([0, 1, 2, 0xFFFFFFFF]),
    timestamp=TIMESTAMPS,
    payload=st.one_of(st.binary(max_size=300), st.binary(min_size=1000, max_size=4000)),
)


def stream_for(messages: list[Message], chunk_size: int) -> bytes:
    writer = ChunkWriter()
    data = b""
    if chunk_size != 128:
        data += writer.write(Message(2, 1, 0, 0, chunk_size.to_bytes(4, "big")))
        writer.chunk_size = chunk_size
    return data + b"".join(writer.write(message) for message in messages)


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(MESSAGES, max_size=25),
    chunk_size=st.sampled_from([1, 2, 3, 7, 128, 129, 1000, 4096, 65536]),
)
def test_writer_reader_round_trip(messages, chunk_size):
    data = stream_for(messages, chunk_size)
    received = [m for m in ChunkReader().feed(data) if m.type_id != 1]
    expected = [
        Message(m.chunk_stream_id, m.type_id, m.stream_id, m.timestamp, m.payload) for m in messages
    ]
    assert received == expected


@settings(max_examples=100, deadline=None)
@given(
    messages=st.lists(MESSAGES, min_size=1, max_size=10),
    chunk_size=st.sampled_from([16, 128, 500]),
    data=st.data(),
)
def test_any_split_of_the_stream_gives_the_same_messages(messages, chunk_size, data):
    stream = stream_for(messages, chunk_size)
    whole = ChunkReader().feed(stream)
    cuts = sorted(
        data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="split points")
    )
    reader = ChunkReader()
    pieces = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        pieces += reader.feed(stream[previous:cut])
        previous = cut
    assert pieces == whole
    assert reader.bytes_received == len(stream)


def test_one_byte_at_a_time_equals_all_at_once_on_a_long_mixed_stream():
    messages = [
        Message(4 if i % 3 else 6, AUDIO if i % 3 else VIDEO, 1, 0xFFFF00 + 40 * i, bytes(i * 37))
        for i in range(40)
    ]
    stream = stream_for(messages, 100)
    assert feed_bytewise(stream) == ChunkReader().feed(stream)
    assert [m.payload for m in ChunkReader().feed(stream)][1:] == [m.payload for m in messages]


def test_error_in_a_chunk_completed_across_feeds_is_the_protocol_error():
    reader = ChunkReader()
    data = set_chunk_size_message(1 << 20)
    reader.feed(data[:5])
    with pytest.raises(LimitExceeded, match="chunk size of 1048576 bytes"):
        reader.feed(data[5:])


# --------------------------------------------------------------------------- cut chunks and
# interleaving: the reader takes the continuation chunks that follow a message at once, and
# leaves anything else to its chunk-by-chunk loop; data may end inside a header or a payload.


def interleaved_stream(
    per_stream: dict[int, list[tuple[int, int, bytes]]],
    chunk_size: int,
    repeat_extended: bool,
    order: list[int],
) -> tuple[bytes, list[Message]]:
    """Chunks of several chunk streams' messages, interleaved as order says (chunk stream ids,
    one per chunk; a stream's own chunks stay in order). Returns the data and the messages in
    the order they complete.

    Messages are (delta, type id, payload): type-0 for the first on a stream, type-1 after.
    """
    chunks: dict[int, list[tuple[bytes, Message | None]]] = {}
    for csid, messages in per_stream.items():
        out = chunks[csid] = []
        timestamp = 0
        for index, (delta, type_id, payload) in enumerate(messages):
            if index == 0:
                timestamp = delta
                header = type0(csid, delta, len(payload), type_id, 1)
            else:
                timestamp = (timestamp + delta) & 0xFFFFFFFF
                header = type1(csid, delta, len(payload), type_id)
            extended = delta if delta >= 0xFFFFFF and repeat_extended else None
            pieces = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)]
            pieces = pieces or [b""]
            message = Message(csid, type_id, 1, timestamp, payload)
            for number, piece in enumerate(pieces):
                head = header if number == 0 else type3(csid, extended)
                out.append((head + piece, message if number == len(pieces) - 1 else None))
    data = bytearray()
    completed = []
    for csid in order:
        chunk, message = chunks[csid].pop(0)
        data += chunk
        if message is not None:
            completed.append(message)
    assert not any(chunks.values())
    return bytes(data), completed


# Extended deltas that a writer not repeating them cannot make look like a repetition: the 4
# bytes after a type-3 header are payload (never 0xFF here) and basic headers (never 0xFF for
# these chunk stream ids). 0xFEFEFEFF and 0xFEC4FEFF start like many payloads (half of their
# bytes are 0xFE; 0xC4 is chunk stream 4's type-3 header), so that the reader must often wait
# for the 4th byte, sometimes across more than one chunk, to know what it has.
DELTAS = st.one_of(
    st.integers(0, 1000),
    st.integers(0xFF000000, 0xFFFFFFFF),
    st.sampled_from([0xFEFEFEFF, 0xFEC4FEFF]),
)
PAYLOADS = st.binary(max_size=700).map(lambda raw: bytes(b if b < 0x80 else 0xFE for b in raw))
STREAM_MESSAGES = st.lists(
    st.tuples(DELTAS, st.sampled_from([AUDIO, VIDEO, 18]), PAYLOADS), min_size=1, max_size=4
)


@settings(max_examples=150, deadline=None)
@given(
    per_stream=st.dictionaries(st.sampled_from([3, 4, 6, 64, 320]), STREAM_MESSAGES, min_size=1),
    chunk_size=st.sampled_from([1, 2, 3, 7, 128, 300]),
    repeat_extended=st.booleans(),
    data=st.data(),
)
def test_interleaved_chunk_streams_split_anywhere(per_stream, chunk_size, repeat_extended, data):
    counts = {
        csid: sum(max(1, -(-len(p) // chunk_size)) for _, _, p in messages)
        for csid, messages in per_stream.items()
    }
    order = []
    while any(counts.values()):
        csid = data.draw(st.sampled_from(sorted(c for c, n in counts.items() if n)))
        counts[csid] -= 1
        order.append(csid)
    body, expected = interleaved_stream(per_stream, chunk_size, repeat_extended, order)
    # A last message, so that the reader never has to wait for what follows the last chunk to
    # know whether it repeats an extended timestamp.
    body += type0(2, 0, 1, COMMAND, 0) + b"."
    expected.append(Message(2, COMMAND, 0, 0, b"."))
    stream = (set_chunk_size_message(chunk_size) if chunk_size != 128 else b"") + body

    def received(messages):
        return [m for m in messages if m.type_id != 1]

    assert received(ChunkReader().feed(stream)) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
    reader = ChunkReader()
    pieces = []
    for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        pieces += reader.feed(stream[start:stop])
    assert received(pieces) == expected
    assert reader.buffered_bytes == 0
    if len(stream) <= 2000:
        assert received(feed_bytewise(stream)) == expected


def test_feed_tuples_gives_the_fields_of_feed():
    data = type0(4, 7, 300, VIDEO, 1) + bytes(128) + type0(3, 1, 2, COMMAND, 0) + b"hi"
    data += type3(4) + bytes(128) + type3(4) + bytes(44)
    expected = [Message(3, COMMAND, 0, 1, b"hi"), Message(4, VIDEO, 1, 7, bytes(300))]
    assert ChunkReader().feed(data) == expected
    assert ChunkReader().feed_tuples(data) == [
        (m.chunk_stream_id, m.type_id, m.stream_id, m.timestamp, m.payload) for m in expected
    ]


def test_payload_cut_over_several_feeds():
    payload = bytes(range(250))
    data = type0(4, 0, 250, VIDEO, 1) + payload[:128] + type3(4) + payload[128:]
    reader = ChunkReader()
    assert reader.feed(data[:20]) == []  # header and 8 bytes of the first chunk's payload
    assert reader.feed(data[20:100]) == []  # still inside the first chunk
    assert reader.feed(data[100:140]) == []  # rest of it, the type-3 header, 11 bytes
    assert reader.feed(data[140:]) == [Message(4, VIDEO, 1, 0, payload)]


def test_only_a_cut_header_is_buffered():
    data = type0(4, BIG, 300, VIDEO, 1) + bytes(128)
    reader = ChunkReader()
    reader.feed(data[:15])  # the 12-byte header, 3 of the 4 extended timestamp bytes
    assert reader.buffered_bytes == 15
    assert reader.feed(data[15:]) == []
    assert reader.buffered_bytes == 128  # the message's first chunk, copied out of the data
    assert reader.feed(type3(4, BIG)[:3]) == []  # a cut continuation header
    assert reader.buffered_bytes == 128 + 3


def test_abort_method_while_a_chunk_is_cut_skips_the_rest_of_that_chunk():
    reader = ChunkReader()
    assert reader.feed(type0(4, 0, 300, VIDEO, 1) + bytes(100)) == []
    reader.abort(4)
    # The 28 bytes left of that chunk are skipped, then parsing goes on.
    assert reader.feed(bytes(28) + type0(4, 5, 2, AUDIO, 1) + b"ok") == [
        Message(4, AUDIO, 1, 5, b"ok")
    ]


def test_cut_header_whose_chunk_ends_inside_the_buffered_bytes():
    # With chunk size 2 and an extended timestamp the writer does not repeat, whether the 4
    # bytes after a type-3 header are a repetition is only known once all 4 are there: fed one
    # byte at a time, the reader waits with a header, 2 payload bytes and the next header
    # buffered, and then parses two chunks from those bytes.
    timestamp = 0x0102C403  # its third byte is the type-3 header of chunk stream 4
    payload = bytes((0xAA, 0xBB, 0x01, 0x02, 0x01, 0xCC))
    data = set_chunk_size_message(2) + type0(4, timestamp, 6, VIDEO, 1) + payload[:2]
    data += type3(4) + payload[2:4] + type3(4) + payload[4:]
    expected = [Message(4, VIDEO, 1, timestamp, payload)]
    assert ChunkReader().feed(data)[1:] == expected
    assert feed_bytewise(data)[1:] == expected


# ------------------------------------------------------------------ total bytes held (#13)


def most_in_progress(per_stream: dict, chunk_size: int, order: list[int]) -> int:
    """The largest sum of the lengths of the messages started and not finished, chunk by chunk
    through order (a message counts from its first chunk to its last, both included)."""
    pending = {csid: [len(p) for _, _, p in messages] for csid, messages in per_stream.items()}
    left = {csid: 0 for csid in per_stream}  # chunks still to come of the current message
    current = {csid: 0 for csid in per_stream}
    most = 0
    for csid in order:
        if not left[csid]:
            length = pending[csid].pop(0)
            current[csid] = length
            left[csid] = max(1, -(-length // chunk_size))
        most = max(most, sum(current.values()))
        left[csid] -= 1
        if not left[csid]:
            current[csid] = 0
    return most


@settings(max_examples=150, deadline=None)
@given(
    per_stream=st.dictionaries(st.sampled_from([3, 4, 6, 64, 320]), STREAM_MESSAGES, min_size=1),
    chunk_size=st.sampled_from([1, 7, 128, 300]),
    cap=st.integers(0, 2500),
    data=st.data(),
)
def test_bytes_held_never_exceed_max_buffered(per_stream, chunk_size, cap, data):
    """Whatever the interleaving and however the data is split (one byte at a time included),
    what the reader holds between feeds stays within max_buffered plus one cut chunk header,
    and the reader refuses only when the messages in progress really pass it."""
    counts = {
        csid: sum(max(1, -(-len(p) // chunk_size)) for _, _, p in messages)
        for csid, messages in per_stream.items()
    }
    order = []
    while any(counts.values()):
        csid = data.draw(st.sampled_from(sorted(c for c, n in counts.items() if n)))
        counts[csid] -= 1
        order.append(csid)
    stream, completed = interleaved_stream(per_stream, chunk_size, True, order)
    # A last message, so that the last chunk's end is known without waiting for more.
    stream += type0(2, 0, 1, COMMAND, 0) + b"."
    completed.append(Message(2, COMMAND, 0, 0, b"."))
    reader = ChunkReader(max_message_size=1000, max_buffered=cap)
    reader.set_chunk_size(chunk_size)
    piece = data.draw(st.sampled_from([1, 2, 5, 64, 1000]))
    received = []
    try:
        for start in range(0, len(stream), piece):
            received += reader.feed(stream[start : start + piece])
            assert reader.buffered_bytes <= cap + 18
            assert reader.bytes_in_progress <= cap + 18
    except LimitExceeded as exc:
        assert f"max_buffered={cap}" in str(exc)
        # (The last message alone is 1 byte.)
        assert max(most_in_progress(per_stream, chunk_size, order), 1) > cap
    else:
        assert received == completed


def test_one_byte_at_a_time_a_partial_message_past_max_buffered_is_refused_at_its_header():
    reader = ChunkReader(max_buffered=1000)
    first = type0(4, 0, 600, VIDEO, 1) + bytes(128)
    second = type0(5, 0, 401, VIDEO, 1)
    for byte in first:
        reader.feed(bytes((byte,)))
    assert reader.bytes_in_progress == 600
    for byte in second[:-1]:
        reader.feed(bytes((byte,)))
        assert reader.buffered_bytes <= 600 + 18
    with pytest.raises(
        LimitExceeded, match=r"would make 1001 bytes .* exceeding max_buffered=1000"
    ):
        reader.feed(second[-1:])
