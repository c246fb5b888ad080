"""What a publish callback's 2xx answer names: any bytes at all, never an exception, and a
channel only when it is a valid channel name (tests/e2e/test_publish_auth.py: the whole path)."""

from __future__ import annotations

import json

from hypothesis import example, given
from hypothesis import strategies as st

from periscope_ingest.live.publish_auth import named_channel
from periscope_ingest.storage.layout import is_channel_name

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=6,
)


@given(st.binary(max_size=200) | _JSON.map(lambda v: json.dumps(v).encode()))
@example(b'{"channel": "alice"}')
@example(b'  {"channel": "../x"}')
@example(b"\xff{")
def test_any_answer_names_a_valid_channel_or_none(answer: bytes) -> None:
    named = named_channel(answer)
    assert named is None or named is False or is_channel_name(named)


@given(st.dictionaries(st.text(max_size=8), _JSON, max_size=3), st.text(max_size=70))
def test_an_object_names_its_channel_when_valid_and_fails_when_not(
    document: dict, channel: str
) -> None:
    document["channel"] = channel
    expected = channel if is_channel_name(channel) else False
    assert named_channel(json.dumps(document).encode()) == expected


def test_bodies_that_are_not_objects_name_nothing() -> None:
    for body in (b"", b"OK\n", b"<html>allowed</html>", b'"alice"', b"[1]", b'{"channel": null}'):
        assert named_channel(body) is None
