"""Interop with ``spacepackets`` (0.32, Python, a peer no one here wrote): both directions.

Hypothesis draws structures; one library packs, the other unpacks; fields and bytes must agree.
Covers Space Packets (single and concatenated streams) and TM transfer frames.  The FECF that
spacepackets needs for frames it packs comes from the standard library (``binascii.crc_hqx``
with preset 0xFFFF is CRC-16/CCITT-FALSE), not from our CRC module.
"""

from __future__ import annotations

import binascii
from importlib import metadata

from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import PacketId, parse_space_packets
from spacepackets.ccsds.spacepacket import PacketType as SpPacketType
from spacepackets.ccsds.spacepacket import SequenceFlags as SpSequenceFlags
from spacepackets.ccsds.spacepacket import SpacePacket as SpSpacePacket
from spacepackets.ccsds.spacepacket import SpacePacketHeader as SpHeader
from spacepackets.ccsds.tm_frame import (
    MasterChannelId,
    TmFramePrimaryHeader,
    TmTransferFrame,
    TransferFrameDataFieldStatus,
    TransferFrameSecondaryHeader,
)

from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.space_packet import (
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
    split_packets,
)
from sdls_qkd.framing.tm import TmCodec, TmFrame, TmSecondaryHeader
from sdls_qkd.fuzz.packets import packet_headers, space_packets
from sdls_qkd.fuzz.tm import tm_channels, tm_frames


def test_spacepackets_version() -> None:
    assert metadata.version("spacepackets").startswith("0.32")


# --------------------------------------------------------------------------- Space Packets
@settings(max_examples=200, deadline=None)
@given(packet_headers())
def test_header_ours_to_theirs(header: SpacePacketHeader) -> None:
    theirs = SpHeader.unpack(header.pack())
    assert theirs.ccsds_version == 0
    assert int(theirs.packet_type) == int(header.packet_type)
    assert theirs.apid == header.apid
    assert theirs.sec_header_flag == header.sec_hdr_flag
    assert int(theirs.seq_flags) == int(header.sequence_flags)
    assert theirs.seq_count == header.sequence_count
    assert theirs.data_len == header.data_length
    assert theirs.packet_len == header.packet_length
    assert bytes(theirs.pack()) == header.pack()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1), st.integers(0, 0x7FE), st.integers(0, 0x3FFF), st.integers(0, 3),
       st.booleans(), st.binary(min_size=1, max_size=200))
def test_packet_theirs_to_ours(ptype: int, apid: int, count: int, flags: int, shf: bool,
                               data: bytes) -> None:
    header = SpHeader(packet_type=SpPacketType(ptype), apid=apid, seq_count=count,
                      data_len=len(data) - 1, sec_header_flag=shf,
                      seq_flags=SpSequenceFlags(flags))
    raw = bytes(SpSpacePacket(header, None, data).pack()) if not shf else bytes(
        SpSpacePacket(header, data[:1], data[1:]).pack())
    ours = SpacePacket.unpack(raw)
    assert ours.header == SpacePacketHeader(PacketType(ptype), apid, count, len(data) - 1, shf,
                                            SequenceFlags(flags))
    assert ours.data == data
    assert ours.pack() == raw


@settings(max_examples=100, deadline=None)
@given(st.lists(space_packets(max_data_field=100, apids=[0x10, 0x20, 0x7FF]), max_size=6),
       st.integers(0, 5))
def test_stream_split_agrees(packets: list[SpacePacket], cut: int) -> None:
    stream = b"".join(p.pack() for p in packets) + (packets[0].pack()[:cut] if packets else b"")
    ours, tail = split_packets(stream)
    ids = list({PacketId(SpPacketType(p.header.packet_type), p.header.sec_hdr_flag, p.apid)
                for p in packets})
    theirs = parse_space_packets(stream, ids)
    assert [bytes(t) for t in theirs.tm_list] == [p.pack() for p in ours]
    assert ours == packets
    assert tail == stream[theirs.scanned_bytes:]


# --------------------------------------------------------------------------- TM frames
@settings(max_examples=150, deadline=None)
@given(tm_frames())
def test_tm_ours_to_theirs(case: tuple[TmChannel, TmFrame]) -> None:
    channel, frame = case
    raw = frame.pack(channel)
    theirs = TmTransferFrame.unpack(raw, channel.frame_length, channel.has_fecf)
    ph = theirs.primary_header
    h = frame.header
    assert ph.master_channel_id.transfer_frame_version == h.tfvn
    assert ph.master_channel_id.spacecraft_id == h.scid
    assert ph.vc_id == h.vcid and ph.ocf_flag == h.ocf_flag
    assert ph.master_ch_frame_count == h.mc_frame_count
    assert ph.vc_frame_count == h.vc_frame_count
    st_ = ph.frame_datafield_status
    assert (st_.secondary_header_flag, st_.sync_flag, st_.packet_order_flag, st_.segment_len_id,
            st_.first_header_pointer) == (h.secondary_header_flag, h.sync_flag,
                                          h.packet_order_flag, h.segment_length_id,
                                          h.first_header_pointer)
    if frame.secondary_header is None:
        assert theirs.secondary_header is None
    else:
        assert theirs.secondary_header is not None
        assert theirs.secondary_header.version_number == frame.secondary_header.version
        assert bytes(theirs.secondary_header.data_field) == frame.secondary_header.data
    assert bytes(theirs.data_field) == frame.data
    assert (bytes(theirs.op_ctrl_field) if theirs.op_ctrl_field is not None else None) == frame.ocf
    if channel.has_fecf:
        assert theirs.frame_error_control is not None
        assert int.from_bytes(theirs.frame_error_control, "big") == frame.fecf
    assert bytes(theirs.pack()) == raw


@st.composite
def their_frames(draw: st.DrawFn) -> tuple[TmChannel, bytes]:
    """A channel and the octets of a frame packed by spacepackets."""
    ch = draw(tm_channels())
    sh = None
    if ch.secondary_header_length:
        sh = TransferFrameSecondaryHeader(
            version_number=draw(st.integers(0, 3)),
            secondary_header_len=ch.secondary_header_length - 1,
            data_field=draw(st.binary(min_size=ch.secondary_header_length - 1,
                                      max_size=ch.secondary_header_length - 1)))
    status = TransferFrameDataFieldStatus(
        secondary_header_flag=sh is not None, sync_flag=draw(st.booleans()),
        packet_order_flag=draw(st.booleans()), segment_len_id=draw(st.integers(0, 3)),
        first_header_pointer=draw(st.integers(0, 0x7FF)))
    header = TmFramePrimaryHeader(
        MasterChannelId(0, ch.scid), ch.vcid, ch.has_ocf, draw(st.integers(0, 255)),
        draw(st.integers(0, 255)), status)
    data = draw(st.binary(min_size=ch.data_field_length, max_size=ch.data_field_length))
    ocf = draw(st.binary(min_size=4, max_size=4)) if ch.has_ocf else None
    body = bytes(TmTransferFrame(ch.frame_length - 2 * ch.has_fecf, header, sh, data, ocf,
                                 None).pack())
    fecf = binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big") if ch.has_fecf else None
    raw = bytes(TmTransferFrame(ch.frame_length, header, sh, data, ocf, fecf).pack())
    return ch, raw


@settings(max_examples=150, deadline=None)
@given(their_frames())
def test_tm_theirs_to_ours(case: tuple[TmChannel, bytes]) -> None:
    channel, raw = case
    theirs = TmTransferFrame.unpack(raw, channel.frame_length, channel.has_fecf)
    ours = TmFrame.unpack(raw, channel)
    ph, h = theirs.primary_header, ours.header
    assert (h.scid, h.vcid, h.ocf_flag, h.mc_frame_count, h.vc_frame_count) == (
        ph.master_channel_id.spacecraft_id, ph.vc_id, ph.ocf_flag, ph.master_ch_frame_count,
        ph.vc_frame_count)
    s = ph.frame_datafield_status
    assert (h.secondary_header_flag, h.sync_flag, h.packet_order_flag, h.segment_length_id,
            h.first_header_pointer) == (s.secondary_header_flag, s.sync_flag,
                                        s.packet_order_flag, s.segment_len_id,
                                        s.first_header_pointer)
    if theirs.secondary_header is not None:
        assert ours.secondary_header == TmSecondaryHeader(
            bytes(theirs.secondary_header.data_field), theirs.secondary_header.version_number)
    assert ours.data == bytes(theirs.data_field)
    view = TmCodec(channel).parse(raw)
    assert view.data == ours.data and view.ocf == ours.ocf
    assert ours.pack(channel) == raw
