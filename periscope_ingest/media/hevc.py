"""H.265/HEVC codec configuration: HEVCDecoderConfigurationRecord (hvcC) and SPS parsing.

Pure functions, no I/O. Enhanced RTMP's HEVC "sequence start" carries an hvcC record
(ISO/IEC 14496-15 8.3.3.1). We keep the record bytes untouched (they become the muxer's
extradata) and read the facts a playlist needs from its parameter sets:

* display size from the SPS (ITU-T H.265 7.3.2.2.1), after the conformance window;
* the RFC 6381 codecs string from the SPS profile_tier_level (14496-15 Annex E.3), e.g.
  "hvc1.1.6.L93.B0". The sample entry is always ``hvc1`` because our muxers write it so
  (parameter sets in the sample entry; Apple players accept nothing else);
* the frame rate, from VPS or SPS VUI timing when the encoder wrote it, else the record's
  avgFrameRate, else None.

Like avc.py, the SPS rather than the record's own copy of the profile bytes decides: the SPS is
what the decoder obeys.
"""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.media.avc import BitReader, CodecConfigError, unescape_rbsp

__all__ = ["HevcConfig", "HevcConfigError", "HevcSps", "parse_hevc_sps", "parse_hvcc"]


class HevcConfigError(CodecConfigError):
    """An hvcC record or one of its parameter sets is malformed."""


_NAL_VPS = 32
_NAL_SPS = 33

_HVCC_HEADER_SIZE = 23
_MAX_SUB_LAYERS = 7
_MAX_SHORT_TERM_RPS = 64
_MAX_LONG_TERM_PICS = 32
_MAX_LAYER_SETS = 1024


@dataclass(frozen=True, slots=True)
class ProfileTierLevel:
    """The general_* part of profile_tier_level() (H.265 7.3.3)."""

    profile_space: int
    tier: int
    profile_idc: int
    compatibility_flags: int  # 32 bits, flag j at bit (31 - j)
    constraint_flags: bytes  # the 6 bytes (48 bits) starting with progressive_source_flag
    level_idc: int

    def codecs(self, sample_entry: str = "hvc1") -> str:
        """RFC 6381 / 14496-15 E.3 codecs parameter, e.g. "hvc1.1.6.L93.B0"."""
        space = "" if self.profile_space == 0 else "ABC"[self.profile_space - 1]
        # The compatibility flags are written in reverse bit order, hex, no leading zeros.
        reversed_flags = int(f"{self.compatibility_flags:032b}"[::-1], 2)
        constraints = self.constraint_flags.rstrip(b"\x00")
        parts = [
            sample_entry,
            f"{space}{self.profile_idc}",
            f"{reversed_flags:X}",
            f"{'LH'[self.tier]}{self.level_idc}",
            *(f"{byte:02X}" for byte in constraints),
        ]
        return ".".join(parts)


@dataclass(frozen=True, slots=True)
class HevcSps:
    """The fields of an HEVC sequence parameter set we use."""

    profile: ProfileTierLevel
    chroma_format_idc: int
    bit_depth_luma: int
    width: int  # after the conformance window
    height: int
    frame_rate: float | None  # VUI timing, None when absent or unreadable


@dataclass(frozen=True, slots=True)
class HevcConfig:
    """What we know about an HEVC stream from its hvcC record."""

    record: bytes  # the HEVCDecoderConfigurationRecord as received (extradata for the muxer)
    width: int  # display size after the SPS conformance window
    height: int
    codecs: str  # RFC 6381, e.g. "hvc1.1.6.L93.B0"
    frame_rate: float | None
    nal_length_size: int = 4  # lengthSizeMinusOne + 1


def _reader(nal: bytes, expected_type: int, what: str) -> BitReader:
    if len(nal) < 3:
        raise HevcConfigError(f"{what} NAL unit too short ({len(nal)} bytes)")
    if nal[0] & 0x80:
        raise HevcConfigError(f"{what} NAL header has forbidden_zero_bit set")
    nal_type = (nal[0] >> 1) & 0x3F
    if nal_type != expected_type:
        raise HevcConfigError(
            f"expected {what} (NAL type {expected_type}), got NAL type {nal_type}"
        )
    return BitReader(unescape_rbsp(nal[2:]), what)


def _profile_tier_level(r: BitReader, max_sub_layers_minus1: int) -> ProfileTierLevel:
    profile_space = r.u(2)
    tier = r.u(1)
    profile_idc = r.u(5)
    compatibility_flags = r.u(32)
    constraint_flags = r.u(48).to_bytes(6, "big")
    level_idc = r.u(8)
    profile_present = []
    level_present = []
    for _ in range(max_sub_layers_minus1):
        profile_present.append(r.flag())
        level_present.append(r.flag())
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for i in range(max_sub_layers_minus1):
        if profile_present[i]:
            r.skip(88)  # sub_layer profile space .. constraint flags
        if level_present[i]:
            r.skip(8)
    return ProfileTierLevel(
        profile_space, tier, profile_idc, compatibility_flags, constraint_flags, level_idc
    )


def _skip_scaling_list_data(r: BitReader) -> None:
    # H.265 7.3.4: values are irrelevant to us, only their length.
    for size_id in range(4):
        for _matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if not r.flag():  # scaling_list_pred_mode_flag
                r.ue()  # scaling_list_pred_matrix_id_delta
                continue
            coef_num = min(64, 1 << (4 + (size_id << 1)))
            if size_id > 1:
                r.se()  # scaling_list_dc_coef_minus8
            for _ in range(coef_num):
                r.se()


def _short_term_ref_pic_sets(r: BitReader, count: int) -> None:
    """Parse st_ref_pic_set(0..count-1) (H.265 7.3.7, derivation 7.4.8), keeping only lengths."""
    # For each set the list of delta POCs (negative then positive), needed to size the next
    # inter-predicted set.
    sets: list[list[int]] = []
    for idx in range(count):
        inter = r.flag() if idx != 0 else False
        if inter:
            ref = sets[idx - 1]  # delta_idx_minus1 is only present in slice headers
            sign = r.u(1)
            delta_rps = (1 - 2 * sign) * (r.ue() + 1)
            deltas: list[int] = []
            for j in range(len(ref) + 1):
                used = r.flag()
                use_delta = True if used else r.flag()
                d_poc = (ref[j] if j < len(ref) else 0) + delta_rps
                if use_delta and d_poc != 0:
                    deltas.append(d_poc)
            sets.append(deltas)
        else:
            num_negative = r.ue()
            num_positive = r.ue()
            if num_negative > 16 or num_positive > 16:
                raise HevcConfigError("SPS short-term reference picture set too large")
            deltas = []
            poc = 0
            for _ in range(num_negative):
                poc -= r.ue() + 1
                r.skip(1)  # used_by_curr_pic_s0_flag
                deltas.append(poc)
            poc = 0
            for _ in range(num_positive):
                poc += r.ue() + 1
                r.skip(1)
                deltas.append(poc)
            sets.append(deltas)


def _vui_frame_rate(r: BitReader) -> float | None:
    """Read vui_parameters() up to the timing info (H.265 E.2.1)."""
    if r.flag() and r.u(8) == 255:  # aspect_ratio_info_present_flag, EXTENDED_SAR
        r.skip(32)
    if r.flag():  # overscan_info_present_flag
        r.skip(1)
    if r.flag():  # video_signal_type_present_flag
        r.skip(4)
        if r.flag():  # colour_description_present_flag
            r.skip(24)
    if r.flag():  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    r.skip(3)  # neutral_chroma_indication, field_seq, frame_field_info_present
    if r.flag():  # default_display_window_flag
        for _ in range(4):
            r.ue()
    if not r.flag():  # vui_timing_info_present_flag
        return None
    return _timing(r.u(32), r.u(32))


def _timing(num_units_in_tick: int, time_scale: int) -> float | None:
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    # HEVC counts one tick per picture (unlike H.264's field ticks).
    return time_scale / num_units_in_tick


def parse_hevc_sps(nal: bytes) -> HevcSps:
    """Parse an SPS NAL unit (including its two-byte NAL header)."""
    r = _reader(nal, _NAL_SPS, "SPS")
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    if max_sub_layers_minus1 >= _MAX_SUB_LAYERS:
        raise HevcConfigError(f"SPS sps_max_sub_layers_minus1 {max_sub_layers_minus1} > 6")
    r.skip(1)  # sps_temporal_id_nesting_flag
    profile = _profile_tier_level(r, max_sub_layers_minus1)
    if r.ue() > 15:
        raise HevcConfigError("SPS sps_seq_parameter_set_id out of range 0..15")
    chroma_format_idc = r.ue()
    if chroma_format_idc > 3:
        raise HevcConfigError(f"SPS chroma_format_idc {chroma_format_idc} out of range")
    separate_colour_plane = r.flag() if chroma_format_idc == 3 else False
    pic_width = r.ue()
    pic_height = r.ue()
    # Conformance window offsets count chroma samples (H.265 7.4.3.2.1, table 6-1).
    if separate_colour_plane or chroma_format_idc in (0, 3):
        sub_width, sub_height = 1, 1
    else:
        sub_width, sub_height = 2, 2 if chroma_format_idc == 1 else 1
    left = right = top = bottom = 0
    if r.flag():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    width = pic_width - sub_width * (left + right)
    height = pic_height - sub_height * (top + bottom)
    if width <= 0 or height <= 0:
        raise HevcConfigError(f"SPS conformance window leaves no picture ({width}x{height})")
    bit_depth_luma = r.ue() + 8
    if bit_depth_luma > 16:
        raise HevcConfigError(f"SPS bit depth {bit_depth_luma} out of range")

    frame_rate: float | None = None
    try:
        frame_rate = _sps_tail_frame_rate(r, max_sub_layers_minus1)
    except CodecConfigError:
        frame_rate = None  # an SPS tail we cannot read costs only the frame rate
    return HevcSps(profile, chroma_format_idc, bit_depth_luma, width, height, frame_rate)


def _sps_tail_frame_rate(r: BitReader, max_sub_layers_minus1: int) -> float | None:
    r.ue()  # bit_depth_chroma_minus8
    log2_max_poc_lsb = r.ue() + 4
    if log2_max_poc_lsb > 16:
        raise HevcConfigError("SPS log2_max_pic_order_cnt_lsb out of range")
    ordering_info_present = r.flag()
    first = 0 if ordering_info_present else max_sub_layers_minus1
    for _ in range(first, max_sub_layers_minus1 + 1):
        r.ue()
        r.ue()
        r.ue()
    for _ in range(6):  # coding/transform block sizes, transform hierarchy depths
        r.ue()
    if r.flag() and r.flag():  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _skip_scaling_list_data(r)
    r.skip(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.flag():  # pcm_enabled_flag
        r.skip(8)
        r.ue()
        r.ue()
        r.skip(1)
    num_short_term = r.ue()
    if num_short_term > _MAX_SHORT_TERM_RPS:
        raise HevcConfigError(f"SPS num_short_term_ref_pic_sets {num_short_term} > 64")
    _short_term_ref_pic_sets(r, num_short_term)
    if r.flag():  # long_term_ref_pics_present_flag
        count = r.ue()
        if count > _MAX_LONG_TERM_PICS:
            raise HevcConfigError(f"SPS num_long_term_ref_pics_sps {count} > 32")
        for _ in range(count):
            r.skip(log2_max_poc_lsb + 1)
    r.skip(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if not r.flag():  # vui_parameters_present_flag
        return None
    return _vui_frame_rate(r)


def _vps_frame_rate(nal: bytes) -> float | None:
    """Frame rate from vps_timing_info (H.265 7.3.2.1), None when absent or unreadable."""
    try:
        r = _reader(nal, _NAL_VPS, "VPS")
        r.skip(4 + 1 + 1 + 6)  # id, base_layer_internal, base_layer_available, max_layers
        max_sub_layers_minus1 = r.u(3)
        if max_sub_layers_minus1 >= _MAX_SUB_LAYERS:
            return None
        r.skip(1 + 16)  # temporal_id_nesting, reserved 0xffff
        _profile_tier_level(r, max_sub_layers_minus1)
        ordering_info_present = r.flag()
        first = 0 if ordering_info_present else max_sub_layers_minus1
        for _ in range(first, max_sub_layers_minus1 + 1):
            r.ue()
            r.ue()
            r.ue()
        max_layer_id = r.u(6)
        num_layer_sets = r.ue() + 1
        if num_layer_sets > _MAX_LAYER_SETS:
            return None
        r.skip((num_layer_sets - 1) * (max_layer_id + 1))  # layer_id_included_flag
        if not r.flag():  # vps_timing_info_present_flag
            return None
        return _timing(r.u(32), r.u(32))
    except CodecConfigError:
        return None


def parse_hvcc(record: bytes) -> HevcConfig:
    """Parse an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1.2).

    Raises HevcConfigError when the record is malformed or carries no readable SPS.
    """
    n = len(record)
    if n < _HVCC_HEADER_SIZE:
        raise HevcConfigError(f"hvcC record too short: {n} bytes, need at least 23")
    if record[0] != 1:
        # An Annex B sequence header (00 00 00 01 ...) lands here: say so.
        raise HevcConfigError(f"hvcC configurationVersion is {record[0]}, expected 1")
    nal_length_size = (record[21] & 0x03) + 1
    if nal_length_size == 3:
        raise HevcConfigError("hvcC lengthSizeMinusOne is 2 (3-byte NAL lengths are not allowed)")
    avg_frame_rate = int.from_bytes(record[19:21], "big")  # frames per 256 s, 0 = unspecified
    num_arrays = record[22]
    pos = _HVCC_HEADER_SIZE
    nals: dict[int, list[bytes]] = {}
    for i in range(num_arrays):
        if pos + 3 > n:
            raise HevcConfigError(f"hvcC truncated in array #{i} header at byte {pos}")
        nal_type = record[pos] & 0x3F
        count = int.from_bytes(record[pos + 1 : pos + 3], "big")
        pos += 3
        for j in range(count):
            if pos + 2 > n:
                raise HevcConfigError(f"hvcC truncated in array #{i} NAL #{j} length")
            size = int.from_bytes(record[pos : pos + 2], "big")
            pos += 2
            if pos + size > n:
                raise HevcConfigError(
                    f"hvcC array #{i} NAL #{j} length {size} at byte {pos - 2} exceeds the "
                    f"record ({n} bytes)"
                )
            nals.setdefault(nal_type, []).append(record[pos : pos + size])
            pos += size
    if not nals.get(_NAL_SPS):
        raise HevcConfigError("hvcC carries no SPS")
    try:
        sps = parse_hevc_sps(nals[_NAL_SPS][0])
    except HevcConfigError:
        raise
    except CodecConfigError as exc:  # BitReader's truncation error
        raise HevcConfigError(str(exc)) from None
    frame_rate = sps.frame_rate
    if frame_rate is None and nals.get(_NAL_VPS):
        frame_rate = _vps_frame_rate(nals[_NAL_VPS][0])
    if frame_rate is None and avg_frame_rate:
        frame_rate = avg_frame_rate / 256
    return HevcConfig(
        record=bytes(record),
        width=sps.width,
        height=sps.height,
        codecs=sps.profile.codecs("hvc1"),
        frame_rate=frame_rate,
        nal_length_size=nal_length_size,
    )
