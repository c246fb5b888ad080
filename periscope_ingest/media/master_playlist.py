"""The multivariant ("master") HLS playlist (RFC 8216 4.3.4), and the bitrate it advertises.

One `Variant` per EXT-X-STREAM-INF entry; `render_master` checks every attribute before writing
it, so a bad codec string or resolution cannot produce a playlist players refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from periscope_ingest.media.playlist import PROTOCOL_VERSION, PlaylistError, check_line

__all__ = ["Variant", "render_master", "segment_bitrate"]


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF entry of a master playlist."""

    uri: str  # e.g. "index.m3u8"
    bandwidth: int  # peak segment bitrate, bits/s (RFC 8216 4.3.4.2: BANDWIDTH is the peak)
    average_bandwidth: int | None = None
    codecs: tuple[str, ...] = ()  # e.g. ("avc1.64001f", "mp4a.40.2")
    resolution: tuple[int, int] | None = None  # (width, height) in pixels
    frame_rate: float | None = None


def segment_bitrate(size_bytes: int, duration_ms: int) -> int:
    """Bits per second of a segment of `size_bytes` lasting `duration_ms`; 0 for no duration.

    Rounded up, because BANDWIDTH is an upper bound a client uses to pick a variant it can
    sustain: under-stating it by a bit is the wrong direction.
    """
    if size_bytes < 0 or duration_ms < 0:
        raise ValueError(f"size and duration must be >= 0, got {size_bytes} B, {duration_ms} ms")
    if duration_ms == 0:
        return 0
    return -(-size_bytes * 8 * 1000 // duration_ms)


def _stream_inf(variant: Variant) -> str:
    if variant.bandwidth <= 0:
        raise PlaylistError(f"variant {variant.uri!r}: BANDWIDTH must be > 0")
    attributes = [f"BANDWIDTH={variant.bandwidth}"]
    if variant.average_bandwidth is not None:
        if variant.average_bandwidth <= 0:
            raise PlaylistError(f"variant {variant.uri!r}: AVERAGE-BANDWIDTH must be > 0")
        attributes.append(f"AVERAGE-BANDWIDTH={variant.average_bandwidth}")
    if variant.codecs:
        for codec in variant.codecs:
            # The list is one quoted string separated by commas: neither may appear inside.
            if not codec or any(c in codec for c in ',"\r\n'):
                raise PlaylistError(f"variant {variant.uri!r}: bad codec string {codec!r}")
        attributes.append(f'CODECS="{",".join(variant.codecs)}"')
    if variant.resolution is not None:
        width, height = variant.resolution
        if width <= 0 or height <= 0:
            raise PlaylistError(f"variant {variant.uri!r}: bad resolution {width}x{height}")
        attributes.append(f"RESOLUTION={width}x{height}")
    if variant.frame_rate is not None:
        if not (math.isfinite(variant.frame_rate) and variant.frame_rate > 0):
            raise PlaylistError(f"variant {variant.uri!r}: bad frame rate {variant.frame_rate}")
        attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
    return "#EXT-X-STREAM-INF:" + ",".join(attributes)


def render_master(variants: list[Variant]) -> str:
    """The multivariant playlist listing `variants` in the given order."""
    if not variants:
        raise PlaylistError("a master playlist needs at least one variant")
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PROTOCOL_VERSION}",
        # Applies to every media playlist listed: all of them are cut at keyframes.
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for variant in variants:
        check_line(variant.uri, "variant URI")
        lines.append(_stream_inf(variant))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"
