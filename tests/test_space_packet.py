"""Space Packets (133.0-B-2): worked values, strict lengths, streams, counters, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidConfiguration, InvalidFrameLength, InvalidHeader, SdlsQkdError
from sdls_qkd.framing.space_packet import (
    IDLE_APID,
    MAX_PACKET_LENGTH,
    PacketStreamParser,
    PacketType,
    SequenceCounter,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
    packet_length_at,
    sequence_gap,
    split_packets,
)
from sdls_qkd.fuzz.packets import (
    mutated_packet_stream,
    packet_headers,
    packet_streams,
    space_packets,
)


def test_worked_header_from_digest() -> None:
    # space-packet.md 1.1: TC, SHF=1, APID 0x073, seq flags 11, count 25, 5-octet data field
    header = SpacePacketHeader(PacketType.TC, 0x073, sequence_count=25, data_length=4,
                               sec_hdr_flag=True, sequence_flags=SequenceFlags.UNSEGMENTED)
    assert header.pack() == bytes.fromhex("1873C0190004")
    assert SpacePacketHeader.unpack(bytes.fromhex("1873C0190004")) == header
    assert header.packet_length == 11


def test_build_unpack_and_idle() -> None:
    packet = SpacePacket.build(PacketType.TM, 0x42, b"\x01\x02\x03", sequence_count=7)
    raw = packet.pack()
    assert raw == bytes.fromhex("0042C0070002010203")
    assert SpacePacket.unpack(raw) == packet
    idle = SpacePacket.idle(10, fill=0xAA)
    assert idle.is_idle and idle.apid == IDLE_APID == 0x7FF
    assert idle.pack() == bytes.fromhex("07FFC0000003AAAAAAAA")
    assert SpacePacket.unpack(idle.pack()).is_idle


def test_strict_lengths_and_messages() -> None:
    raw = SpacePacket.build(PacketType.TM, 1, b"abcd").pack()
    with pytest.raises(InvalidFrameLength, match="needs 10 octets, got 9") as e:
        SpacePacket.unpack(raw[:-1])
    assert e.value.field == "data_length" and e.value.offset == 4
    with pytest.raises(InvalidFrameLength, match="is 10 octets but 11 were given"):
        SpacePacket.unpack(raw + b"\x00")
    with pytest.raises(InvalidFrameLength, match="header needs 6 octets, got 5"):
        SpacePacket.unpack(raw[:5])
    with pytest.raises(InvalidHeader, match="version must be 0, got 1") as e2:
        SpacePacket.unpack(bytes([0x20]) + raw[1:])
    assert e2.value.field == "version"
    with pytest.raises(InvalidHeader, match="idle packet"):
        SpacePacket.unpack(bytes.fromhex("0FFFC000000000"))
    with pytest.raises(InvalidConfiguration):
        SpacePacket.build(PacketType.TM, 1, b"")
    with pytest.raises(InvalidConfiguration):
        SpacePacket.build(PacketType.TM, 1, bytes(65537))
    with pytest.raises(InvalidConfiguration):
        SpacePacketHeader(PacketType.TM, 0x800)
    with pytest.raises(InvalidConfiguration):
        SpacePacket(SpacePacketHeader(PacketType.TM, 1, data_length=3), b"ab")


def test_maximum_packet() -> None:
    packet = SpacePacket.build(PacketType.TM, 5, bytes(65536))
    raw = packet.pack()
    assert len(raw) == MAX_PACKET_LENGTH == 65542
    assert raw[4:6] == b"\xff\xff"
    assert SpacePacket.unpack(raw) == packet


def test_split_packets_returns_tail() -> None:
    a = SpacePacket.build(PacketType.TM, 1, b"x")
    b = SpacePacket.build(PacketType.TC, 2, b"yz", sequence_count=3)
    stream = a.pack() + b.pack() + a.pack()[:4]
    packets, tail = split_packets(stream)
    assert packets == [a, b]
    assert tail == a.pack()[:4]
    with pytest.raises(InvalidFrameLength, match="Space Packet of 8 octets is over the maximum 7"):
        split_packets(b.pack(), max_packet_length=7)
    assert split_packets(b.pack(), max_packet_length=8) == ([b], b"")
    assert packet_length_at(b.pack()) == 8
    assert packet_length_at(b.pack()[:5]) is None


def test_stream_parser_keeps_good_packets_before_a_bad_header() -> None:
    a = SpacePacket.build(PacketType.TM, 1, b"abc")
    parser = PacketStreamParser()
    assert parser.feed(a.pack()[:3]) == []
    assert parser.pending == 3
    assert parser.feed(a.pack()[3:] + a.pack()) == [a, a]
    bad = bytes([0xE0]) + a.pack()[1:]
    assert parser.feed(a.pack() + bad) == [a]  # the good one comes out first
    with pytest.raises(InvalidHeader) as e:
        parser.check()
    assert e.value.offset == 3 * len(a)  # counted from the start of the stream
    assert parser.resync(a.pack()) == [a]


def test_sequence_counter_wraps_per_apid() -> None:
    counter = SequenceCounter({5: 16383})
    assert counter.next(5) == 16383
    assert counter.next(5) == 0
    assert counter.next(6) == 0 and counter.next(6) == 1
    assert counter.snapshot() == {5: 1, 6: 2}
    assert sequence_gap(16383, 0) == 0
    assert sequence_gap(16382, 1) == 2
    with pytest.raises(InvalidConfiguration):
        counter.set(5, 16384)


@settings(max_examples=100, deadline=None)
@given(packet_headers())
def test_header_round_trip(header: SpacePacketHeader) -> None:
    assert SpacePacketHeader.unpack(header.pack()) == header


@settings(max_examples=150, deadline=None)
@given(space_packets(max_data_field=300))
def test_packet_round_trip(packet: SpacePacket) -> None:
    raw = packet.pack()
    assert len(raw) == len(packet) == 7 + packet.header.data_length
    assert SpacePacket.unpack(raw) == packet


@settings(max_examples=100, deadline=None)
@given(packet_streams(), st.data())
def test_stream_split_any_chunking(packets: list[SpacePacket], data: st.DataObject) -> None:
    stream = b"".join(p.pack() for p in packets)
    assert split_packets(stream) == (packets, b"")
    parser = PacketStreamParser()
    out: list[SpacePacket] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 40))
        out += parser.feed(stream[pos:pos + step])
        pos += step
    assert out == packets and parser.pending == 0


@settings(max_examples=250, deadline=None)
@given(st.one_of(mutated_packet_stream(), st.binary(max_size=80)))
def test_parsers_raise_only_library_errors(data: bytes) -> None:
    for parse in (SpacePacket.unpack, split_packets, PacketStreamParser().feed,
                  SpacePacketHeader.unpack):
        with contextlib.suppress(SdlsQkdError):
            parse(data)
    try:
        packet = SpacePacket.unpack(data)
    except SdlsQkdError:
        return
    assert packet.pack() == data


def test_every_header_bit_flipped() -> None:
    """Each of the 48 header bits flipped alone: a library error, or a packet that re-encodes."""
    raw = SpacePacket.build(PacketType.TC, 0x123, bytes(10), sequence_count=77,
                            sec_hdr_flag=True).pack()
    outcomes = set()
    for bit in range(48):
        mutated = bytearray(raw)
        mutated[bit // 8] ^= 0x80 >> (bit % 8)
        for parse in (SpacePacket.unpack, lambda b: split_packets(b)[0]):
            try:
                parse(bytes(mutated))
            except SdlsQkdError as exc:
                outcomes.add(exc.code)
                continue
            outcomes.add("accepted")
    assert {"InvalidHeader", "InvalidFrameLength", "accepted"} <= outcomes
