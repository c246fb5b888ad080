"""Posters: one keyframe of a recorded segment, decoded, scaled and encoded as a JPEG.

This is the only place the server decodes video (measured: 13-26 ms per 720p keyframe). Only the
video stream is read, packets before the first keyframe are skipped without decoding, and the
keyframe is decoded on its own (the decoder is drained right after it), so the cost is one frame
whatever the segment's length or GOP structure.

fMP4 segments (``.m4s``: moof+mdat only) are read with their init segment prepended in memory, as
media/export_read.py does. Calls here block: run them in a worker thread, never on the event loop.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import ColorRange, Interpolation

from periscope_ingest.media.errors import error_text

# FFmpeg's -q:v scale for the JPEG quantiser (2 best .. 31 worst): 4 looks clean at a few tens
# of kB for 640x360. FF_QP2LAMBDA turns it into the encoder's global_quality.
JPEG_QUALITY = 4
_FF_QP2LAMBDA = 118
# Keyframes tried before giving up: a segment starts with one, later ones are a fallback for
# a first keyframe the decoder cannot show on its own (open GOP).
_MAX_KEYFRAMES = 3


class PosterError(Exception):
    """No poster can be made from this segment; the message says why (no video, unreadable)."""


def poster_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """At most ``max_width`` wide, the aspect ratio kept, both dimensions even (4:2:0 JPEG)."""
    if width <= 0 or height <= 0:
        raise PosterError(f"the video reports no picture size ({width}x{height})")
    if width > max_width:
        height = round(height * max_width / width)
        width = max_width
    return max(2, width - width % 2), max(2, height - height % 2)


def make_poster(segment: Path, init: Path | None, max_width: int = 640) -> bytes:
    """The first keyframe of ``segment`` as JPEG bytes (``init``: its fMP4 init segment)."""
    frame = _first_keyframe(segment, init)
    width, height = poster_size(frame.width, frame.height, max_width)
    return _encode_jpeg(frame, width, height)


def _open(segment: Path, init: Path | None) -> av.container.InputContainer:
    try:
        if segment.suffix == ".m4s":
            if init is None:
                raise PosterError(f"fMP4 segment {segment} has no init segment")
            data = init.read_bytes() + segment.read_bytes()
            return av.open(io.BytesIO(data), format="mp4")
        return av.open(str(segment), format="mpegts")
    except (OSError, av.FFmpegError) as exc:
        raise PosterError(f"cannot read segment {segment}: {error_text(exc)}") from exc


def _first_keyframe(segment: Path, init: Path | None) -> av.VideoFrame:
    with _open(segment, init) as container:
        if not container.streams.video:
            raise PosterError(f"segment {segment} holds no video")
        stream = container.streams.video[0]
        decoder = stream.codec_context
        tried = 0
        try:
            for packet in container.demux(stream):
                if not packet.size or not packet.is_keyframe:
                    continue  # the demuxer's end marker, or a frame that needs earlier ones
                # Drain right after the keyframe: the decoder shows it without waiting for the
                # frames that follow (B-frame reordering delay).
                frames = [*decoder.decode(packet), *decoder.decode(None)]
                if frames:
                    return frames[0]
                tried += 1
                if tried >= _MAX_KEYFRAMES:
                    break
                decoder.flush_buffers()  # leave the drained state for the next keyframe
        except av.FFmpegError as exc:
            raise PosterError(f"cannot decode a keyframe of {segment}: {error_text(exc)}") from exc
    raise PosterError(f"segment {segment} has no keyframe that decodes")


def _encode_jpeg(frame: av.VideoFrame, width: int, height: int) -> bytes:
    # Full-range 4:2:0, the JPEG convention; spelled as yuv420p + JPEG range rather than the
    # deprecated yuvj420p, which makes FFmpeg 8 warn on every scale.
    source_range = (
        ColorRange.JPEG if frame.color_range == ColorRange.JPEG.value else ColorRange.MPEG
    )
    try:
        picture = frame.reformat(
            width=width,
            height=height,
            format="yuv420p",
            interpolation=Interpolation.AREA,
            src_color_range=source_range,
            dst_color_range=ColorRange.JPEG,
        )
        picture.color_range = ColorRange.JPEG
        picture.pts = None
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = width, height
        encoder.pix_fmt = "yuv420p"
        encoder.color_range = ColorRange.JPEG
        encoder.time_base = Fraction(1, 1)
        encoder.qscale = True
        encoder.global_quality = JPEG_QUALITY * _FF_QP2LAMBDA
        packets = [*encoder.encode(picture), *encoder.encode(None)]
    except (av.FFmpegError, ValueError) as exc:
        raise PosterError(f"cannot encode the poster: {error_text(exc)}") from exc
    data = b"".join(bytes(p) for p in packets)
    if not data:
        raise PosterError("the JPEG encoder returned nothing")
    return data
