"""Hypothesis strategies for TC frames: channels, valid frames, and mutated frame octets.

Mutants are drawn raw (the FECF no longer matches: the parser must stop at the CRC) and resealed
(FECF recomputed) so that the header and length checks behind the CRC are exercised too.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sdls_qkd.framing.channel import TcChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.space_packet import SequenceFlags
from sdls_qkd.framing.tc import SetVr, TcFrame, TcFrameType, Unlock
from sdls_qkd.fuzz.packets import LengthField, mutated_bytes

__all__ = ["TC_LENGTH_FIELDS", "mutated_tc_bytes", "reseal_tc", "tc_channels", "tc_frame_bytes",
           "tc_frames"]

#: the 10-bit frame length field (bits 22-31)
TC_LENGTH_FIELDS = (LengthField(22, 10),)


def reseal_tc(data: bytes) -> bytes:
    """Replace the last two octets by the CRC of the rest (a frame with a FECF)."""
    if len(data) < 3:
        return data
    return data[:-2] + crc16(data[:-2]).to_bytes(2, "big")


@st.composite
def tc_channels(draw: st.DrawFn) -> TcChannel:
    """Any valid TC channel (segment header and FECF on or off)."""
    seg = draw(st.booleans())
    return TcChannel(scid=draw(st.integers(0, 0x3FF)), vcid=draw(st.integers(0, 63)),
                     has_segment_header=seg,
                     map_id=draw(st.integers(0, 63)) if seg else None,
                     has_fecf=draw(st.booleans()),
                     max_frame_length=draw(st.sampled_from([1024, 1024, 64, 300])))


@st.composite
def tc_frames(draw: st.DrawFn, channel: TcChannel | None = None) -> tuple[TcChannel, TcFrame]:
    """(channel, valid frame of that channel): AD/BD data frames and BC control commands."""
    ch = channel if channel is not None else draw(tc_channels())
    frame_type = draw(st.sampled_from(TcFrameType))
    if frame_type == TcFrameType.BC:
        command = draw(st.one_of(st.just(Unlock()), st.integers(0, 255).map(SetVr)))
        return ch, TcFrame.build(ch, command, frame_type=frame_type,
                                 frame_sequence_number=draw(st.integers(0, 255)))
    overhead = 5 + (1 if ch.has_segment_header else 0) + (2 if ch.has_fecf else 0)
    data = draw(st.binary(min_size=1, max_size=min(ch.max_frame_length - overhead, 200)))
    return ch, TcFrame.build(ch, data, frame_type=frame_type,
                             frame_sequence_number=draw(st.integers(0, 255)),
                             sequence_flags=draw(st.sampled_from(SequenceFlags)),
                             map_id=draw(st.integers(0, 63)))


@st.composite
def tc_frame_bytes(draw: st.DrawFn, channel: TcChannel | None = None) -> tuple[TcChannel, bytes]:
    """(channel, octets of a valid frame)."""
    ch, frame = draw(tc_frames(channel))
    return ch, frame.pack(ch)


@st.composite
def mutated_tc_bytes(draw: st.DrawFn) -> tuple[TcChannel, bytes]:
    """(channel, mutated frame octets): may be valid or not."""
    ch, data = draw(tc_frame_bytes())
    return ch, draw(mutated_bytes(data, header_length=ch.header_length,
                                  length_fields=TC_LENGTH_FIELDS,
                                  reseal=reseal_tc if ch.has_fecf else None))
