"""Exceptions raised by the sans-IO RTMP layer.

Every message is written for the person reading a log line: it says what arrived and what was
expected, so that a misbehaving encoder can be identified without a packet capture.
"""


class RtmpError(Exception):
    """Base class for everything the rtmp package raises on purpose."""


class ProtocolError(RtmpError):
    """The peer sent bytes that do not form valid RTMP; the connection cannot continue."""


class LimitExceeded(ProtocolError):
    """A size or count chosen by the client went over one of our configured limits.

    A subclass of ProtocolError because the connection is just as unusable afterwards, but kept
    distinct so that operators can tell hostile or misconfigured clients from broken ones.
    """


# Client-chosen text (command names, keys) quoted in an error is cut to this many characters.
SHOWN_CHARS = 40


def shown(value: object) -> str:
    """A client-chosen value as an error message quotes it: repr() (control characters escaped,
    so a log line stays one line) and at most SHOWN_CHARS characters of it (a 64 KiB command
    name must not become a 64 KiB log line)."""
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return repr(value[:SHOWN_CHARS]) + "…"
    return repr(value)[: SHOWN_CHARS + 2]
