"""Hypothesis strategies for TM frames: channels, valid frames, and mutated frame octets.

Mutants are drawn raw and resealed (FECF recomputed) so that the checks behind the CRC are
reached.  The length fields mutated are the First Header Pointer (it locates packets) and the
secondary header length.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.tm import TmFrame, TmSecondaryHeader
from sdls_qkd.fuzz.ocf import ocf_words
from sdls_qkd.fuzz.packets import LengthField, mutated_bytes

__all__ = ["TM_LENGTH_FIELDS", "mutated_tm_bytes", "reseal_tm", "tm_channels", "tm_frame_bytes",
           "tm_frames"]

#: first header pointer (bits 37-47) and secondary header length (bits 50-55)
TM_LENGTH_FIELDS = (LengthField(37, 11), LengthField(50, 6))


def reseal_tm(data: bytes) -> bytes:
    """Replace the last two octets by the CRC of the rest."""
    if len(data) < 3:
        return data
    return data[:-2] + crc16(data[:-2]).to_bytes(2, "big")


@st.composite
def tm_channels(draw: st.DrawFn, *, max_frame_length: int = 300) -> TmChannel:
    """Any valid TM channel (secondary header, OCF, FECF on or off)."""
    sh = draw(st.sampled_from([0, 0, 2, 5, 64]))
    has_ocf = draw(st.booleans())
    has_fecf = draw(st.booleans())
    minimum = 6 + sh + 4 * has_ocf + 2 * has_fecf + 1
    length = draw(st.integers(minimum, max(minimum, max_frame_length)))
    return TmChannel(scid=draw(st.integers(0, 0x3FF)), vcid=draw(st.integers(0, 7)),
                     frame_length=length, has_ocf=has_ocf, has_fecf=has_fecf,
                     secondary_header_length=sh)


@st.composite
def tm_frames(draw: st.DrawFn, channel: TmChannel | None = None) -> tuple[TmChannel, TmFrame]:
    """(channel, valid frame of that channel)."""
    ch = channel if channel is not None else draw(tm_channels())
    dlen = ch.data_field_length
    sh = None
    if ch.secondary_header_length:
        sh = TmSecondaryHeader(draw(st.binary(min_size=ch.secondary_header_length - 1,
                                              max_size=ch.secondary_header_length - 1)),
                               version=draw(st.integers(0, 3)))
    sync = draw(st.booleans())
    return ch, TmFrame.build(
        ch, draw(st.binary(min_size=dlen, max_size=dlen)),
        mc_frame_count=draw(st.integers(0, 255)), vc_frame_count=draw(st.integers(0, 255)),
        first_header_pointer=draw(st.integers(0, 0x7FF)),
        ocf=draw(ocf_words()) if ch.has_ocf else None, secondary_header=sh, sync_flag=sync,
        packet_order_flag=draw(st.booleans()) if sync else False,
        segment_length_id=draw(st.integers(0, 3)) if sync else 3)


@st.composite
def tm_frame_bytes(draw: st.DrawFn, channel: TmChannel | None = None) -> tuple[TmChannel, bytes]:
    """(channel, octets of a valid frame)."""
    ch, frame = draw(tm_frames(channel))
    return ch, frame.pack(ch)


@st.composite
def mutated_tm_bytes(draw: st.DrawFn) -> tuple[TmChannel, bytes]:
    """(channel, mutated frame octets): may be valid or not."""
    ch, data = draw(tm_frame_bytes())
    return ch, draw(mutated_bytes(data, header_length=ch.header_length,
                                  length_fields=TM_LENGTH_FIELDS,
                                  reseal=reseal_tm if ch.has_fecf else None))
