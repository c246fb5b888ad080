"""Independent checks of what the server publishes: our own m3u8 reader and PyAV's demuxer."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import av

FRAME_90K = 3000  # one 30 fps frame in 90 kHz ticks


@dataclass
class ListedSegment:
    uri: str
    duration: float
    discontinuity: bool
    program_date_time: str | None


@dataclass
class MediaPlaylist:
    version: int | None = None
    target_duration: int | None = None
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    ended: bool = False
    playlist_type: str | None = None
    segments: list[ListedSegment] = field(default_factory=list)


def parse_media_playlist(text: str) -> MediaPlaylist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", "a playlist starts with #EXTM3U"
    playlist = MediaPlaylist()
    duration = None
    discontinuity = False
    pdt = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-VERSION:"):
            playlist.version = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            playlist.target_duration = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            playlist.discontinuity_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PLAYLIST-TYPE:"):
            playlist.playlist_type = line.split(":", 1)[1]
        elif line == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = line.split(":", 1)[1]
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif not line.startswith("#"):
            assert duration is not None, f"segment {line} has no EXTINF"
            playlist.segments.append(ListedSegment(line, duration, discontinuity, pdt))
            duration, discontinuity, pdt = None, False, None
    return playlist


def check_part_durations(text: str) -> int:
    """The draft's rule for an LL-HLS playlist's parts (draft-pantos-hls-rfc8216bis 4.4.4.9):
    none longer than the PART-TARGET it declares, none shorter than 85 % of it but an
    INDEPENDENT part and a segment's last (the parts of the segment being written are all
    complete, none of them its last). Returns the PART-TARGET in ms."""
    declared = re.search(r"#EXT-X-PART-INF:PART-TARGET=([\d.]+)", text)
    assert declared, "an LL-HLS playlist declares its PART-TARGET"
    target = round(float(declared.group(1)) * 1000)
    parts: list[tuple[int, bool]] = []

    def check(listed: list[tuple[int, bool]]) -> None:
        for duration, independent in listed:
            assert 0 < duration <= target, (target, parts)
            assert independent or duration >= 0.85 * target, (target, parts)

    for line in text.splitlines():
        if m := re.match(r'#EXT-X-PART:DURATION=([\d.]+),URI="[^"]+"(,INDEPENDENT=YES)?', line):
            parts.append((round(float(m.group(1)) * 1000), bool(m.group(2))))
        elif line and not line.startswith("#"):  # a complete segment: its last part is exempt
            assert all(duration <= target for duration, _ in parts[-1:]), (target, parts)
            check(parts[:-1])
            parts = []
    check(parts)
    return target


def parse_master_playlist(text: str) -> list[tuple[dict[str, str], str]]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U"
    variants = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs: dict[str, str] = {}
            rest = line.split(":", 1)[1]
            while rest:
                key, rest = rest.split("=", 1)
                if rest.startswith('"'):
                    value, rest = rest[1:].split('"', 1)
                    rest = rest.lstrip(",")
                else:
                    value, _, rest = rest.partition(",")
                attrs[key] = value
            variants.append((attrs, lines[i + 1]))
    return variants


@dataclass
class SegmentMedia:
    video: list[tuple[int, int, bool]]  # (dts, pts, keyframe) in 90 kHz ticks, decode order
    audio: list[tuple[int, int]]  # (pts, duration)
    decoded_video_frames: int
    width: int | None
    height: int | None
    audio_rate: int | None
    audio_channels: int | None


def analyse_segment(data: bytes) -> SegmentMedia:
    """Demux every packet and decode every frame; any decode error raises."""
    container = av.open(io.BytesIO(data), format="mpegts")
    video_stream = next((s for s in container.streams if s.type == "video"), None)
    audio_stream = next((s for s in container.streams if s.type == "audio"), None)
    video: list[tuple[int, int, bool]] = []
    audio: list[tuple[int, int]] = []
    decoded = 0
    if video_stream is not None:
        video_stream.codec_context.options = {"err_detect": "explode"}
    for packet in container.demux():
        if packet.dts is None or packet.size == 0:
            continue
        if packet.stream is video_stream:
            video.append((packet.dts, packet.pts, packet.is_keyframe))
            decoded += len(packet.decode())
        elif packet.stream is audio_stream:
            audio.append((packet.pts, packet.duration or 0))
            packet.decode()
    if video_stream is not None:
        decoded += len(video_stream.codec_context.decode(None))
    width = video_stream.codec_context.width if video_stream else None
    height = video_stream.codec_context.height if video_stream else None
    rate = audio_stream.codec_context.sample_rate if audio_stream else None
    channels = audio_stream.codec_context.channels if audio_stream else None
    container.close()
    return SegmentMedia(video, audio, decoded, width, height, rate, channels)


def video_duration(media: SegmentMedia) -> int:
    """Presentation span of the segment's video in ticks: first to last PTS plus one frame."""
    pts = sorted(p for _, p, _ in media.video)
    return pts[-1] - pts[0] + FRAME_90K
