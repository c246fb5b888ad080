import contextlib
import math
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from periscope_ingest.rtmp import amf0
from periscope_ingest.rtmp.amf0 import UNDEFINED, EcmaArray
from periscope_ingest.rtmp.errors import ProtocolError


def s(text: str) -> bytes:
    """An AMF0 string without its marker (as used for object keys)."""
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def string(text: str) -> bytes:
    return b"\x02" + s(text)


def number(value: float) -> bytes:
    return b"\x00" + struct.pack(">d", value)


OBJECT_END = b"\x00\x00\x09"


# ----------------------------------------------------------------------------- exact bytes


def test_encode_scalars_exactly():
    assert amf0.encode(1.5) == b"\x00\x3f\xf8" + bytes(6)
    assert amf0.encode(3) == number(3.0)
    assert amf0.encode(True, False) == b"\x01\x01\x01\x00"
    assert amf0.encode("ab") == b"\x02\x00\x02ab"
    assert amf0.encode(None, UNDEFINED) == b"\x05\x06"


def test_encode_containers_exactly():
    assert amf0.encode({"a": 1}) == b"\x03" + s("a") + number(1) + OBJECT_END
    assert amf0.encode(EcmaArray(a=True)) == b"\x08\x00\x00\x00\x01" + s("a") + b"\x01\x01" + (
        OBJECT_END
    )
    assert amf0.encode(["x", None]) == b"\x0a\x00\x00\x00\x02" + string("x") + b"\x05"


def test_bool_is_not_encoded_as_number():
    assert amf0.decode_all(amf0.encode(True, 1)) == [True, 1.0]
    assert type(amf0.decode_all(amf0.encode(1))[0]) is float


def test_long_string_uses_marker_0x0c_and_round_trips():
    text = "é" * 40000  # 80000 bytes of UTF-8
    encoded = amf0.encode(text)
    assert encoded[0] == 0x0C
    assert int.from_bytes(encoded[1:5], "big") == 80000
    assert amf0.decode_all(encoded) == [text]
    # 65535 bytes still fit a plain string.
    assert amf0.encode("a" * 65535)[0] == 0x02
    assert amf0.encode("a" * 65536)[0] == 0x0C


def test_date_round_trip_and_bytes():
    when = datetime(2024, 5, 17, 12, 30, 1, 250000, tzinfo=UTC)
    encoded = amf0.encode(when)
    millis = (when - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1)
    assert encoded == b"\x0b" + struct.pack(">d", millis) + b"\x00\x00"
    assert amf0.decode_all(encoded) == [when]
    assert amf0.decode_all(encoded)[0].tzinfo is UTC


def test_date_in_another_zone_decodes_as_the_same_instant_in_utc():
    when = datetime(2024, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    decoded = amf0.decode_all(amf0.encode(when))[0]
    assert decoded == when
    assert decoded.hour == 7


def test_undefined_is_a_singleton_with_a_readable_repr():
    assert repr(UNDEFINED) == "UNDEFINED"
    assert type(UNDEFINED)() is UNDEFINED
    assert amf0.decode_all(b"\x06")[0] is UNDEFINED
    assert amf0.decode_all(b"\x0d")[0] is UNDEFINED  # the "unsupported" marker


def test_ecma_array_decodes_as_ecma_array():
    decoded = amf0.decode_all(amf0.encode(EcmaArray(width=1280.0)))[0]
    assert type(decoded) is EcmaArray
    assert decoded == {"width": 1280.0}


def test_decode_returns_the_next_offset():
    data = amf0.encode("a", 2.0)
    assert amf0.decode(data) == ("a", 4)
    assert amf0.decode(data, 4) == (2.0, 13)


# ----------------------------------------------------------------------------- real world


def test_obs_style_connect_command_built_by_hand():
    data = (
        string("connect")
        + number(1)
        + b"\x03"
        + s("app")
        + string("live")
        + s("type")
        + string("nonprivate")
        + s("flashVer")
        + string("FMLE/3.0 (compatible; FMSc/1.0)")
        + s("swfUrl")
        + string("rtmp://example.com/live")
        + s("tcUrl")
        + string("rtmp://example.com/live")
        + OBJECT_END
    )
    assert amf0.decode_all(data) == [
        "connect",
        1.0,
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": "rtmp://example.com/live",
            "tcUrl": "rtmp://example.com/live",
        },
    ]


def test_ffmpeg_style_connect_with_fourcc_list():
    data = (
        string("connect")
        + number(1)
        + b"\x03"
        + s("app")
        + string("live")
        + s("fourCcList")
        + b"\x0a\x00\x00\x00\x03"
        + string("av01")
        + string("vp09")
        + string("hvc1")
        + s("objectEncoding")
        + number(0)
        + OBJECT_END
    )
    assert amf0.decode_all(data)[2]["fourCcList"] == ["av01", "vp09", "hvc1"]


def test_ecma_array_with_wrong_count_is_read_up_to_object_end():
    data = b"\x08\x00\x00\x00\x00" + s("width") + number(1920) + s("height") + number(1080)
    data += OBJECT_END + string("after")
    assert amf0.decode_all(data) == [{"width": 1920.0, "height": 1080.0}, "after"]


def test_missing_object_end_at_end_of_data_is_tolerated():
    body = string("onMetaData") + b"\x08\x00\x00\x00\x01" + s("duration") + number(0)
    assert amf0.decode_all(body) == ["onMetaData", {"duration": 0.0}]
    assert amf0.decode_all(body + b"\x00\x00") == ["onMetaData", {"duration": 0.0}]


def test_empty_key_with_a_value_is_a_property_not_the_end():
    data = b"\x03" + s("") + number(5) + OBJECT_END
    assert amf0.decode_all(data) == [{"": 5.0}]


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("marker", "name"),
    [
        (0x04, "movieclip"),
        (0x07, "reference"),
        (0x0E, "recordset"),
        (0x0F, "xml-document"),
        (0x10, "typed-object"),
        (0x11, "avmplus"),
    ],
)
def test_unsupported_markers(marker, name):
    with pytest.raises(ProtocolError, match=f"marker 0x{marker:02x} \\({name}"):
        amf0.decode_all(string("x") + bytes((marker, 0, 1)))


def test_unknown_marker_and_stray_object_end():
    with pytest.raises(ProtocolError, match="unknown AMF0 type marker 0x42 at offset 0"):
        amf0.decode_all(b"\x42")
    with pytest.raises(ProtocolError, match="object-end marker at offset 0"):
        amf0.decode_all(b"\x09")


def nested_objects(depth: int) -> bytes:
    return (b"\x03" + s("k")) * (depth - 1) + b"\x03" + OBJECT_END * depth


def test_depth_limit():
    value = amf0.decode_all(nested_objects(32))[0]
    for _ in range(31):
        value = value["k"]
    assert value == {}
    with pytest.raises(ProtocolError, match="deeper than 32"):
        amf0.decode_all(nested_objects(33))
    with pytest.raises(ProtocolError, match="deeper than 32"):
        amf0.decode_all(b"\x0a\x00\x00\x00\x01" * 40)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x00\x01\x02", "number"),
        (b"\x02\x00\x05ab", "string"),
        (b"\x0c\x00\x00\x01\x00ab", "long string"),
        (b"\x0b\x00", "date"),
        (b"\x01", "boolean"),
        (b"\x03\x00\x01a", "value of property 'a'"),
    ],
)
def test_truncated_values(data, what):
    with pytest.raises(ProtocolError, match=f"AMF0 {what} at offset \\d+ is truncated"):
        amf0.decode_all(data)


def test_strict_array_count_larger_than_the_data_is_rejected_early():
    with pytest.raises(ProtocolError, match="claims 4294967295 elements"):
        amf0.decode_all(b"\x0a\xff\xff\xff\xff\x05")


def test_invalid_utf8_and_bad_dates():
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        amf0.decode_all(b"\x02\x00\x01\xff")
    with pytest.raises(ProtocolError, match="date at offset 0 is out of range"):
        amf0.decode_all(b"\x0b" + struct.pack(">d", math.inf) + b"\x00\x00")


def test_encode_errors():
    with pytest.raises(TypeError, match="cannot encode bytes"):
        amf0.encode(b"raw")
    with pytest.raises(TypeError, match="keys must be str"):
        amf0.encode({1: 2})
    with pytest.raises(ValueError, match="aware datetime"):
        amf0.encode(datetime(2024, 1, 1))


# ----------------------------------------------------------------------------- properties

SCALARS = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.just(UTC),
    ).map(lambda when: when.replace(microsecond=when.microsecond // 1000 * 1000)),
)
KEYS = st.text(max_size=12)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(KEYS, children, max_size=5),
        st.dictionaries(KEYS, children, max_size=5).map(EcmaArray),
    ),
    max_leaves=30,
)


def same(a: object, b: object) -> bool:
    """Equality that also checks dict-vs-EcmaArray and exact float types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=4))
def test_round_trip(values):
    decoded = amf0.decode_all(amf0.encode(*values))
    assert len(decoded) == len(values)
    for original, result in zip(values, decoded, strict=True):
        assert same(original, result)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_raises_protocol_error_or_decodes(data):
    with contextlib.suppress(ProtocolError):
        amf0.decode_all(data)


@pytest.mark.parametrize(
    "data",
    [
        amf0.encode(*([None] * 1025)),  # many top-level values
        amf0.encode([1.0] * 1100),  # a strict array
        amf0.encode({f"k{i}": i for i in range(1100)}),  # an object's properties
        amf0.encode(EcmaArray({f"k{i}": True for i in range(1100)})),
    ],
)
def test_a_message_with_too_many_values_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="more than 1024 values"):
        amf0.decode_all(data)


def test_the_value_limit_admits_what_encoders_send() -> None:
    metadata = EcmaArray({f"field{i}": float(i) for i in range(200)})
    assert amf0.decode_all(amf0.encode("onMetaData", metadata)) == ["onMetaData", metadata]
    assert len(amf0.decode_all(amf0.encode(*([None] * 1024)))) == 1024
