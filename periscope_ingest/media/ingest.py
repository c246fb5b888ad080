"""From RTMP audio/video messages to MediaPackets on one timeline. Pure: no I/O.

It answers the questions between FLV tags and a muxer:
- which tracks does this stream have? A muxer needs all of its streams before the first packet,
  but the audio sequence header may come after the first video frame. Media is held (bounded by
  ``start_buffer_ms``) until every track announced in onMetaData has its sequence header.
- what are the exact timestamps? The Timeline makes DTS monotonic per track; audio timestamps are
  rebuilt from the sample count because FLV's millisecond timestamps jitter by ±1 ms on AAC.
- what can we not package (Opus, VP9, tracks other than the default one, ...)? Said once, as a
  Notice for the log. Video is H.264 (legacy or FourCC avc1), HEVC (hvc1, also the unofficial
  legacy codec id 12) or AV1 (av01), on track 0 of a multitrack push; audio is AAC.
"""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.media.aac import AacConfig
from periscope_ingest.media.av1 import Av1Config, parse_av1c
from periscope_ingest.media.avc import AvcConfig
from periscope_ingest.media.flv import (
    AudioFrame,
    AudioSequenceStart,
    Unsupported,
    VideoFrame,
    VideoSequenceEnd,
    VideoSequenceStart,
    parse_audio,
    parse_video,
)
from periscope_ingest.media.hevc import HevcConfig, parse_hvcc
from periscope_ingest.media.packets import TICKS_PER_MS, TICKS_PER_SECOND, MediaPacket
from periscope_ingest.media.timeline import Timeline, rebase_pts

# onMetaData codec ids that we package: legacy AVC (7) and AAC (10), or their FourCCs as numbers.
_FOURCC_AVC1 = int.from_bytes(b"avc1", "big")
_FOURCC_MP4A = int.from_bytes(b"mp4a", "big")
# When the audio clock drifts this far from the encoder's timestamps, follow the encoder.
_AUDIO_RESYNC_TICKS = 100 * TICKS_PER_MS
_DEFAULT_FRAME_MS = 33


VideoConfig = AvcConfig | HevcConfig | Av1Config
# Video FourCCs packaged (without transcoding); anything else is reported as a Notice.
PACKAGED_VIDEO_CODECS = ("avc1", "hvc1", "av01")


def video_codec(config: VideoConfig) -> str:
    """The FourCC / sample entry of a video configuration: "avc1", "hvc1" or "av01"."""
    if isinstance(config, HevcConfig):
        return "hvc1"
    if isinstance(config, Av1Config):
        return "av01"
    return "avc1"


def video_record(config: VideoConfig) -> bytes:
    """The decoder configuration record (avcC, hvcC or av1C) as received."""
    return config.avcc if isinstance(config, AvcConfig) else config.record


def _parse_video_config(codec: str, config: AvcConfig | None, record: bytes) -> VideoConfig:
    if codec == "hvc1":
        return parse_hvcc(record)
    if codec == "av01":
        return parse_av1c(record)
    assert config is not None
    return config


@dataclass(frozen=True, slots=True)
class TracksReady:
    """The tracks to package from now on; sent at start and again when a configuration changes."""

    video: VideoConfig | None
    audio: AacConfig | None


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an operator should read once in the log (never per frame)."""

    message: str


@dataclass(slots=True)
class Placed:
    """A packet and whether it follows a timeline discontinuity. One per media message, so not
    frozen (see flv.VideoFrame); read-only all the same."""

    packet: MediaPacket
    discontinuity: bool


Output = TracksReady | Notice | Placed


class StreamAssembler:
    def __init__(self, start_buffer_ms: int = 3000, max_pending: int = 2000) -> None:
        self._timeline = Timeline()
        self._start_buffer_ticks = start_buffer_ms * TICKS_PER_MS
        self._max_pending = max_pending
        self.video: VideoConfig | None = None
        self.audio: AacConfig | None = None
        self._expect_video: bool | None = None  # from onMetaData; None = not announced
        self._expect_audio: bool | None = None
        self._video_unsupported = False
        self._audio_unsupported = False
        self._started = False
        self._pending: list[Placed] = []
        self._noticed: set[str] = set()
        self._last_video_dts_ms: int | None = None
        self._video_frame_ms = _DEFAULT_FRAME_MS
        self._last_video_delta_ms = 0
        self._audio_anchor = 0  # ticks of the sample clock's origin
        self._audio_samples = 0  # samples since the anchor
        self._audio_clock_running = False
        self._audio_end = -(2**62)  # end of the last audio frame placed, in ticks
        self._base_ms = 0  # added to the timeline: a resumed broadcast continues where it was
        self._latest_ms = 0  # end of the latest packet placed, on the output timeline
        self._restarted = False

    def restart(self) -> None:
        """A new connection continues this stream: its clock starts afresh, ours goes on.

        The new encoder's timestamps restart (at 0, usually), so they get a new Timeline whose
        origin lands just after the last packet placed so far; the first packet after this is
        flagged as a discontinuity. Track configurations are kept: a repeated sequence header
        changes nothing, a different one starts new tracks as usual.
        """
        self._timeline = Timeline()
        self._base_ms = self._latest_ms + 1
        self._last_video_dts_ms = None
        self._audio_clock_running = False
        self._restarted = True

    def _place(self, track: str, timestamp: int) -> tuple[int, bool]:
        placed = self._timeline.place(track, timestamp)
        discontinuity = placed.discontinuity or self._restarted
        self._restarted = False
        return placed.dts + self._base_ms, discontinuity

    # -- inputs -----------------------------------------------------------------------------

    def metadata(self, values: dict) -> list[Output]:
        """onMetaData tells which tracks the encoder will send."""
        if "videocodecid" in values:
            self._expect_video = values["videocodecid"] not in (None, 0, "", False)
        if "audiocodecid" in values:
            self._expect_audio = values["audiocodecid"] not in (None, 0, "", False)
        return self._maybe_start([])

    def video_message(self, timestamp: int, payload: bytes) -> list[Output]:
        out: list[Output] = []
        for item in parse_video(payload):
            packaged = item.codec in PACKAGED_VIDEO_CODECS and getattr(item, "track_id", 0) == 0
            if isinstance(item, VideoFrame):
                if packaged and self.video is not None and video_codec(self.video) == item.codec:
                    self._video_frame(timestamp, item, out)
                elif packaged:
                    self._notice(
                        out, f"{item.codec} video frames before its sequence header are dropped"
                    )
                else:
                    self._unsupported_track(out, "video", item.codec, item.track_id)
            elif isinstance(item, VideoSequenceStart):
                if packaged and (item.codec != "avc1" or item.config is not None):
                    config = _parse_video_config(item.codec, item.config, item.record)
                    self._video_config(config, out)
                else:
                    self._unsupported_track(out, "video", item.codec, item.track_id)
            elif isinstance(item, Unsupported):
                if item.kind == "video" and item.detail.startswith("Metadata packet"):
                    # Enhanced RTMP video metadata (colorInfo): nothing a remuxer needs.
                    self._notice(out, f"video {item.codec} metadata is ignored ({item.detail})")
                else:
                    self._notice(out, f"{item.kind} {item.codec} is not packaged: {item.detail}")
            elif isinstance(item, VideoSequenceEnd):
                pass  # the publisher's end is handled when it unpublishes
        return self._maybe_start(out)

    def audio_message(self, timestamp: int, payload: bytes) -> list[Output]:
        out: list[Output] = []
        for item in parse_audio(payload):
            if isinstance(item, AudioFrame):
                if item.codec == "mp4a" and item.track_id == 0 and self.audio is not None:
                    if item.data:
                        self._audio_frame(timestamp, item, self.audio, out)
                elif item.codec == "mp4a" and item.track_id == 0:
                    self._notice(out, "audio frames before the AAC sequence header are dropped")
                else:
                    self._unsupported_track(out, "audio", item.codec, item.track_id)
            elif isinstance(item, AudioSequenceStart):
                if item.codec == "mp4a" and item.track_id == 0 and item.config is not None:
                    self._audio_config(item.config, out)
                else:
                    self._unsupported_track(out, "audio", item.codec, item.track_id)
            elif isinstance(item, Unsupported):
                self._notice(out, f"{item.kind} {item.codec} is not packaged: {item.detail}")
        return self._maybe_start(out)

    # -- helpers ----------------------------------------------------------------------------

    def _notice(self, out: list[Output], message: str) -> None:
        if message not in self._noticed:
            self._noticed.add(message)
            out.append(Notice(message))

    def _unsupported_track(self, out: list[Output], kind: str, codec: str, track: int) -> None:
        if track != 0:
            self._notice(
                out, f"{kind} track {track} ({codec}) is ignored: only track 0 is packaged"
            )
            return
        if kind == "video" and self.video is None:
            self._video_unsupported = True
        if kind == "audio" and self.audio is None:
            self._audio_unsupported = True
        self._notice(
            out, f"{kind} codec {codec} is not packaged yet; the stream goes on without it"
        )

    def _video_config(self, config: VideoConfig, out: list[Output]) -> None:
        if (
            self.video is not None
            and video_codec(config) == video_codec(self.video)
            and video_record(config) == video_record(self.video)
        ):
            return  # encoders repeat the sequence header; nothing changed
        changed = self.video is not None
        self.video = config
        if config.frame_rate:
            self._video_frame_ms = max(1, round(1000 / config.frame_rate))
        if self._started:
            if changed:
                self._notice(out, "video configuration changed: a new segment starts")
            out.append(TracksReady(self.video, self.audio))

    def _audio_config(self, config: AacConfig, out: list[Output]) -> None:
        if self.audio is not None and config.asc == self.audio.asc:
            return
        self.audio = config
        self._audio_clock_running = False
        if self._started:
            out.append(TracksReady(self.video, self.audio))

    def _video_frame(self, timestamp: int, frame: VideoFrame, out: list[Output]) -> None:
        dts, discontinuity = self._place("video", timestamp)
        if self._last_video_dts_ms is not None and not discontinuity:
            delta = dts - self._last_video_dts_ms
            # A frame lasts until the next one, but a step after a hole (dropped frames, a
            # clock that stepped ahead) is not its duration: counted as one, it listed the
            # hole a second time at the end of the stream. A new cadence is taken once it
            # repeats (a frame rate that really changed).
            repeated = abs(delta - self._last_video_delta_ms) <= max(2, delta // 10)
            if 0 < delta < 1000 and (delta <= 2 * self._video_frame_ms or repeated):
                self._video_frame_ms = delta
            self._last_video_delta_ms = delta
        self._last_video_dts_ms = dts
        pts = rebase_pts(dts, frame.composition_offset)
        self._latest_ms = max(self._latest_ms, pts + self._video_frame_ms)
        packet = MediaPacket(
            "video",
            dts * TICKS_PER_MS,
            pts * TICKS_PER_MS,
            frame.keyframe,
            frame.data,
            self._video_frame_ms * TICKS_PER_MS,
        )
        out.append(Placed(packet, discontinuity))

    def _audio_frame(
        self, timestamp: int, frame: AudioFrame, config: AacConfig, out: list[Output]
    ) -> None:
        dts, discontinuity = self._place("audio", timestamp)
        encoder_ticks = dts * TICKS_PER_MS
        rate = config.sample_rate or 48_000
        if self._audio_clock_running and not discontinuity:
            clock = self._audio_anchor + self._audio_samples * TICKS_PER_SECOND // rate
            if abs(clock - encoder_ticks) > _AUDIO_RESYNC_TICKS:
                self._audio_clock_running = False
        if not self._audio_clock_running or discontinuity:
            # Follow the encoder again, but never back before the end of the last audio frame:
            # an AAC frame that would overlap it makes the muxer refuse the packet.
            self._audio_anchor = max(encoder_ticks, self._audio_end)
            self._audio_samples = 0
            self._audio_clock_running = True
        # Integer positions from the cumulative sample count: no drift, no rounding build-up.
        start = self._audio_anchor + self._audio_samples * TICKS_PER_SECOND // rate
        self._audio_samples += config.samples_per_frame
        end = self._audio_anchor + self._audio_samples * TICKS_PER_SECOND // rate
        self._audio_end = end
        self._latest_ms = max(self._latest_ms, -(-end // TICKS_PER_MS))
        packet = MediaPacket("audio", start, start, True, frame.data, end - start)
        out.append(Placed(packet, discontinuity))

    def _track_settled(self, expected: bool | None, config: object, unsupported: bool) -> bool:
        # A track the metadata did not mention is not waited for.
        return expected is not True or config is not None or unsupported

    def flush(self) -> list[Output]:
        """The publisher stopped: start with whatever is known rather than lose the media."""
        return self._maybe_start([], force=True)

    def _maybe_start(self, out: list[Output], force: bool = False) -> list[Output]:
        if self._started:
            return out
        media = [o for o in out if isinstance(o, Placed)]
        others = [o for o in out if not isinstance(o, Placed)]
        self._pending.extend(media)
        announced = self._expect_video is not None or self._expect_audio is not None
        if announced:
            ready = self._track_settled(
                self._expect_video, self.video, self._video_unsupported
            ) and self._track_settled(self._expect_audio, self.audio, self._audio_unsupported)
        else:
            ready = self.video is not None and self.audio is not None
        if not ready and self._pending:
            span = self._pending[-1].packet.dts - self._pending[0].packet.dts
            ready = span >= self._start_buffer_ticks or len(self._pending) >= self._max_pending
        if not (ready or force) or (self.video is None and self.audio is None):
            # Bound what is held while nothing can be packaged (e.g. an HEVC-only push).
            if len(self._pending) > self._max_pending:
                del self._pending[: len(self._pending) - self._max_pending]
            return others
        self._started = True
        pending, self._pending = self._pending, []
        return [*others, TracksReady(self.video, self.audio), *pending]
