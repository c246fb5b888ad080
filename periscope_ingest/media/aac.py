"""AAC codec configuration: AudioSpecificConfig parsing (ISO/IEC 14496-3 1.6.2.1).

Pure functions, no I/O. The FLV audio tag's rate/channel bits cannot express
48 kHz (it is flagged as 44.1 kHz), so the real sample rate and channel layout
must come from the AudioSpecificConfig in the AAC sequence header.
"""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.media.avc import BitReader, CodecConfigError

__all__ = ["SAMPLING_FREQUENCIES", "AacConfig", "CodecConfigError", "parse_asc"]

# samplingFrequencyIndex 0..12 (14496-3 table 1.18); 13 and 14 are reserved,
# 15 means "an explicit 24-bit frequency follows".
SAMPLING_FREQUENCIES = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
_EXPLICIT_FREQUENCY = 15

_AOT_ESCAPE = 31
_AOT_SBR = 5
_AOT_PS = 29
_AOT_ER_BSAC = 22
# Object types whose config is a GASpecificConfig (and so has frameLengthFlag).
_GA_OBJECT_TYPES = frozenset({1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23})
# Object types that carry an extensionFlag-dependent layer field in GASpecificConfig.
_AOT_LAYER_TYPES = frozenset({6, 20})
_SYNC_EXTENSION_TYPE = 0x2B7


@dataclass(frozen=True, slots=True)
class AacConfig:
    """What we know about an AAC stream from its AudioSpecificConfig."""

    asc: bytes  # AudioSpecificConfig as received (extradata)
    object_type: int  # 2 = AAC-LC, 5 = SBR/HE-AAC, 29 = PS ... (as signalled)
    sample_rate: int  # output rate: the SBR extension rate when SBR is signalled
    channels: int  # channel configuration (0 if defined by a PCE)
    samples_per_frame: int  # per AAC frame at sample_rate: 1024/960, doubled with SBR

    @property
    def codecs(self) -> str:
        """RFC 6381 codecs parameter, e.g. "mp4a.40.2"."""
        return f"mp4a.40.{self.object_type}"


def _object_type(r: BitReader) -> int:
    aot = r.u(5)
    if aot == _AOT_ESCAPE:
        aot = 32 + r.u(6)
    return aot


def _frequency(r: BitReader) -> int:
    index = r.u(4)
    if index == _EXPLICIT_FREQUENCY:
        rate = r.u(24)
        if rate == 0:
            raise CodecConfigError("AudioSpecificConfig explicit sampling frequency is 0")
        return rate
    if index >= len(SAMPLING_FREQUENCIES):
        raise CodecConfigError(f"AudioSpecificConfig samplingFrequencyIndex {index} is reserved")
    return SAMPLING_FREQUENCIES[index]


def _implicit_sbr_rate(r: BitReader) -> int | None:
    """Backward-compatible SBR signalling: a syncExtensionType 0x2b7 after the
    GASpecificConfig (14496-3 1.6.2.1). Returns the SBR output rate, if present."""
    if r.remaining < 16 or r.u(11) != _SYNC_EXTENSION_TYPE:
        return None
    if _object_type(r) != _AOT_SBR:
        return None
    if not r.flag():  # sbrPresentFlag
        return None
    return _frequency(r)


def parse_asc(asc: bytes) -> AacConfig:
    """Parse an AudioSpecificConfig.

    For explicitly signalled HE-AAC (object type 5 or 29) the reported
    sample_rate is the extension (SBR output) frequency and samples_per_frame is
    doubled, so samples_per_frame / sample_rate stays the true frame duration.
    The backward-compatible (implicit, sync extension) form is handled the same
    way when the channel configuration is not a PCE.
    """
    if not asc:
        raise CodecConfigError("AudioSpecificConfig is empty")
    r = BitReader(asc, "AudioSpecificConfig")
    object_type = _object_type(r)
    if object_type == 0:
        raise CodecConfigError("AudioSpecificConfig audioObjectType is 0 (null object)")
    sample_rate = _frequency(r)
    channels = r.u(4)
    sbr_rate: int | None = None
    core_type = object_type
    if object_type in (_AOT_SBR, _AOT_PS):
        sbr_rate = _frequency(r)
        core_type = _object_type(r)
        if core_type == _AOT_ER_BSAC:
            r.skip(4)  # extensionChannelConfiguration

    samples_per_frame = 1024
    if core_type in _GA_OBJECT_TYPES:
        # GASpecificConfig (14496-3 4.4.1)
        if r.flag():  # frameLengthFlag: 960-sample frames (DAB+, some broadcast encoders)
            samples_per_frame = 960
        if r.flag():  # dependsOnCoreCoder
            r.skip(14)  # coreCoderDelay
        extension_flag = r.flag()
        if channels != 0 and sbr_rate is None:
            # The PCE case (channels == 0) would need a full program_config_element
            # parse before the sync extension can be found; we leave that alone.
            # The trailing fields are optional in practice (many 2-byte ASCs end
            # right here), so running out of bits only means "no implicit SBR".
            try:
                if core_type in _AOT_LAYER_TYPES:
                    r.skip(3)  # layerNr
                if extension_flag:
                    if core_type == _AOT_ER_BSAC:
                        r.skip(16)  # numOfSubFrame, layer_length
                    if core_type in (17, 19, 20, 23):
                        r.skip(3)  # the three ER resilience flags
                    r.skip(1)  # extensionFlag3
                sbr_rate = _implicit_sbr_rate(r)
            except CodecConfigError:
                sbr_rate = None
    if sbr_rate is not None:
        # SBR doubles the output rate of the core decoder: 1024 core samples
        # become 2048 output samples at the extension rate.
        if sbr_rate != sample_rate:
            samples_per_frame *= 2
        sample_rate = sbr_rate
    return AacConfig(
        asc=bytes(asc),
        object_type=object_type,
        sample_rate=sample_rate,
        channels=channels,
        samples_per_frame=samples_per_frame,
    )
