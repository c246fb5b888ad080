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
