"""When the keyframe that closes the open segment is expected: read pacing stops around it.

rtmp.read_interval_ms paces a publisher's reads (live/rtmp_session.py), which holds a frame back
up to one interval. For most frames that costs nothing a viewer sees, but the keyframe that
closes a segment is listing delay: the segment is listed once it is read. Encoders keep a fixed
keyframe interval, so the next keyframe is expected one GOP (the segment just closed) after the
last, in DTS, which follows the encoder's clock; reads are not paced from one interval before
that to one interval after: a few reads more per segment, none at all for a stream whose
keyframes come elsewhere.
"""

from __future__ import annotations

_NEVER = 1 << 62


class NextCutWindow:
    __slots__ = ("_from", "_to", "_window", "last_dts")

    def __init__(self, window_ticks: int) -> None:
        self._window = window_ticks  # 90 kHz ticks: the read interval (0: reads never paced)
        self._from = _NEVER
        self._to = _NEVER
        self.last_dts = 0  # of the latest frame read (the pipeline sets it)

    def segment_cut(self, dts: int, closed_duration: int) -> None:
        """A segment was closed by the frame at ``dts`` after ``closed_duration`` ticks."""
        expected = dts + closed_duration
        self._from = expected - self._window
        self._to = expected + self._window

    def due_soon(self) -> bool:
        """The latest frame read is within a read interval of the expected cut: the session
        should read as soon as data arrives."""
        return self._from <= self.last_dts <= self._to
