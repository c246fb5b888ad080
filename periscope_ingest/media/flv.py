"""FLV tag bodies (= RTMP audio/video message payloads) to media items.

Pure functions, no I/O, no timestamps (those travel in the RTMP message header;
see timeline.py). Covers legacy FLV 10.1 (Annex E) AVC/AAC and Enhanced RTMP
v1/v2 (veovera): FourCC codecs, CodedFramesX, Metadata, ModEx and multitrack.

Anything we cannot package becomes an ``Unsupported`` item so the caller can
log one clear line and carry on; only bytes that contradict the format (a
header cut short, a track size running past the payload) raise ``FlvError``.
A malformed codec configuration record raises ``CodecConfigError`` from
avc.py/aac.py unchanged, so the log says exactly which record was bad.
Enhanced audio SequenceEnd and MultichannelConfig yield no item at all: there is
nothing to package and nothing to warn about.
"""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.media.aac import AacConfig, parse_asc
from periscope_ingest.media.avc import AvcConfig, parse_avcc

__all__ = [
    "AudioFrame",
    "AudioItem",
    "AudioSequenceStart",
    "FlvError",
    "Unsupported",
    "VideoFrame",
    "VideoItem",
    "VideoSequenceEnd",
    "VideoSequenceStart",
    "parse_audio",
    "parse_video",
]


class FlvError(ValueError):
    """An FLV audio/video tag body is malformed (the message says what and where)."""


@dataclass(frozen=True, slots=True)
class VideoSequenceStart:
    codec: str  # FourCC: "avc1", "hvc1", "av01", "vp09"
    track_id: int
    config: AvcConfig | None  # parsed for avc1 only
    record: bytes  # the decoder configuration record as sent


# VideoFrame and AudioFrame, one per media message, are not frozen (like the RTMP media events,
# rtmp/connection_events.py): a frozen dataclass's __init__ sets each field through
# object.__setattr__, 0.63 µs against 0.17 for five fields. Treat them as read-only all the same.
@dataclass(slots=True)
class VideoFrame:
    codec: str
    track_id: int
    keyframe: bool
    composition_offset: int  # ms, signed (pts - dts); 0 for CodedFramesX, AV1, VP9
    # Length-prefixed NAL units (or OBUs / VP9 frame) as sent; legacy AVC frames are a view
    # into the message's payload.
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class VideoSequenceEnd:
    codec: str
    track_id: int


@dataclass(frozen=True, slots=True)
class AudioSequenceStart:
    codec: str  # "mp4a" for AAC; "Opus", "fLaC", "ac-3", "ec-3", ".mp3"
    track_id: int
    config: AacConfig | None  # parsed for mp4a only
    record: bytes


@dataclass(slots=True)
class AudioFrame:
    codec: str
    track_id: int
    data: bytes  # raw AAC frame (no ADTS) for mp4a


@dataclass(frozen=True, slots=True)
class Unsupported:
    kind: str  # "audio" | "video"
    codec: str
    detail: str


VideoItem = VideoSequenceStart | VideoFrame | VideoSequenceEnd | Unsupported
AudioItem = AudioSequenceStart | AudioFrame | Unsupported

# --- legacy FLV constants (FLV 10.1 Annex E) ---------------------------------

_LEGACY_VIDEO_CODECS = {
    1: "jpeg",
    2: "sorenson-h263",
    3: "screen-video",
    4: "vp6",
    5: "vp6-alpha",
    6: "screen-video-v2",
    7: "avc1",
    # Not in any Adobe spec: Chinese CDNs and some OBS forks push HEVC with
    # codec id 12 and the AVC packet layout. We accept it as hvc1.
    12: "hvc1",
}
_LEGACY_AVC_LIKE = frozenset({7, 12})
_LEGACY_AUDIO_CODECS = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm-le",
    4: "nellymoser-16k",
    5: "nellymoser-8k",
    6: "nellymoser",
    7: "g711-alaw",
    8: "g711-mulaw",
    10: "mp4a",
    11: "speex",
    14: "mp3-8k",
    15: "device-specific",
}
_SOUND_FORMAT_AAC = 10
_SOUND_FORMAT_EX_HEADER = 9

_FRAME_KEY = 1
_FRAME_GENERATED_KEY = 4
_FRAME_COMMAND = 5

# --- Enhanced RTMP constants ---------------------------------------------------

_PKT_SEQUENCE_START = 0
_PKT_CODED_FRAMES = 1
_PKT_SEQUENCE_END = 2
_VPKT_CODED_FRAMES_X = 3
_VPKT_METADATA = 4
_VPKT_MPEG2TS_SEQUENCE_START = 5
_VPKT_MULTITRACK = 6
_APKT_MULTICHANNEL_CONFIG = 4
_APKT_MULTITRACK = 5
_PKT_MODEX = 7

_VIDEO_PACKET_NAMES = {
    0: "SequenceStart",
    1: "CodedFrames",
    2: "SequenceEnd",
    3: "CodedFramesX",
    4: "Metadata",
    5: "MPEG2TSSequenceStart",
    6: "Multitrack",
    7: "ModEx",
}
_AUDIO_PACKET_NAMES = {
    0: "SequenceStart",
    1: "CodedFrames",
    2: "SequenceEnd",
    4: "MultichannelConfig",
    5: "Multitrack",
    7: "ModEx",
}

_MULTITRACK_ONE = 0
_MULTITRACK_MANY = 1
_MULTITRACK_MANY_CODECS = 2

_VIDEO_FOURCCS = frozenset({"avc1", "hvc1", "av01", "vp09"})
# Only these carry an SI24 composition time in CodedFrames (AV1/VP9 have no reordering field).
_VIDEO_FOURCCS_WITH_CTS = frozenset({"avc1", "hvc1"})
_AUDIO_FOURCCS = frozenset({"mp4a", "Opus", "fLaC", "ac-3", "ec-3", ".mp3"})


# --- byte helpers ---------------------------------------------------------------


def _si24(data: bytes, pos: int, what: str) -> int:
    if pos + 3 > len(data):
        raise FlvError(
            f"{what}: SI24 composition time truncated at byte {pos} (payload is {len(data)} bytes)"
        )
    return int.from_bytes(data[pos : pos + 3], "big", signed=True)


def _fourcc(data: bytes, pos: int, what: str) -> str:
    if pos + 4 > len(data):
        raise FlvError(f"{what}: FourCC truncated at byte {pos} (payload is {len(data)} bytes)")
    # latin-1 maps every byte, so an unknown or garbage FourCC still logs readably.
    return bytes(data[pos : pos + 4]).decode("latin-1")


def _need(data: bytes, pos: int, count: int, what: str) -> None:
    if pos + count > len(data):
        raise FlvError(
            f"{what} truncated: needed {count} byte(s) at byte {pos}, payload is {len(data)} bytes"
        )


def _skip_modex(data: bytes, pos: int, kind: str) -> tuple[int, int]:
    """Parse one ModEx block at pos; return (next packet type, position after it).

    The only ModEx type defined so far is TimestampOffsetNano (sub-millisecond
    presentation offset). Our timeline is in whole ms, so it is parsed and dropped.
    """
    what = f"{kind} ModEx"
    _need(data, pos, 1, what + " size")
    size = data[pos] + 1
    pos += 1
    if size == 256:
        _need(data, pos, 2, what + " extended size")
        size = int.from_bytes(data[pos : pos + 2], "big") + 1
        pos += 2
    _need(data, pos, size + 1, what + " data")
    pos += size
    # High nibble: ModExType (0 = TimestampOffsetNano); low nibble: next packet type.
    next_type = data[pos] & 0x0F
    return next_type, pos + 1


@dataclass(slots=True)
class _ExHeader:
    packet_type: int
    multitrack_type: int | None  # None when not multitrack
    fourcc: str | None  # shared FourCC (None for ManyTracksManyCodecs)
    pos: int  # where the body starts


def _modex_chain(data: bytes, packet_type: int, kind: str) -> tuple[int, int]:
    """Skip any ModEx blocks after the first byte; return (packet type, position)."""
    pos = 1
    while packet_type == _PKT_MODEX:
        packet_type, pos = _skip_modex(data, pos, kind)
    return packet_type, pos


def _ex_header(
    data: bytes, packet_type: int, pos: int, kind: str, multitrack_type_id: int
) -> _ExHeader:
    """Read the optional multitrack byte and the FourCC(s) that follow the ModEx chain."""
    if packet_type == multitrack_type_id:
        _need(data, pos, 1, f"{kind} multitrack header")
        multitrack_type = data[pos] >> 4
        packet_type = data[pos] & 0x0F
        pos += 1
        if multitrack_type not in (_MULTITRACK_ONE, _MULTITRACK_MANY, _MULTITRACK_MANY_CODECS):
            raise FlvError(f"{kind} multitrack type {multitrack_type} is not defined")
        if packet_type in (multitrack_type_id, _PKT_MODEX):
            # The spec forbids nesting Multitrack or ModEx inside a multitrack header.
            raise FlvError(f"{kind} multitrack header nests packet type {packet_type}")
        fourcc = None
        if multitrack_type != _MULTITRACK_MANY_CODECS:
            fourcc = _fourcc(data, pos, f"{kind} multitrack header")
            pos += 4
        return _ExHeader(packet_type, multitrack_type, fourcc, pos)
    fourcc = _fourcc(data, pos, f"{kind} enhanced header")
    return _ExHeader(packet_type, None, fourcc, pos + 4)


def _tracks(data: bytes, header: _ExHeader, kind: str) -> list[tuple[str, int, bytes]]:
    """Split an enhanced body into (fourcc, track id, body) per track."""
    if header.multitrack_type is None:
        assert header.fourcc is not None
        return [(header.fourcc, 0, data[header.pos :])]
    pos = header.pos
    if header.multitrack_type == _MULTITRACK_ONE:
        assert header.fourcc is not None
        _need(data, pos, 1, f"{kind} OneTrack track id")
        return [(header.fourcc, data[pos], data[pos + 1 :])]
    tracks: list[tuple[str, int, bytes]] = []
    while pos < len(data):
        if header.multitrack_type == _MULTITRACK_MANY_CODECS:
            fourcc = _fourcc(data, pos, f"{kind} track #{len(tracks)}")
            pos += 4
        else:
            assert header.fourcc is not None
            fourcc = header.fourcc
        _need(data, pos, 4, f"{kind} track #{len(tracks)} id and size")
        track_id = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        pos += 4
        if pos + size > len(data):
            raise FlvError(
                f"{kind} track #{len(tracks)} (id {track_id}) size {size} at byte {pos - 3} "
                f"overflows the payload ({len(data)} bytes)"
            )
        tracks.append((fourcc, track_id, data[pos : pos + size]))
        pos += size
    if not tracks:
        raise FlvError(f"{kind} multitrack tag carries no track")
    return tracks


# --- video --------------------------------------------------------------------


def parse_video(payload: bytes) -> list[VideoItem]:
    """Parse one RTMP video message payload (an FLV VIDEODATA tag body)."""
    if not payload:
        return []
    if payload[0] & 0x80:
        return _parse_enhanced_video(payload)
    return _parse_legacy_video(payload)


def _parse_legacy_video(payload: bytes) -> list[VideoItem]:
    frame_type = payload[0] >> 4
    codec_id = payload[0] & 0x0F
    codec = _LEGACY_VIDEO_CODECS.get(codec_id, f"codec-id-{codec_id}")
    if codec_id not in _LEGACY_AVC_LIKE:
        return [Unsupported("video", codec, f"legacy video codec id {codec_id} ({codec})")]
    if frame_type == _FRAME_COMMAND:
        # Video info/command frame (seek start/end markers): no picture in it.
        return [Unsupported("video", codec, "video info/command frame (frame type 5)")]
    what = f"legacy {codec} video tag"
    _need(payload, 0, 2, what + " header")
    packet_type = payload[1]
    if packet_type == 2:
        # End of sequence: the CTS bytes are meaningless and some encoders omit them.
        return [VideoSequenceEnd(codec, 0)]
    if packet_type == 0:
        _need(payload, 0, 5, what + " header")
        record = bytes(payload[5:])
        config = parse_avcc(record) if codec == "avc1" else None
        return [VideoSequenceStart(codec, 0, config, record)]
    if packet_type == 1:
        return [
            VideoFrame(
                codec=codec,
                track_id=0,
                keyframe=frame_type in (_FRAME_KEY, _FRAME_GENERATED_KEY),
                composition_offset=_si24(payload, 2, what),
                # A view, not a copy: the frame is most of the message (12 KiB a frame at
                # 3 Mb/s, keyframes ten times that), and the muxer copies it into its own
                # packet anyway. The message's payload is its own bytes object (the chunk
                # reader joins every message), so the view holds nothing else alive.
                data=memoryview(payload)[5:],
            )
        ]
    return [Unsupported("video", codec, f"AVCPacketType {packet_type} is not defined")]


def _parse_enhanced_video(payload: bytes) -> list[VideoItem]:
    frame_type = (payload[0] >> 4) & 0x07
    packet_type, pos = _modex_chain(payload, payload[0] & 0x0F, "video")
    if frame_type == _FRAME_COMMAND and packet_type != _VPKT_METADATA:
        # Command frames carry one VideoCommand byte and neither FourCC nor body.
        return [Unsupported("video", "", "video command frame (frame type 5)")]
    header = _ex_header(payload, packet_type, pos, "video", _VPKT_MULTITRACK)
    packet_type = header.packet_type
    keyframe = frame_type in (_FRAME_KEY, _FRAME_GENERATED_KEY)
    items: list[VideoItem] = []
    for fourcc, track_id, body in _tracks(payload, header, "video"):
        items.append(_enhanced_video_body(fourcc, track_id, packet_type, keyframe, body))
    return items


def _enhanced_video_body(
    fourcc: str, track_id: int, packet_type: int, keyframe: bool, body: bytes
) -> VideoItem:
    name = _VIDEO_PACKET_NAMES.get(packet_type, f"packet type {packet_type}")
    if fourcc not in _VIDEO_FOURCCS:
        return Unsupported("video", fourcc, f"video FourCC {fourcc!r} ({name}, track {track_id})")
    if packet_type == _PKT_SEQUENCE_START:
        record = bytes(body)
        config = parse_avcc(record) if fourcc == "avc1" else None
        return VideoSequenceStart(fourcc, track_id, config, record)
    if packet_type == _PKT_CODED_FRAMES:
        if fourcc in _VIDEO_FOURCCS_WITH_CTS:
            cts = _si24(body, 0, f"enhanced {fourcc} CodedFrames (track {track_id})")
            return VideoFrame(fourcc, track_id, keyframe, cts, bytes(body[3:]))
        return VideoFrame(fourcc, track_id, keyframe, 0, bytes(body))
    if packet_type == _VPKT_CODED_FRAMES_X:
        return VideoFrame(fourcc, track_id, keyframe, 0, bytes(body))
    if packet_type == _PKT_SEQUENCE_END:
        return VideoSequenceEnd(fourcc, track_id)
    if packet_type == _VPKT_METADATA:
        return Unsupported("video", fourcc, f"Metadata packet, e.g. colorInfo (track {track_id})")
    return Unsupported("video", fourcc, f"{name} (track {track_id})")


# --- audio --------------------------------------------------------------------


def parse_audio(payload: bytes) -> list[AudioItem]:
    """Parse one RTMP audio message payload (an FLV AUDIODATA tag body)."""
    if not payload:
        return []
    sound_format = payload[0] >> 4
    if sound_format == _SOUND_FORMAT_EX_HEADER:
        return _parse_enhanced_audio(payload)
    codec = _LEGACY_AUDIO_CODECS.get(sound_format, f"sound-format-{sound_format}")
    if sound_format != _SOUND_FORMAT_AAC:
        return [Unsupported("audio", codec, f"legacy SoundFormat {sound_format} ({codec})")]
    # The rate/size/type bits of byte 0 are meaningless for AAC (48 kHz is
    # flagged as 44.1 kHz); the AudioSpecificConfig is the only truth.
    _need(payload, 0, 2, "legacy AAC audio tag header")
    packet_type = payload[1]
    if packet_type == 0:
        record = bytes(payload[2:])
        return [AudioSequenceStart("mp4a", 0, parse_asc(record), record)]
    if packet_type == 1:
        return [AudioFrame("mp4a", 0, bytes(payload[2:]))]
    return [Unsupported("audio", "mp4a", f"AACPacketType {packet_type} is not defined")]


def _parse_enhanced_audio(payload: bytes) -> list[AudioItem]:
    packet_type, pos = _modex_chain(payload, payload[0] & 0x0F, "audio")
    header = _ex_header(payload, packet_type, pos, "audio", _APKT_MULTITRACK)
    items: list[AudioItem] = []
    for fourcc, track_id, body in _tracks(payload, header, "audio"):
        item = _enhanced_audio_body(fourcc, track_id, header.packet_type, body)
        if item is not None:
            items.append(item)
    return items


def _enhanced_audio_body(
    fourcc: str, track_id: int, packet_type: int, body: bytes
) -> AudioItem | None:
    name = _AUDIO_PACKET_NAMES.get(packet_type, f"packet type {packet_type}")
    if fourcc not in _AUDIO_FOURCCS:
        return Unsupported("audio", fourcc, f"audio FourCC {fourcc!r} ({name}, track {track_id})")
    if packet_type in (_PKT_SEQUENCE_END, _APKT_MULTICHANNEL_CONFIG):
        # Nothing to package and nothing wrong: SequenceEnd has no AudioItem (the
        # publisher's end is handled at unpublish) and MultichannelConfig only
        # restates a layout the codec configuration already defines for mp4a.
        # An Unsupported here would log a misleading "not packaged" line.
        return None
    if packet_type == _PKT_SEQUENCE_START:
        record = bytes(body)
        config = parse_asc(record) if fourcc == "mp4a" else None
        return AudioSequenceStart(fourcc, track_id, config, record)
    if packet_type == _PKT_CODED_FRAMES:
        return AudioFrame(fourcc, track_id, bytes(body))
    return Unsupported("audio", fourcc, f"{name} (track {track_id})")
