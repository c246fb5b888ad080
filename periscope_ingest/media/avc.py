"""H.264 codec configuration: AVCDecoderConfigurationRecord (avcC) and SPS parsing.

Pure functions, no I/O. The FLV/RTMP "AVC sequence header" carries an avcC record
(ISO/IEC 14496-15 5.3.3.1). We keep the record bytes untouched (they become the
muxer's extradata) and read the first SPS (ITU-T H.264 7.3.2.1.1) for the facts a
playlist needs: display size, profile/level for the RFC 6381 codecs string and,
when the encoder wrote VUI timing, the frame rate. The demuxer-side values (PyAV
reports width 0 for our tiny FLV probe) are not trustworthy, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AvcConfig",
    "BitReader",
    "CodecConfigError",
    "Sps",
    "parse_avcc",
    "parse_sps",
    "unescape_rbsp",
]


class CodecConfigError(ValueError):
    """A codec configuration record (avcC, SPS, AudioSpecificConfig) is malformed."""


# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists
# (H.264 7.3.2.1.1, the long "if( profile_idc = = 100 || ..." condition).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

_NAL_TYPE_SPS = 7

# Largest exp-Golomb prefix we accept: 32 leading zeros would describe a value
# >= 2**32, which no SPS field may hold; a longer run means garbage input.
_MAX_GOLOMB_ZEROS = 31


class BitReader:
    """MSB-first bit reader over an RBSP (emulation prevention already removed).

    The whole buffer is turned into one Python int so that reading n bits is a
    shift and a mask; SPS/ASC buffers are tiny, so this is both simple and fast.
    """

    __slots__ = ("_bits", "_pos", "_value", "what")

    def __init__(self, data: bytes, what: str = "bitstream") -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0
        self.what = what

    @property
    def remaining(self) -> int:
        return self._bits - self._pos

    @property
    def position(self) -> int:
        return self._pos

    def u(self, n: int) -> int:
        """Read an n-bit unsigned integer."""
        if n == 0:
            return 0
        if self._pos + n > self._bits:
            raise CodecConfigError(
                f"{self.what} truncated: needed {n} bits at bit {self._pos}, "
                f"only {self._bits - self._pos} left"
            )
        shift = self._bits - self._pos - n
        self._pos += n
        return (self._value >> shift) & ((1 << n) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, n: int) -> None:
        self.u(n)

    def ue(self) -> int:
        """Read an unsigned exp-Golomb code ue(v) (H.264 9.1)."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > _MAX_GOLOMB_ZEROS:
                raise CodecConfigError(f"{self.what}: exp-Golomb code too long at bit {self._pos}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Read a signed exp-Golomb code se(v) (H.264 9.1.1)."""
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation prevention bytes (00 00 03 -> 00 00), H.264 7.4.1.

    Without this, any SPS field after a 00 00 03 sequence (common in VUI timing,
    where time_scale often contains zero bytes) would be read shifted by 8 bits.
    """
    if b"\x00\x00\x03" not in nal:
        return nal
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Sps:
    """The fields of a sequence parameter set we use."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    width: int  # after frame cropping
    height: int
    frame_rate: float | None  # from VUI timing info, None when absent or unreadable


def _skip_scaling_list(r: BitReader, size: int) -> None:
    # H.264 7.3.2.1.1.1: only the parse matters to us, the matrix values do not.
    last_scale = 8
    next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            delta_scale = r.se()
            next_scale = (last_scale + delta_scale + 256) % 256
        last_scale = last_scale if next_scale == 0 else next_scale


def _vui_frame_rate(r: BitReader) -> float | None:
    """Read vui_parameters() up to timing info (H.264 E.1.1)."""
    if r.flag():  # aspect_ratio_info_present_flag
        aspect_ratio_idc = r.u(8)
        if aspect_ratio_idc == 255:  # Extended_SAR
            r.skip(32)  # sar_width, sar_height
    if r.flag():  # overscan_info_present_flag
        r.skip(1)
    if r.flag():  # video_signal_type_present_flag
        r.skip(4)  # video_format, video_full_range_flag
        if r.flag():  # colour_description_present_flag
            r.skip(24)
    if r.flag():  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    if not r.flag():  # timing_info_present_flag
        return None
    num_units_in_tick = r.u(32)
    time_scale = r.u(32)
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    # One frame is two field ticks (H.264 E.2.1, with the usual fixed_frame_rate reading).
    return time_scale / (2 * num_units_in_tick)


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (including its one-byte NAL header).

    Raises CodecConfigError when the NAL is not an SPS or ends before the
    frame size is known. A broken or truncated VUI only loses the frame rate:
    the size is what we need, and some encoders emit VUI we cannot fully read.
    """
    if not nal:
        raise CodecConfigError("SPS is empty")
    header = nal[0]
    if header & 0x80:
        raise CodecConfigError(f"SPS NAL header 0x{header:02x} has forbidden_zero_bit set")
    if header & 0x1F != _NAL_TYPE_SPS:
        raise CodecConfigError(f"expected SPS (NAL type 7), got NAL type {header & 0x1F}")
    r = BitReader(unescape_rbsp(nal[1:]), "SPS")
    profile_idc = r.u(8)
    constraint_flags = r.u(8)
    level_idc = r.u(8)
    sps_id = r.ue()
    if sps_id > 31:
        raise CodecConfigError(f"SPS seq_parameter_set_id {sps_id} out of range 0..31")

    chroma_format_idc = 1  # inferred when absent (H.264 7.4.2.1.1)
    separate_colour_plane = False
    bit_depth_luma = 8
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise CodecConfigError(f"SPS chroma_format_idc {chroma_format_idc} out of range")
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        bit_depth_luma = r.ue() + 8
        r.ue()  # bit_depth_chroma_minus8
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():  # seq_scaling_list_present_flag[i]
                    _skip_scaling_list(r, 16 if i < 6 else 64)

    r.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = r.ue()
    if pic_order_cnt_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        r.skip(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        cycle = r.ue()
        if cycle > 255:
            raise CodecConfigError(f"SPS num_ref_frames_in_pic_order_cnt_cycle {cycle} > 255")
        for _ in range(cycle):
            r.se()
    elif pic_order_cnt_type != 2:
        raise CodecConfigError(f"SPS pic_order_cnt_type {pic_order_cnt_type} out of range")
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.skip(1)  # mb_adaptive_frame_field_flag
    r.skip(1)  # direct_8x8_inference_flag

    # Crop units depend on chroma subsampling and field coding (H.264 7.4.2.1.1).
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    frame_height_factor = 1 if frame_mbs_only else 2
    if chroma_array_type == 0:
        crop_unit_x, crop_unit_y = 1, frame_height_factor
    else:
        sub_width_c = 2 if chroma_array_type in (1, 2) else 1
        sub_height_c = 2 if chroma_array_type == 1 else 1
        crop_unit_x, crop_unit_y = sub_width_c, sub_height_c * frame_height_factor
    crop_left = crop_right = crop_top = crop_bottom = 0
    if r.flag():  # frame_cropping_flag
        crop_left, crop_right, crop_top, crop_bottom = r.ue(), r.ue(), r.ue(), r.ue()
    width = width_mbs * 16 - crop_unit_x * (crop_left + crop_right)
    height = frame_height_factor * height_map_units * 16 - crop_unit_y * (crop_top + crop_bottom)
    if width <= 0 or height <= 0:
        raise CodecConfigError(f"SPS frame cropping leaves no picture ({width}x{height})")

    frame_rate: float | None = None
    try:
        if r.flag():  # vui_parameters_present_flag
            frame_rate = _vui_frame_rate(r)
    except CodecConfigError:
        frame_rate = None
    return Sps(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        chroma_format_idc=chroma_format_idc,
        bit_depth_luma=bit_depth_luma,
        width=width,
        height=height,
        frame_rate=frame_rate,
    )


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """What we know about an H.264 stream from its avcC record."""

    avcc: bytes  # the AVCDecoderConfigurationRecord as received (extradata for the muxer)
    width: int  # display size after SPS frame cropping
    height: int
    profile_idc: int
    constraint_flags: int  # the byte after profile_idc in the SPS
    level_idc: int
    nal_length_size: int  # from lengthSizeMinusOne + 1
    frame_rate: float | None  # VUI time_scale / (2 * num_units_in_tick), else None

    @property
    def codecs(self) -> str:
        """RFC 6381 codecs parameter, e.g. "avc1.64001f" (lowercase, as Apple's tools emit)."""
        return f"avc1.{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


def parse_avcc(record: bytes) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).

    Size, profile and level come from the first SPS, not from the record's own
    profile bytes, because the SPS is what the decoder obeys.
    """
    n = len(record)
    if n < 7:
        raise CodecConfigError(f"avcC record too short: {n} bytes, need at least 7")
    if record[0] != 1:
        # An Annex B sequence header (00 00 00 01 ...) lands here: say so.
        raise CodecConfigError(f"avcC configurationVersion is {record[0]}, expected 1")
    nal_length_size = (record[4] & 0x03) + 1
    if nal_length_size == 3:
        # 14496-15 allows 1, 2 or 4 only; FFmpeg's mp4toannexb rejects 3 as well.
        raise CodecConfigError("avcC lengthSizeMinusOne is 2 (3-byte NAL lengths are not allowed)")
    num_sps = record[5] & 0x1F
    if num_sps == 0:
        raise CodecConfigError("avcC carries no SPS")
    pos = 6
    sps_nals: list[bytes] = []
    for i in range(num_sps):
        if pos + 2 > n:
            raise CodecConfigError(f"avcC truncated in SPS #{i} length at byte {pos}")
        size = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        if size == 0:
            raise CodecConfigError(f"avcC SPS #{i} is empty (length 0 at byte {pos - 2})")
        if pos + size > n:
            raise CodecConfigError(
                f"avcC SPS #{i} length {size} at byte {pos - 2} exceeds the record ({n} bytes)"
            )
        sps_nals.append(record[pos : pos + size])
        pos += size
    if pos >= n:
        raise CodecConfigError("avcC truncated before numOfPictureParameterSets")
    num_pps = record[pos]
    pos += 1
    for i in range(num_pps):
        if pos + 2 > n:
            raise CodecConfigError(f"avcC truncated in PPS #{i} length at byte {pos}")
        size = int.from_bytes(record[pos : pos + 2], "big")
        pos += 2
        if pos + size > n:
            raise CodecConfigError(
                f"avcC PPS #{i} length {size} at byte {pos - 2} exceeds the record ({n} bytes)"
            )
        pos += size
    # Bytes after the PPS list (the High-profile chroma/bit-depth extension, or
    # padding some encoders add) are not needed: the SPS says the same thing.
    sps = parse_sps(sps_nals[0])
    return AvcConfig(
        avcc=bytes(record),
        width=sps.width,
        height=sps.height,
        profile_idc=sps.profile_idc,
        constraint_flags=sps.constraint_flags,
        level_idc=sps.level_idc,
        nal_length_size=nal_length_size,
        frame_rate=sps.frame_rate,
    )
