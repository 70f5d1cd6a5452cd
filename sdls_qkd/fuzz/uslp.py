"""Hypothesis strategies for USLP frames: channels (fixed, variable, truncated; FECF 16/32 bit),
valid frames, and mutated frame bytes (truncations, Frame Length field at 0 / max / off by one,
every header bit flipped, random bytes), raw or with the FECF resealed."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from sdls_qkd.framing.channel import UslpChannel
from sdls_qkd.framing.uslp import (
    NO_POINTER,
    TRUNCATED_MAX_LENGTH,
    TRUNCATED_MIN_LENGTH,
    BypassFlag,
    ConstructionRule,
    ProtocolControlCommandFlag,
    SourceDestFlag,
    TfdfHeader,
    UslpFrame,
    UslpPrimaryHeader,
)
from sdls_qkd.fuzz.aos import mutations, reseal_fecf

__all__ = [
    "mutated_uslp_bytes",
    "uslp_channels",
    "uslp_frame_bytes",
    "uslp_frames",
]

FIXED_RULES = [ConstructionRule(r) for r in range(0, 3)]
VARIABLE_RULES = [ConstructionRule(r) for r in range(3, 8)]


@st.composite
def uslp_channels(draw: st.DrawFn, *, kind: str | None = None,
                  fecf_lengths: tuple[int, ...] = (2, 4),
                  max_frame_length: int = 200) -> UslpChannel:
    """A valid USLP channel; ``kind`` is "fixed", "variable", "truncated" or None (any)."""
    kind = kind or draw(st.sampled_from(["fixed", "variable", "truncated"]))
    has_fecf = draw(st.booleans())
    fecf_length = draw(st.sampled_from(fecf_lengths))
    ids: dict[str, Any] = {"scid": draw(st.integers(0, 0xFFFF)), "vcid": draw(st.integers(0, 63)),
                           "map_id": draw(st.integers(0, 15))}
    trailer = fecf_length if has_fecf else 0
    if kind == "truncated":
        lo = max(TRUNCATED_MIN_LENGTH, 4 + 1 + trailer)
        return UslpChannel(**ids, truncated=True, has_fecf=has_fecf, fecf_length=fecf_length,
                           frame_length=draw(st.integers(lo, TRUNCATED_MAX_LENGTH)))
    has_ocf = draw(st.booleans())
    iz = draw(st.sampled_from([0, 0, 2, 5]))
    count_len = draw(st.integers(0, 7))
    header = 7 + count_len + iz
    trailer += 4 * has_ocf
    if kind == "fixed":
        length = draw(st.integers(header + 3 + trailer + 1, header + 3 + trailer + max_frame_length))
        return UslpChannel(**ids, frame_length=length, has_fecf=has_fecf, fecf_length=fecf_length,
                           has_ocf=has_ocf, insert_zone_length=iz, vc_frame_count_length=count_len)
    return UslpChannel(**ids, has_fecf=has_fecf, fecf_length=fecf_length, has_ocf=has_ocf,
                       insert_zone_length=iz, vc_frame_count_length=count_len,
                       max_frame_length=draw(st.sampled_from([header + trailer + 1 + max_frame_length,
                                                              65536])))


@st.composite
def uslp_frames(draw: st.DrawFn,
                channel: UslpChannel | st.SearchStrategy[UslpChannel] | None = None,
                ) -> tuple[UslpChannel, UslpFrame]:
    """(channel, valid frame of that channel); ``channel`` may be fixed, a strategy, or None."""
    if channel is None:
        channel = uslp_channels()
    ch = draw(channel) if isinstance(channel, st.SearchStrategy) else channel
    fixed = ch.frame_length is not None and not ch.truncated
    rule = draw(st.sampled_from(FIXED_RULES if fixed else VARIABLE_RULES))
    tfdf_len = 3 if rule.has_pointer else 1
    if ch.frame_length is not None:
        zlen = ch.frame_length - ch.header_length - ch.trailer_length - tfdf_len
    else:
        room = min(ch.max_frame_length, 400) - ch.header_length - ch.trailer_length - tfdf_len
        zlen = draw(st.integers(0, max(room, 0)))
    tfdz = draw(st.binary(min_size=zlen, max_size=zlen))
    pointer = None
    if rule.has_pointer:
        pointer = draw(st.one_of(st.just(NO_POINTER), st.integers(0, max(zlen - 1, 0)))
                       if zlen else st.just(NO_POINTER))
    src = draw(st.sampled_from(list(SourceDestFlag)))
    if ch.truncated:
        header = UslpPrimaryHeader(ch.scid, ch.vcid, ch.map_id, src, True)
    else:
        n = ch.vc_frame_count_length
        header = UslpPrimaryHeader(
            ch.scid, ch.vcid, ch.map_id, src, False, None,
            draw(st.sampled_from(list(BypassFlag))),
            draw(st.sampled_from(list(ProtocolControlCommandFlag))), ch.has_ocf, n,
            draw(st.integers(0, (1 << (8 * n)) - 1)))
    return ch, UslpFrame(
        header, TfdfHeader(rule, draw(st.integers(0, 31)), pointer), tfdz,
        draw(st.binary(min_size=ch.insert_zone_length, max_size=ch.insert_zone_length)),
        draw(st.binary(min_size=4, max_size=4)) if ch.has_ocf else None)


@st.composite
def uslp_frame_bytes(draw: st.DrawFn,
                     channel: UslpChannel | st.SearchStrategy[UslpChannel] | None = None,
                     ) -> tuple[UslpChannel, bytes]:
    """(channel, octets of a valid frame)."""
    ch, frame = draw(uslp_frames(channel))
    return ch, frame.pack(ch)


def _with_length_field(data: bytes, value: int) -> bytes:
    if len(data) < 6:
        return data
    return data[:4] + value.to_bytes(2, "big") + data[6:]


@st.composite
def mutated_uslp_bytes(draw: st.DrawFn) -> tuple[UslpChannel, bytes]:
    """(channel, mutated frame octets) - any of them may be valid or invalid."""
    ch, data = draw(uslp_frame_bytes())
    flen = ch.fecf_length if ch.has_fecf else 0

    def reseal(b: bytes) -> bytes:
        return reseal_fecf(b, flen)

    n = len(data)
    length_field = st.sampled_from([0, 0xFFFF, n - 2, n]).map(
        lambda v: _with_length_field(data, v & 0xFFFF))
    header_length = ch.header_length + 3
    return ch, draw(st.one_of(mutations(data, header_length, reseal),
                              length_field, length_field.map(reseal)))
