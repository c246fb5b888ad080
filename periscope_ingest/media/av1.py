"""AV1 codec configuration: AV1CodecConfigurationRecord (av1C) and sequence header OBU parsing.

Pure functions, no I/O. Enhanced RTMP's AV1 "sequence start" carries an av1C record (AV1 Codec
ISO Media File Format Binding, section 2.3.3): four fixed bytes, then configOBUs holding the
sequence header OBU (AV1 5.5). We keep the record untouched (it becomes the muxer's extradata)
and read from the sequence header the maximum frame size and what the codecs string needs.

The codecs string follows the binding's "Codecs Parameter String" section:
``av01.P.LLT.DD[.M.CCC.cp.tc.mc.F]``. The optional part is written only when it differs from
the defaults the binding gives for its absence (4:2:0, BT.709, limited range), so a plain 8-bit
stream gets the short "av01.0.08M.08" that every player knows.

`filter_sample_obus` drops the OBUs the binding says an MP4 sample should not carry (temporal
delimiters, padding, tile lists): Enhanced RTMP forwards whole temporal units including them.
"""

from __future__ import annotations

from dataclasses import dataclass

from periscope_ingest.media.avc import BitReader, CodecConfigError

__all__ = ["Av1Config", "Av1ConfigError", "Av1SequenceHeader", "filter_sample_obus", "parse_av1c"]


class Av1ConfigError(CodecConfigError):
    """An av1C record or its sequence header OBU is malformed."""


OBU_SEQUENCE_HEADER = 1
OBU_TEMPORAL_DELIMITER = 2
OBU_TILE_LIST = 8
OBU_PADDING = 15
# 2.4 of the binding: these should not appear in samples (tile lists belong to large-scale
# tile decoding, which nobody streams live).
_DROPPED_IN_SAMPLES = frozenset({OBU_TEMPORAL_DELIMITER, OBU_TILE_LIST, OBU_PADDING})

_SELECT_SCREEN_CONTENT_TOOLS = 2
_CP_BT_709, _TC_SRGB, _MC_IDENTITY = 1, 13, 0
_UNSPECIFIED = 2
# Defaults of the optional codecs-string fields (mono, chroma, cp, tc, mc, range).
_DEFAULT_OPTIONAL = (0, "110", 1, 1, 1, 0)


@dataclass(frozen=True, slots=True)
class Av1SequenceHeader:
    """The fields of a sequence header OBU we use."""

    profile: int
    level: int  # seq_level_idx[0]
    tier: int  # seq_tier[0]
    bit_depth: int
    monochrome: bool
    subsampling_x: int
    subsampling_y: int
    chroma_sample_position: int
    color_primaries: int
    transfer_characteristics: int
    matrix_coefficients: int
    full_range: bool
    width: int  # max_frame_width_minus_1 + 1
    height: int
    frame_rate: float | None  # from timing_info with equal_picture_interval, else None

    @property
    def codecs(self) -> str:
        base = f"av01.{self.profile}.{self.level:02d}{'MH'[self.tier]}.{self.bit_depth:02d}"
        chroma = f"{self.subsampling_x}{self.subsampling_y}{self.chroma_sample_position}"
        optional = (
            int(self.monochrome),
            chroma,
            self.color_primaries,
            self.transfer_characteristics,
            self.matrix_coefficients,
            int(self.full_range),
        )
        colour = optional[2:5]
        defaults = _DEFAULT_OPTIONAL
        # An encoder that did not describe its colours (all "unspecified") means the default.
        if (
            optional[:2] == defaults[:2]
            and colour in (defaults[2:5], (_UNSPECIFIED,) * 3)
            and optional[5] == defaults[5]
        ):
            return base
        mono, chroma_text, cp, tc, mc, full = optional
        return f"{base}.{mono}.{chroma_text}.{cp:02d}.{tc:02d}.{mc:02d}.{full}"


@dataclass(frozen=True, slots=True)
class Av1Config:
    """What we know about an AV1 stream from its av1C record."""

    record: bytes  # the AV1CodecConfigurationRecord as received (extradata for the muxer)
    width: int  # the sequence header's maximum frame size
    height: int
    codecs: str  # e.g. "av01.0.08M.08"
    frame_rate: float | None  # only when the sequence header carries timing info


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if pos + i >= len(data):
            raise Av1ConfigError(f"leb128 truncated at byte {pos + i}")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    raise Av1ConfigError(f"leb128 longer than 8 bytes at byte {pos}")


def _obus(data: bytes) -> list[tuple[int, int, int, int]]:
    """Split low-overhead-format OBUs: (type, start, payload start, end) each."""
    obus = []
    pos = 0
    n = len(data)
    while pos < n:
        header = data[pos]
        if header & 0x80:
            raise Av1ConfigError(f"OBU at byte {pos} has its forbidden bit set")
        obu_type = (header >> 3) & 0x0F
        payload = pos + 1 + ((header >> 2) & 1)  # extension byte
        if header & 0x02:  # obu_has_size_field
            size, payload = _leb128(data, payload)
        else:
            size = n - payload  # the last OBU may run to the end
        end = payload + size
        if end > n:
            raise Av1ConfigError(f"OBU at byte {pos} claims {size} bytes, only {n - payload} left")
        obus.append((obu_type, pos, payload, end))
        pos = end
    return obus


def filter_sample_obus(sample: bytes) -> bytes:
    """Drop temporal delimiter, padding and tile list OBUs from one temporal unit.

    Returns the input unchanged (same object) when nothing needs dropping, which is the case
    for almost every frame after the first OBU, so the common path costs one header walk.
    """
    try:
        obus = _obus(sample)
    except Av1ConfigError:
        return sample  # not ours to repair: the decoder will complain with more context
    if not any(obu_type in _DROPPED_IN_SAMPLES for obu_type, *_ in obus):
        return sample
    return b"".join(
        sample[start:end]
        for obu_type, start, _payload, end in obus
        if obu_type not in _DROPPED_IN_SAMPLES
    )


def _uvlc(r: BitReader) -> int:
    zeros = 0
    while not r.flag():
        zeros += 1
        if zeros >= 32:
            return (1 << 32) - 1
    return r.u(zeros) + (1 << zeros) - 1


def parse_sequence_header(payload: bytes) -> Av1SequenceHeader:
    """Parse sequence_header_obu() (AV1 5.5.1) from the OBU payload (without the OBU header)."""
    r = BitReader(payload, "AV1 sequence header")
    profile = r.u(3)
    if profile > 2:
        raise Av1ConfigError(f"AV1 seq_profile {profile} is reserved")
    r.skip(1)  # still_picture
    reduced = r.flag()
    frame_rate: float | None = None
    if reduced:
        level, tier = r.u(5), 0
    else:
        decoder_model_info_present = False
        buffer_delay_length = 0
        if r.flag():  # timing_info_present_flag
            num_units_in_display_tick = r.u(32)
            time_scale = r.u(32)
            if r.flag():  # equal_picture_interval
                ticks_per_picture = _uvlc(r) + 1
                if num_units_in_display_tick and time_scale:
                    frame_rate = time_scale / (num_units_in_display_tick * ticks_per_picture)
            decoder_model_info_present = r.flag()
            if decoder_model_info_present:
                buffer_delay_length = r.u(5) + 1
                r.skip(32 + 5 + 5)
        initial_display_delay_present = r.flag()
        operating_points = r.u(5) + 1
        level = tier = 0
        for i in range(operating_points):
            r.skip(12)  # operating_point_idc
            op_level = r.u(5)
            op_tier = r.u(1) if op_level > 7 else 0
            if i == 0:
                level, tier = op_level, op_tier
            if decoder_model_info_present and r.flag():
                r.skip(2 * buffer_delay_length + 1)
            if initial_display_delay_present and r.flag():
                r.skip(4)
    width_bits = r.u(4) + 1
    height_bits = r.u(4) + 1
    width = r.u(width_bits) + 1
    height = r.u(height_bits) + 1
    if not reduced and r.flag():  # frame_id_numbers_present_flag
        r.skip(4 + 3)
    r.skip(3)  # use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if not reduced:
        r.skip(4)  # interintra, masked compound, warped motion, dual filter
        order_hint = r.flag()
        if order_hint:
            r.skip(2)  # enable_jnt_comp, enable_ref_frame_mvs
        force_screen_content_tools = (
            _SELECT_SCREEN_CONTENT_TOOLS if r.flag() else r.u(1)
        )  # seq_choose_screen_content_tools
        if force_screen_content_tools > 0 and not r.flag():  # seq_choose_integer_mv
            r.skip(1)  # seq_force_integer_mv
        if order_hint:
            r.skip(3)
    r.skip(3)  # enable_superres, enable_cdef, enable_restoration

    # color_config() (5.5.2)
    high_bitdepth = r.flag()
    if profile == 2 and high_bitdepth:
        bit_depth = 12 if r.flag() else 10
    else:
        bit_depth = 10 if high_bitdepth else 8
    monochrome = False if profile == 1 else r.flag()
    cp = tc = mc = _UNSPECIFIED
    if r.flag():  # color_description_present_flag
        cp, tc, mc = r.u(8), r.u(8), r.u(8)
    chroma_sample_position = 0
    if monochrome:
        full_range = r.flag()
        subsampling_x = subsampling_y = 1
    elif (cp, tc, mc) == (_CP_BT_709, _TC_SRGB, _MC_IDENTITY):
        full_range = True
        subsampling_x = subsampling_y = 0
    else:
        full_range = r.flag()
        if profile == 0:
            subsampling_x = subsampling_y = 1
        elif profile == 1:
            subsampling_x = subsampling_y = 0
        elif bit_depth == 12:
            subsampling_x = r.u(1)
            subsampling_y = r.u(1) if subsampling_x else 0
        else:
            subsampling_x, subsampling_y = 1, 0
        if subsampling_x and subsampling_y:
            chroma_sample_position = r.u(2)
    return Av1SequenceHeader(
        profile=profile,
        level=level,
        tier=tier,
        bit_depth=bit_depth,
        monochrome=monochrome,
        subsampling_x=subsampling_x,
        subsampling_y=subsampling_y,
        chroma_sample_position=chroma_sample_position,
        color_primaries=cp,
        transfer_characteristics=tc,
        matrix_coefficients=mc,
        full_range=full_range,
        width=width,
        height=height,
        frame_rate=frame_rate,
    )


def parse_av1c(record: bytes) -> Av1Config:
    """Parse an AV1CodecConfigurationRecord and the sequence header OBU in its configOBUs.

    Raises Av1ConfigError when the record is malformed or has no sequence header: without one
    the frame size is unknown (the binding requires it in configOBUs for exactly this reason).
    """
    n = len(record)
    if n < 4:
        raise Av1ConfigError(f"av1C record too short: {n} bytes, need at least 4")
    if record[0] != 0x81:
        # marker bit 1 and version 1; an OBU stream sent without the record lands here.
        raise Av1ConfigError(f"av1C starts with 0x{record[0]:02x}, expected 0x81 (version 1)")
    try:
        obus = _obus(record[4:])
    except Av1ConfigError as exc:
        raise Av1ConfigError(f"av1C configOBUs: {exc}") from None
    for obu_type, _start, payload, end in obus:
        if obu_type == OBU_SEQUENCE_HEADER:
            try:
                header = parse_sequence_header(record[4 + payload : 4 + end])
            except Av1ConfigError:
                raise
            except CodecConfigError as exc:  # BitReader's truncation error
                raise Av1ConfigError(str(exc)) from None
            break
    else:
        raise Av1ConfigError("av1C carries no sequence header OBU, so the frame size is unknown")
    return Av1Config(
        record=bytes(record),
        width=header.width,
        height=header.height,
        codecs=header.codecs,
        frame_rate=header.frame_rate,
    )
