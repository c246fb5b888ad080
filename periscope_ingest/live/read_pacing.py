"""Read pacing: a publisher's connection read a few frames at a time (rtmp.read_interval_ms).

An encoder sends each frame as it is made (about 77 writes a second for 30 fps video with AAC),
and every read costs asyncio's and the kernel's per-read work whatever it carries. Two ways to
read less often, chosen by rtmp.read_pacing:

* ``lowat`` (default): the socket's SO_RCVLOWAT is set to about three quarters of what the
  stream sent per tick lately, so the kernel reports the socket readable only once that much is
  buffered: one read per tick or so, and no call at all per read. What bounds the wait is the
  tick: a connection not read during a whole tick gets its low-water mark back to one byte
  (the kernel then wakes the loop at once for what is buffered: a stream that slowed down, an
  unpublish, a ping), and it is raised again at the next tick that saw bytes. Measured against
  ``pause`` at 60 streams: see docs/benchmarks.md, seventh set.
* ``pause`` (the third set's): after each read, pause_reading until the next tick, then
  resume_reading; each is an epoll_ctl, per stream per tick. Also what ``lowat`` falls back to
  for a socket whose low-water mark cannot be set.

Either way the connection is paced only once its broadcast's first segment is listed (the
handshake and commands before it are answered at once), and the other pauses of reading (a
slow disk writer, a client that does not read) work as before: they pause the transport, which
a low-water mark does not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from periscope_ingest.config import Settings
    from periscope_ingest.live.rtmp_session import RtmpSession

# LL-HLS reads at least this many times per part: a part is complete only once the frame after
# its end is read, and pacing holds that frame back up to an interval (0.2 s parts: 50 ms).
READS_PER_PART = 4


def read_interval_s(settings: Settings) -> float:
    """The pacing interval in force: rtmp.read_interval_ms, at most a quarter of a part with
    LL-HLS. 100 ms by default: measured against 50 ms at 30 streams, 7 % less CPU and no later
    listing, since reads around a segment's cut are not paced (docs/benchmarks.md, tenth set)."""
    interval = settings.rtmp.read_interval_ms / 1000
    if settings.hls.low_latency:
        interval = min(interval, settings.hls.part_duration / READS_PER_PART)
    return interval


# The low-water mark is this share of the bytes per tick (smoothed): under it, a tick whose
# frames are a little smaller than the average still gets its read before the tick ends.
LOW_WATER_SHARE = 0.75
# And never above this: Linux caps the TCP window at the mark when the receive buffer is too
# small for twice the mark (tcp_set_rcvlowat); 32 KiB is far inside the default 128 KiB.
LOW_WATER_MAX = 32 * 1024
# A new mark is set only when it differs from the one in force by more than this share: one
# setsockopt per real change of bitrate, not per tick.
LOW_WATER_SLACK = 0.25


class LowWater:
    """One connection paced by its socket's SO_RCVLOWAT."""

    __slots__ = ("_sock", "changes", "got", "mark", "rate", "target", "ticks")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.got = 0  # bytes read since the last tick that saw bytes
        self.ticks = 0  # ticks since then
        self.rate = 0.0  # bytes per tick, smoothed
        self.target = 1  # the mark the rate asks for
        self.mark = 1  # the mark in force (1, the kernel's default, after a quiet tick)
        self.changes = 0  # setsockopt calls: what a bench reads to see the pacing's own cost

    def set_mark(self, mark: int) -> None:
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        self.mark = mark
        self.changes += 1

    def read(self, size: int) -> None:
        self.got += size
        if self.mark == 1 and self.target > 1:
            # The read a quiet tick let through has taken the backlog: paced again from here.
            self.set_mark(self.target)

    def tick(self) -> None:
        self.ticks += 1
        if not self.got:
            # Nothing read for a whole tick: what is buffered (less than the mark) is read now.
            if self.mark > 1:
                self.set_mark(1)
            return
        per_tick = self.got / self.ticks  # a read after quiet ticks holds all of theirs
        self.got = self.ticks = 0
        self.rate = per_tick if not self.rate else 0.75 * self.rate + 0.25 * per_tick
        self.target = max(1, min(LOW_WATER_MAX, int(self.rate * LOW_WATER_SHARE)))
        if self.mark > 1 and abs(self.target - self.mark) <= LOW_WATER_SLACK * self.mark:
            return
        self.set_mark(self.target)


def low_water_for(transport: asyncio.BaseTransport) -> LowWater | None:
    """A LowWater for the transport's socket, or None when its mark cannot be set (no socket,
    not TCP, a platform without SO_RCVLOWAT on poll)."""
    sock = transport.get_extra_info("socket")
    option = getattr(socket, "SO_RCVLOWAT", None)
    if sock is None or option is None:
        return None
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, 1)
    except (OSError, AttributeError):
        return None
    return LowWater(sock)


class ReadPacer:
    """The one timer of every paced connection (RtmpServer holds it)."""

    def __init__(self, interval: float, mode: str) -> None:
        self.interval = interval
        self._lowat = mode == "lowat"
        self._marked: dict[RtmpSession, LowWater] = {}  # paced by their low-water mark
        self._resting: list[RtmpSession] = []  # paused until the next tick (``pause``)
        self._tick: asyncio.TimerHandle | None = None

    def after_read(self, session: RtmpSession, transport: asyncio.Transport, size: int) -> None:
        """A paced connection has read size bytes."""
        marked = self._marked.get(session)
        if marked is None and self._lowat and not session.pacing_tried:
            session.pacing_tried = True
            marked = low_water_for(transport)
            if marked is not None:
                self._marked[session] = marked
                self._arm()
        if marked is not None:
            marked.read(size)
            return
        self._rest(session, transport)

    def unpaced(self, session: RtmpSession) -> None:
        """Read as soon as data arrives, for now: the keyframe that closes a segment is due
        (live/next_cut.py). A low-water mark goes back to one byte; the first paced read after
        puts it back up (LowWater.read)."""
        marked = self._marked.get(session)
        if marked is not None and marked.mark > 1:
            with contextlib.suppress(OSError):
                marked.set_mark(1)

    def _rest(self, session: RtmpSession, transport: asyncio.Transport) -> None:
        if session.resting:
            return
        session.resting = True
        transport.pause_reading()
        self._resting.append(session)
        self._arm()

    def forget(self, session: RtmpSession) -> None:
        """The connection is gone."""
        self._marked.pop(session, None)

    def low_water(self, session: RtmpSession) -> LowWater | None:
        return self._marked.get(session)

    def _arm(self) -> None:
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self.interval, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        resting, self._resting = self._resting, []
        for session in resting:
            session.wake()
        for marked in self._marked.values():
            # A socket closed under us: connection_lost forgets it.
            with contextlib.suppress(OSError):
                marked.tick()
        if self._marked or self._resting:
            self._arm()

    def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
