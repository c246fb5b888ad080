"""PyAV remuxing of our packets into MPEG-TS segment files. No decoding, no encoding.

Calls here block (file writes, interleaving): run them in a worker thread, never on the event loop.

PyAV gives no clean way to describe a copied stream from scratch (``add_stream("h264")`` opens an
encoder and produced broken files), so output streams are templated from a tiny in-memory FLV that
holds only the two sequence headers: the FLV demuxer turns those into streams carrying the right
extradata. The muxer then converts AVCC to Annex B and adds ADTS headers by itself.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction
from pathlib import Path

import av

from periscope_ingest.media.packets import TICKS_PER_SECOND, MediaPacket

_TIME_BASE = Fraction(1, TICKS_PER_SECOND)
# Timestamps can be slightly negative at the start of a stream (audio before the first video
# frame) and B-frames put DTS before PTS. Shift everything by a constant so the muxer never sees
# a negative value: it would otherwise shift each segment on its own and break continuity.
TIMESTAMP_OFFSET = 10 * TICKS_PER_SECOND


def _flv_tag(tag_type: int, body: bytes) -> bytes:
    header = bytes([tag_type]) + len(body).to_bytes(3, "big") + bytes(7)
    return header + body + struct.pack(">I", 11 + len(body))


def _sequence_header_flv(avcc: bytes | None, asc: bytes | None) -> bytes:
    flags = (4 if asc is not None else 0) | (1 if avcc is not None else 0)
    flv = b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + bytes(4)
    if avcc is not None:
        flv += _flv_tag(9, b"\x17\x00\x00\x00\x00" + avcc)
    if asc is not None:
        flv += _flv_tag(8, b"\xaf\x00" + asc)
    return flv


class StreamTemplates:
    """Input streams to template output streams from; one per publish, reused for every segment."""

    def __init__(self, avcc: bytes | None, asc: bytes | None) -> None:
        if avcc is None and asc is None:
            raise ValueError("a stream needs at least one track")
        self._container = av.open(io.BytesIO(_sequence_header_flv(avcc, asc)), format="flv")
        streams = {s.type: s for s in self._container.streams}
        self.video = streams.get("video") if avcc is not None else None
        self.audio = streams.get("audio") if asc is not None else None
        if (avcc is not None and self.video is None) or (asc is not None and self.audio is None):
            self._container.close()
            raise ValueError("FFmpeg did not accept the sequence headers")

    def close(self) -> None:
        self._container.close()


class TsSegmentMuxer:
    """Writes one MPEG-TS segment file; open a new one for each segment."""

    def __init__(self, templates: StreamTemplates, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._output = av.open(self._file, mode="w", format="mpegts")
        self._video = (
            self._output.add_stream_from_template(templates.video) if templates.video else None
        )
        self._audio = (
            self._output.add_stream_from_template(templates.audio) if templates.audio else None
        )

    def write(self, packet: MediaPacket) -> None:
        stream = self._video if packet.track == "video" else self._audio
        if stream is None:
            return
        out = av.Packet(packet.data)
        out.stream = stream
        out.time_base = _TIME_BASE
        out.dts = packet.dts + TIMESTAMP_OFFSET
        out.pts = packet.pts + TIMESTAMP_OFFSET
        out.duration = packet.duration
        out.is_keyframe = packet.keyframe
        self._output.mux(out)

    def close(self) -> int:
        """Flush and close; returns the file size in bytes."""
        try:
            self._output.close()
        finally:
            self._file.close()
        return Path(self._file.name).stat().st_size
