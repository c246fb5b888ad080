"""One 64-bit millisecond timeline for all tracks of one publish. Pure: no I/O, no clock.

RTMP message timestamps are 32-bit milliseconds chosen by the encoder. They wrap
after 49.7 days, they restart when an encoder restarts its clock (OBS reconnect,
a hardware encoder reboot), they may pause, and some muxers emit duplicates
(GStreamer's flvmux clamps a negative first DTS to 0, so two frames share DTS 0).
A segmenter and an MPEG-TS/fMP4 muxer need DTS that strictly increases per track
and tracks that stay in sync. ``Timeline`` provides both:

- Per track, a 32-bit value is unwrapped to the 64-bit value closest to that
  track's previous one, so wrap-around is invisible.
- The first timestamp seen on any track is the origin (output 0). Every track is
  placed with the same offset, which keeps A/V sync exactly as the encoder meant
  it. A track that starts slightly before the origin (audio 20 ms ahead of the
  first video frame) therefore gets small negative outputs: that is deliberate,
  clamping it would shift that track against the others.
- A sample equal to or at most ``backwards_tolerance_ms`` behind its track's last
  output becomes last + 1 ms (duplicates and jitter never stop a stream).
- A larger step backwards, or a step forward beyond ``max_gap_ms`` past the
  largest output on any track, is a clock jump: the offset is moved so that this
  sample lands at (largest output so far + 1) and the result is flagged
  ``discontinuity=True`` so the segmenter cuts there.
- After a jump on one track the other tracks are expected to jump too (the
  encoder restarted one clock for all). Their next samples are tried with both
  their old offset and the new one; whichever continues the track more smoothly
  wins. So a track still in the old time base (audio that had not jumped yet)
  keeps flowing, and adopts the new offset without a second discontinuity as
  soon as its own timestamps jump. Only one discontinuity is reported per jump.
- Unless the jump brings the track back to where the other tracks are: then it was
  this track that had run ahead (one bogus timestamp, already placed), and the others
  take the same step at once, since no jump of theirs is coming to resync them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Placed", "Timeline", "rebase_pts"]

_WRAP = 1 << 32
_HALF_WRAP = 1 << 31


@dataclass(slots=True)  # one per media message: not frozen, for speed (see flv.VideoFrame)
class Placed:
    dts: int  # ms on our timeline (may be slightly negative for a track starting before the origin)
    discontinuity: bool  # True when this sample follows a clock jump: cut and mark a discontinuity


@dataclass(slots=True)
class _Track:
    last_unwrapped: int  # the track's last timestamp, unwrapped, in its own time base
    last_out: int  # the track's last output dts
    offset: int  # output = unwrapped timestamp + offset
    epoch: int  # the jump generation whose offset this track uses


def _unwrap(timestamp: int, reference: int) -> int:
    """The value congruent to timestamp mod 2**32 that is closest to reference."""
    return timestamp + ((reference - timestamp + _HALF_WRAP) // _WRAP) * _WRAP


def rebase_pts(dts: int, composition_offset: int) -> int:
    """PTS for a sample: dts + composition_offset, but never before dts.

    FLV's composition time is signed, and some encoders send negative values.
    A frame cannot be presented before it is decoded, and MPEG-TS forbids
    PTS < DTS (decoders and validators reject or drop such packets), so a
    negative offset that would cross the DTS is clamped to PTS = DTS.
    """
    return dts + composition_offset if composition_offset > 0 else dts


class Timeline:
    """Places the 32-bit ms timestamps of every track of one publish on one 64-bit ms timeline."""

    __slots__ = ("_epoch", "_epoch_offset", "_max_gap", "_max_out", "_tolerance", "_tracks")

    def __init__(self, max_gap_ms: int = 10_000, backwards_tolerance_ms: int = 1_000) -> None:
        if max_gap_ms <= 0:
            raise ValueError(f"max_gap_ms must be positive, got {max_gap_ms}")
        if backwards_tolerance_ms < 0:
            raise ValueError(f"backwards_tolerance_ms must be >= 0, got {backwards_tolerance_ms}")
        self._max_gap = max_gap_ms
        self._tolerance = backwards_tolerance_ms
        self._tracks: dict[str, _Track] = {}
        self._epoch = 0
        self._epoch_offset = 0  # offset established by the origin or the latest jump
        self._max_out: int | None = None  # largest output so far on any track

    def place(self, track: str, timestamp: int) -> Placed:
        """Place one sample of ``track`` with RTMP message timestamp ``timestamp`` (0..2**32-1)."""
        if not 0 <= timestamp < _WRAP:
            raise ValueError(f"RTMP timestamp {timestamp} outside 0..2**32-1")
        if self._max_out is None:
            # The very first sample of the publish is the origin.
            self._epoch_offset = -timestamp
            self._tracks[track] = _Track(timestamp, 0, -timestamp, self._epoch)
            self._max_out = 0
            return Placed(0, False)
        top = self._max_out
        state = self._tracks.get(track)
        if state is None:
            return self._first_of_track(track, timestamp, top)

        unwrapped = _unwrap(timestamp, state.last_unwrapped)
        last = state.last_out
        if state.epoch == self._epoch:
            # Nearly every sample: one candidate, the track's own offset (the loop below with
            # that one candidate, without building it).
            out = unwrapped + state.offset
            if last - self._tolerance <= out <= top + self._max_gap:
                out = max(out, last + 1)
                state.last_unwrapped = unwrapped
                state.last_out = out
                self._max_out = max(top, out)
                return Placed(out, False)
        # Candidates: the track's own offset, and the latest jump's offset if the
        # track has not adopted it yet. Keep those that continue the track.
        candidates = [state.offset]
        if state.epoch != self._epoch:
            candidates.append(self._epoch_offset)
        best: tuple[int, int] | None = None  # (distance from last output, offset)
        for offset in candidates:
            out = unwrapped + offset
            if last - self._tolerance <= out <= top + self._max_gap:
                distance = abs(out - last)
                if best is None or distance < best[0]:
                    best = (distance, offset)

        if best is not None:
            offset = best[1]
            if offset == self._epoch_offset:
                state.epoch = self._epoch
            state.offset = offset
            # Duplicates and small backwards jitter: keep DTS strictly increasing.
            out = max(unwrapped + offset, last + 1)
            discontinuity = False
        else:
            # A clock jump: continue right after everything placed so far, and
            # let the other tracks follow with the same new offset.
            out = top + 1
            at_old_offset = unwrapped + state.offset
            self._epoch += 1
            self._epoch_offset = out - unwrapped
            state.offset = self._epoch_offset
            state.epoch = self._epoch
            discontinuity = True
            if self._with_the_others(track, at_old_offset):
                # Back where the other tracks are: this track ran ahead of them (a bogus
                # timestamp) and that is placed already, so it must go on after it. The
                # others take the same step now, or they would stay behind it for good: a
                # jump of theirs that would bring them along is not coming.
                step = out - at_old_offset
                for other, other_state in self._tracks.items():
                    if other != track:
                        other_state.offset += step
                        other_state.epoch = self._epoch
        state.last_unwrapped = unwrapped
        state.last_out = out
        self._max_out = max(top, out)
        return Placed(out, discontinuity)

    def _with_the_others(self, track: str, out: int) -> bool:
        """Whether ``out`` on ``track`` is within the jitter tolerance of the latest output
        of the other tracks (there are some)."""
        others = [state.last_out for name, state in self._tracks.items() if name != track]
        return bool(others) and abs(out - max(others)) <= self._tolerance

    def _first_of_track(self, track: str, timestamp: int, top: int) -> Placed:
        # Unwrap against where the current time base is now, so a track that
        # first appears after a wrap lands next to the others.
        unwrapped = _unwrap(timestamp, top - self._epoch_offset)
        out = unwrapped + self._epoch_offset
        offset = self._epoch_offset
        if abs(out - top) > self._max_gap:
            # A track on a clock of its own: sync with the others is unknowable,
            # so start it right after them instead of far away. Nothing the
            # other tracks carry is disrupted, so this is not a discontinuity.
            out = top + 1
            offset = out - unwrapped
        self._tracks[track] = _Track(unwrapped, out, offset, self._epoch)
        self._max_out = max(top, out)
        return Placed(out, False)
