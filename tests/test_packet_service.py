"""Packet service: packets in/out of fixed-length TM frames (FHP, spanning, idle fill, loss,
resynchronisation), the generic zone logic for other frame types, and TC segmentation."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidConfiguration, InvalidFrameLength, InvalidHeader, SdlsQkdError
from sdls_qkd.framing.channel import TcChannel, TmChannel
from sdls_qkd.framing.packet_service import (
    FHP_USLP,
    Anomaly,
    AnomalyKind,
    FhpCodes,
    FrameCountTracker,
    PacketZoneReader,
    PacketZoneWriter,
    TcPacketSender,
    TcSegmentReassembler,
    TmPacketReceiver,
    TmPacketSender,
    segment,
)
from sdls_qkd.framing.space_packet import PacketType, SequenceFlags, SpacePacket
from sdls_qkd.framing.tc import TcFrame, TcFrameType
from sdls_qkd.framing.tm import FHP_IDLE, FHP_NO_PACKET_START, TmCodec
from sdls_qkd.fuzz.packets import space_packets


def pkt(apid: int, size: int, count: int = 0) -> SpacePacket:
    """A packet of ``size`` total octets."""
    return SpacePacket.build(PacketType.TM, apid, bytes([apid & 0xFF]) * (size - 6),
                             sequence_count=count)


def kinds(anomalies: list[Anomaly]) -> list[AnomalyKind]:
    return [a.kind for a in anomalies]


# --------------------------------------------------------------------------- zone writer
def test_writer_hand_example() -> None:
    a, b = pkt(1, 10), pkt(2, 15)
    w = PacketZoneWriter(20)
    w.put_all([a, b])
    z1 = w.take_zone()
    assert z1 is not None and z1.first_header_pointer == 0
    assert z1.data == a.pack() + b.pack()[:10]
    z2 = w.take_zone()
    assert z2 is not None and z2.first_header_pointer == 5  # B's last 5 octets come first
    assert z2.data[:5] == b.pack()[10:]
    idle = SpacePacket.unpack(z2.data[5:])  # 15-octet idle packet fills the rest
    assert idle.is_idle and len(idle) == 15
    z3 = w.take_zone()
    assert z3 is not None and z3.first_header_pointer == FHP_IDLE and z3.data == b"\x55" * 20


def test_writer_spanning_and_short_gap() -> None:
    big = pkt(3, 50)
    w = PacketZoneWriter(20)
    w.put(big)
    fhps = []
    while w.pending:
        zone = w.take_zone()
        assert zone is not None
        fhps.append(zone.first_header_pointer)
    # 50 octets: zone 1 starts it, zone 2 is all middle, zone 3 ends it at 10 then idle (10)
    assert fhps == [0, FHP_NO_PACKET_START, 10]
    w.put(pkt(4, 17))  # leaves a 3-octet gap: the idle packet (7) spills into the next zone
    z = w.take_zone()
    assert z is not None and z.first_header_pointer == 0 and w.pending == 4
    z = w.take_zone()
    assert z is not None and z.first_header_pointer == 4  # after the idle packet's tail
    assert w.take_zone(fill=False) is None


def test_writer_rejects_bad_input() -> None:
    with pytest.raises(InvalidConfiguration):
        PacketZoneWriter(2047)  # offsets up to 2046 > 0x7FD
    w = PacketZoneWriter(20)
    with pytest.raises(InvalidConfiguration):
        w.put(pkt(1, 10).pack()[:-1])
    with pytest.raises(InvalidConfiguration):
        w.put(b"\xe0" + pkt(1, 10).pack()[1:])


# --------------------------------------------------------------------------- TM end to end
CH = TmChannel(scid=42, vcid=3, frame_length=64, has_ocf=False)


def send_all(packets: list[SpacePacket], channel: TmChannel = CH) -> list[bytes]:
    sender = TmPacketSender(channel)
    for p in packets:
        sender.put(p)
    return sender.frames(flush=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(space_packets(max_data_field=150), min_size=1, max_size=10))
def test_tm_round_trip(packets: list[SpacePacket]) -> None:
    frames = send_all([p for p in packets if not p.is_idle])
    receiver = TmPacketReceiver(CH)
    got: list[SpacePacket] = []
    for i, frame in enumerate(frames):
        view = TmCodec(CH).parse(frame)
        assert view.vc_frame_count == i % 256
        result = receiver.receive(frame)
        assert result.anomalies == []
        got += result.packets
    assert got == [p for p in packets if not p.is_idle]


def test_tm_frames_carry_the_fhp() -> None:
    frames = send_all([pkt(7, 100), pkt(8, 30)])
    fhps = [TmCodec(CH).parse(f).first_header_pointer for f in frames]
    # data field 56: [A 0..56) [A 56..100 (44) | B 12] [B 18 | idle]
    assert fhps == [0, 44, 18]


def test_loss_detection_and_resync() -> None:
    packets = [pkt(10 + i, 40, i) for i in range(8)]  # 320 octets over 56-octet zones
    frames = send_all(packets)
    receiver = TmPacketReceiver(CH)
    got: list[SpacePacket] = []
    anomalies = []
    for i, frame in enumerate(frames):
        if i == 2:
            continue  # lost on the link
        result = receiver.receive(frame)
        got += result.packets
        anomalies += result.anomalies
    assert AnomalyKind.FRAMES_LOST in kinds(anomalies)
    lost = next(a for a in anomalies if a.kind is AnomalyKind.FRAMES_LOST)
    assert lost.count == 1
    # frame 2 covers stream octets 112..167: packets 2 (80..119), 3 (120..159), 4 (160..199)
    assert [p.sequence_count for p in got] == [0, 1, 5, 6, 7]
    assert got == [packets[i] for i in (0, 1, 5, 6, 7)]


def test_receiver_starting_mid_stream_skips_to_fhp() -> None:
    frames = send_all([pkt(5, 150), pkt(6, 10)])  # frame 0, 1 (no start), 2 (end, then pkt 6)
    receiver = TmPacketReceiver(CH)
    r1 = receiver.receive(frames[1])
    assert r1.packets == [] and kinds(r1.anomalies) == [AnomalyKind.OCTETS_SKIPPED]
    r2 = receiver.receive(frames[2])
    assert r2.packets == [pkt(6, 10)]
    assert AnomalyKind.OCTETS_SKIPPED in kinds(r2.anomalies)


def test_corrupt_packet_header_resyncs_at_next_fhp() -> None:
    packets = [pkt(20 + i, 30, i) for i in range(6)]
    frames = send_all(packets)
    codec = TmCodec(CH)
    receiver = TmPacketReceiver(CH)
    got = []
    for i, frame in enumerate(frames):
        if i == 0:
            v = codec.parse(frame)
            data = bytearray(v.data)
            data[30] = 0xE0  # packet 1's version field -> 7
            frame = codec.build(bytes(data), mc_frame_count=v.mc_frame_count,
                                vc_frame_count=v.vc_frame_count,
                                first_header_pointer=v.first_header_pointer)
        result = receiver.receive(frame)
        got += result.packets
        if i == 0:
            assert kinds(result.anomalies) == [AnomalyKind.BAD_PACKET_HEADER]
    # packet 1 is lost; frame 1 (FHP 4) resynchronises at packet 2
    assert [p.sequence_count for p in got] == [0, 2, 3, 4, 5]


def test_fhp_inconsistent_with_open_packet() -> None:
    reader = PacketZoneReader(20, count_modulus=None)
    a = pkt(1, 30).pack()
    assert reader.push(a[:20], 0).packets == []
    # the sender claims a new packet at 5, but 10 octets of A are missing
    b = pkt(2, 15).pack()
    result = reader.push(a[20:25] + b, 5)
    assert kinds(result.anomalies) == [AnomalyKind.FHP_MISMATCH, AnomalyKind.PACKET_LOST]
    assert result.packets == [SpacePacket.unpack(b)]


def test_bad_zone_is_rejected_without_state_change() -> None:
    reader = PacketZoneReader(20, count_modulus=256)
    a = pkt(1, 30).pack()
    reader.push(a[:20], 0, frame_count=0)
    with pytest.raises(InvalidHeader, match="first header pointer 20 is beyond the 20-octet"):
        reader.push(bytes(20), 20, frame_count=1)
    with pytest.raises(InvalidFrameLength, match="must be 20 octets, got 19"):
        reader.push(bytes(19), 0, frame_count=1)
    result = reader.push(a[20:] + bytes(10), FHP_IDLE, frame_count=1)  # count 1 is still next
    assert AnomalyKind.FRAMES_LOST not in kinds(result.anomalies)


def test_sync_flag_frames_are_rejected() -> None:
    codec = TmCodec(CH)
    frame = codec.build(bytes(56), mc_frame_count=0, vc_frame_count=0, sync_flag=True)
    with pytest.raises(InvalidHeader, match="sync flag"):
        TmPacketReceiver(CH).receive(frame)


def test_frame_count_tracker() -> None:
    t = FrameCountTracker(256)
    assert t.gap(7) == 0
    t.advance(255)
    assert t.gap(0) == 0 and t.gap(2) == 2
    with pytest.raises(InvalidConfiguration):
        FrameCountTracker(1)


# --------------------------------------------------------------------------- other frame types
@settings(max_examples=40, deadline=None)
@given(st.lists(space_packets(max_data_field=80), min_size=1, max_size=8),
       st.integers(8, 90))
def test_generic_zone_logic_16bit_fhp(packets: list[SpacePacket], zone_length: int) -> None:
    """USLP-like FHP (0xFFFF = no start, no idle-only code) and a 24-bit AOS-like counter."""
    codes = FHP_USLP
    assert codes == FhpCodes(no_packet_start=0xFFFF, idle_only=None)
    writer = PacketZoneWriter(zone_length, fhp=codes)
    reader = PacketZoneReader(zone_length, fhp=codes, count_modulus=1 << 24)
    real = [p for p in packets if not p.is_idle]
    writer.put_all(real)
    got: list[SpacePacket] = []
    count = (1 << 24) - 2  # wraps during the test
    while writer.pending:
        zone = writer.take_zone()
        assert zone is not None
        result = reader.push(zone.data, zone.first_header_pointer, count % (1 << 24))
        assert result.anomalies == []
        got += result.packets
        count += 1
    assert got == real


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=16, max_size=16),
                          st.one_of(st.integers(0, 15), st.sampled_from([0x7FE, 0x7FF]),
                                    st.integers(0, 0x7FF)),
                          st.integers(0, 255)), max_size=12))
def test_reader_survives_garbage(zones: list[tuple[bytes, int, int]]) -> None:
    reader = PacketZoneReader(16)
    for data, fhp, count in zones:
        with contextlib.suppress(SdlsQkdError):
            reader.push(data, fhp, count)


def is_subsequence(sub: list[SpacePacket], seq: list[SpacePacket]) -> bool:
    it = iter(seq)
    return all(any(x == y for y in it) for x in sub)


@settings(max_examples=60, deadline=None)
@given(st.lists(space_packets(max_data_field=120), min_size=1, max_size=12),
       st.sets(st.integers(0, 40), max_size=5))
def test_lossy_link_delivers_a_subsequence(packets: list[SpacePacket], drops: set[int]) -> None:
    real = [p for p in packets if not p.is_idle]
    frames = send_all(real)
    receiver = TmPacketReceiver(CH)
    got: list[SpacePacket] = []
    lost_reported = 0
    for i, frame in enumerate(frames):
        if i in drops:
            continue
        result = receiver.receive(frame)
        got += result.packets
        lost_reported += sum(a.count for a in result.anomalies
                             if a.kind is AnomalyKind.FRAMES_LOST)
    assert is_subsequence(got, real)
    first_drop = min((d for d in drops if d < len(frames)), default=None)
    if first_drop is None:
        assert got == real
    else:
        # every drop between two received frames is reported (one before the first received
        # frame cannot be seen)
        received = [i for i in range(len(frames)) if i not in drops]
        if received:
            assert lost_reported == sum(1 for d in drops if received[0] < d < received[-1])


# --------------------------------------------------------------------------- TC segmentation
def test_segment_flags() -> None:
    assert segment(b"abc", 3) == [(SequenceFlags.UNSEGMENTED, b"abc")]
    assert segment(b"abcdefg", 3) == [(SequenceFlags.FIRST, b"abc"),
                                      (SequenceFlags.CONTINUATION, b"def"),
                                      (SequenceFlags.LAST, b"g")]
    assert segment(b"abcdef", 3) == [(SequenceFlags.FIRST, b"abc"), (SequenceFlags.LAST, b"def")]
    with pytest.raises(InvalidConfiguration):
        segment(b"", 3)


def test_tc_segmentation_round_trip_through_frames() -> None:
    ch = TcChannel(scid=0x123, vcid=1, has_segment_header=True, map_id=2, max_frame_length=64)
    sender = TcPacketSender(ch)
    big = SpacePacket.build(PacketType.TC, 0x55, bytes(range(200)), sequence_count=3)
    frames = sender.frames_for(big)
    assert sender.max_data == 64 - 5 - 1 - 2 == 56
    assert len(frames) == 4  # 206 octets = 56 + 56 + 56 + 38
    flags = [f.segment_header.sequence_flags for f in frames if f.segment_header]
    assert flags == [SequenceFlags.FIRST, SequenceFlags.CONTINUATION,
                     SequenceFlags.CONTINUATION, SequenceFlags.LAST]
    assert [f.header.frame_sequence_number for f in frames] == [0, 1, 2, 3]
    raws = [f.pack(ch) for f in frames]
    # segment header octet of the first frame: flags 01, MAP 2 -> 0x42
    assert raws[0][5] == 0x42 and all(len(r) <= 64 for r in raws)
    reasm = TcSegmentReassembler(ch)
    got = []
    for raw in raws:
        got += reasm.push(TcFrame.unpack(raw, ch)).packets
    assert got == [big]
    small = sender.frames_for(SpacePacket.build(PacketType.TC, 0x55, b"\x01"))
    assert len(small) == 1 and small[0].segment_header is not None
    assert small[0].segment_header.sequence_flags == SequenceFlags.UNSEGMENTED


def test_tc_reassembly_per_map_and_anomalies() -> None:
    ch = TcChannel(scid=1, vcid=1, has_segment_header=True, map_id=0, max_frame_length=32)
    sender = TcPacketSender(ch, frame_type=TcFrameType.BD)
    p1 = SpacePacket.build(PacketType.TC, 1, bytes(50))
    p2 = SpacePacket.build(PacketType.TC, 2, bytes(40))
    f1 = sender.frames_for(p1, map_id=1)
    f2 = sender.frames_for(p2, map_id=2)
    assert all(f.header.frame_sequence_number == 0 for f in f1 + f2)  # BD frames
    reasm = TcSegmentReassembler(ch)
    got = []
    for a, b in zip(f1, f2, strict=False):  # interleave the two MAPs
        got += reasm.push(a).packets + reasm.push(b).packets
    for rest in f1[len(f2):] + f2[len(f1):]:
        got += reasm.push(rest).packets
    assert sorted(p.apid for p in got) == [1, 2]
    # continuation without a first
    result = reasm.push(f1[1])
    assert kinds(result.anomalies) == [AnomalyKind.SEGMENT_OUT_OF_ORDER]
    # a new FIRST abandons an open packet
    reasm.push(f1[0])
    result = reasm.push(f1[0])
    assert kinds(result.anomalies) == [AnomalyKind.PACKET_LOST]


def test_tc_without_segment_header() -> None:
    ch = TcChannel(scid=1, vcid=1, max_frame_length=40)
    sender = TcPacketSender(ch)
    with pytest.raises(InvalidConfiguration, match="does not fit a 33-octet data field"):
        sender.frames_for(SpacePacket.build(PacketType.TC, 1, bytes(40)))
    frame = sender.frames_for(SpacePacket.build(PacketType.TC, 1, bytes(5)))[0]
    assert TcSegmentReassembler(ch).push(TcFrame.unpack(frame.pack(ch), ch)).packets[0].apid == 1
    with pytest.raises(InvalidConfiguration):
        TcPacketSender(ch, frame_type=TcFrameType.BC)


@settings(max_examples=60, deadline=None)
@given(st.lists(space_packets(max_data_field=300), min_size=1, max_size=5),
       st.integers(16, 120))
def test_tc_segmentation_property(packets: list[SpacePacket], max_frame: int) -> None:
    ch = TcChannel(scid=9, vcid=9, has_segment_header=True, map_id=1,
                   max_frame_length=max_frame)
    sender = TcPacketSender(ch)
    reasm = TcSegmentReassembler(ch)
    got = []
    for p in packets:
        for frame in sender.frames_for(p):
            result = reasm.push(TcFrame.unpack(frame.pack(ch), ch))
            assert result.anomalies == []
            got += result.packets
    assert got == packets


def test_empty_stream_without_idle_only_code_gives_idle_packets() -> None:
    writer = PacketZoneWriter(30, fhp=FHP_USLP)
    zone = writer.take_zone()
    assert zone is not None and zone.first_header_pointer == 0
    idle = SpacePacket.unpack(zone.data)
    assert idle.is_idle and len(idle) == 30
    reader = PacketZoneReader(30, fhp=FHP_USLP, count_modulus=None)
    result = reader.push(zone.data, zone.first_header_pointer)
    assert result.packets == [] and result.idle_packets == 1 and result.anomalies == []
