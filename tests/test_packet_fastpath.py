"""The packet service's fast paths give exactly what the plain reference algorithm gives.

``ReferenceZoneReader`` below is the zone reader as first written (packet by packet, typed, no
inlining), kept here as the executable specification.  Hypothesis drives it and the optimised
:class:`PacketZoneReader` (``push`` typed, ``push_raw`` octets) through the same damaged zone
streams -- lost, repeated and corrupted frames, wrong FHPs, idle packets and idle-only zones,
small length limits -- and every result, anomaly, exception and piece of state must agree.
The same for :meth:`TmFrame.unpack` (built without ``__post_init__``) against the checked
constructors, and :class:`SpacePacketView` against :class:`SpacePacket`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidFrameLength, InvalidHeader, SdlsQkdError
from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.packet_service import (
    FHP_11BIT,
    FHP_USLP,
    Anomaly,
    AnomalyKind,
    FhpCodes,
    FrameCountTracker,
    PacketZoneReader,
    PacketZoneWriter,
    RawZoneResult,
    TmPacketReceiver,
    TmPacketSender,
    ZoneResult,
)
from sdls_qkd.framing.space_packet import (
    MAX_PACKET_LENGTH,
    PacketType,
    SpacePacket,
    SpacePacketHeader,
    SpacePacketView,
    packet_length_at,
    scan_packet_octets,
    split_packets,
)
from sdls_qkd.framing.tm import TmCodec, TmFrame, TmPrimaryHeader, TmSecondaryHeader
from sdls_qkd.fuzz.packets import mutated_packet_stream, space_packets


# --------------------------------------------------------------------------- the reference
class ReferenceZoneReader:
    """The zone reader's algorithm written plainly (see the module docstring)."""

    def __init__(self, zone_length: int, *, fhp: FhpCodes = FHP_11BIT,
                 count_modulus: int | None = 256, max_packet_length: int = MAX_PACKET_LENGTH,
                 keep_idle: bool = False) -> None:
        self.zone_length = zone_length
        self.fhp = fhp
        self.counts = FrameCountTracker(count_modulus) if count_modulus else None
        self.max_packet_length = max_packet_length
        self.keep_idle = keep_idle
        self.partial = bytearray()
        self.in_sync = False

    def push(self, zone: bytes, fhp: int, frame_count: int | None = None) -> ZoneResult:
        if len(zone) != self.zone_length:
            raise InvalidFrameLength(
                f"packet zone must be {self.zone_length} octets, got {len(zone)}")
        if fhp not in (self.fhp.no_packet_start, self.fhp.idle_only) and not (
                0 <= fhp < len(zone)):
            raise InvalidHeader(
                f"first header pointer {fhp} is beyond the {len(zone)}-octet packet zone",
                field="first_header_pointer")
        result = ZoneResult()
        if frame_count is not None and self.counts is not None:
            lost = self.counts.gap(frame_count)
            self.counts.advance(frame_count)
            if lost:
                result.anomalies.append(Anomaly(AnomalyKind.FRAMES_LOST,
                                                f"{lost} frame(s) missing before count "
                                                f"{frame_count}", lost))
                self.drop_partial(result, "frame-count gap")
                self.in_sync = False
        if fhp == self.fhp.idle_only:
            if self.partial:
                self.drop_partial(result, "idle-only zone while a packet was open")
            self.in_sync = True
            return result
        if fhp == self.fhp.no_packet_start:
            if self.in_sync and self.partial:
                self.partial += zone
                self.check_partial_length(result)
            else:
                result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                                f"{len(zone)} octets with no packet start "
                                                f"skipped", 1))
                self.in_sync = False
            return result
        head = zone[:fhp]
        if self.in_sync and self.partial:
            self.partial += head
            self.finish_partial_at_fhp(result)
        elif head and self.in_sync:
            result.anomalies.append(Anomaly(AnomalyKind.FHP_MISMATCH,
                                            f"{len(head)} octets before the FHP belong to no "
                                            f"packet", 1))
        elif head:
            result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                            f"{len(head)} octets before FHP {fhp} skipped "
                                            f"while resynchronising", 1))
        self.partial.clear()
        self.in_sync = True
        raws, stop, error = scan_packet_octets(zone, fhp,
                                               max_packet_length=self.max_packet_length)
        for raw in raws:
            packet = SpacePacket.unpack(raw)
            if packet.is_idle and not self.keep_idle:
                result.idle_packets += 1
            else:
                result.packets.append(packet)
        if error is not None:
            self.lose_sync(result, error)
        else:
            self.partial += zone[stop:]
        return result

    def drop_partial(self, result: ZoneResult, why: str) -> None:
        if self.partial:
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            f"partial packet of {len(self.partial)} octets "
                                            f"dropped: {why}", 1))
            self.partial.clear()

    def length(self, data: bytearray) -> int | None:
        length = packet_length_at(data, 0)
        if length is not None and length > self.max_packet_length:
            raise InvalidFrameLength(
                f"packet of {length} octets is over the maximum {self.max_packet_length}",
                field="data_length", offset=4)
        return length

    def check_partial_length(self, result: ZoneResult) -> None:
        try:
            length = self.length(self.partial)
        except SdlsQkdError as exc:
            self.lose_sync(result, exc)
            return
        if length is not None and len(self.partial) >= length:
            rest = len(self.partial) - length
            self.finish(result, bytes(self.partial[:length]))
            self.partial.clear()
            if rest:
                result.anomalies.append(Anomaly(
                    AnomalyKind.FHP_MISMATCH,
                    f"packet ended {rest} octets before the end of a zone with FHP "
                    f"'no packet start'", 1))
                self.in_sync = False

    def finish_partial_at_fhp(self, result: ZoneResult) -> None:
        try:
            length = self.length(self.partial)
        except SdlsQkdError as exc:
            self.lose_sync(result, exc)
            return
        if length == len(self.partial):
            self.finish(result, bytes(self.partial))
        else:
            result.anomalies.append(Anomaly(
                AnomalyKind.FHP_MISMATCH,
                f"open packet has {len(self.partial)} octets at the FHP, its header says "
                f"{length}", 1))
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            "packet inconsistent with the FHP dropped", 1))
        self.partial.clear()

    def finish(self, result: ZoneResult, raw: bytes) -> None:
        try:
            packet = SpacePacket.unpack(raw)
        except SdlsQkdError as exc:
            self.lose_sync(result, exc)
            return
        if packet.is_idle and not self.keep_idle:
            result.idle_packets += 1
        else:
            result.packets.append(packet)

    def lose_sync(self, result: ZoneResult, exc: SdlsQkdError) -> None:
        result.anomalies.append(Anomaly(AnomalyKind.BAD_PACKET_HEADER, str(exc), 1))
        self.partial.clear()
        self.in_sync = False


# --------------------------------------------------------------------------- damaged streams
Push = tuple[bytes, int, int | None]


@st.composite
def damaged_zone_streams(draw: st.DrawFn, *, codes: FhpCodes = FHP_11BIT,
                         modulus: int = 256) -> tuple[int, list[Push]]:
    """A packet stream cut into zones by :class:`PacketZoneWriter`, then damaged on the link."""
    zone_length = draw(st.integers(8, 90))
    writer = PacketZoneWriter(zone_length, fhp=codes)
    zones: list[tuple[bytes, int]] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["packet", "packet", "packet", "big", "idle", "flush"]))
        if kind == "flush":  # idle fill, or an idle-only zone when nothing is queued
            zone = writer.take_zone()
            assert zone is not None
            zones.append((zone.data, zone.first_header_pointer))
            continue
        if kind == "idle":
            writer.put(SpacePacket.idle(draw(st.integers(7, 60))))
        else:
            writer.put(draw(space_packets(max_data_field=300 if kind == "big" else 40)))
        while writer.has_zone():
            zone = writer.take_zone(fill=False)
            assert zone is not None
            zones.append((zone.data, zone.first_header_pointer))
    while writer.pending:
        zone = writer.take_zone()
        assert zone is not None
        zones.append((zone.data, zone.first_header_pointer))
    specials = [codes.no_packet_start] + ([codes.idle_only] if codes.idle_only is not None
                                         else [])
    pushes: list[Push] = []
    for count, (data, fhp) in enumerate(zones):
        event = draw(st.sampled_from(["ok"] * 6 + ["drop", "repeat", "flip", "fhp", "garbage",
                                                   "no_count", "short"]))
        count %= modulus
        if event == "drop":
            continue
        if event == "flip":  # a damaged octet, often in a packet header
            i = draw(st.integers(0, zone_length - 1))
            data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
        elif event == "fhp":
            fhp = draw(st.one_of(st.integers(0, zone_length + 2), st.sampled_from(specials)))
        elif event == "garbage":
            data = draw(st.binary(min_size=zone_length, max_size=zone_length))
        elif event == "short":  # rejected as a whole, state unchanged
            data = data[:-1]
        pushes.append((data, fhp, None if event == "no_count" else count))
        if event == "repeat":
            pushes.append((data, fhp, count))
    return zone_length, pushes


def same_push(ref: ReferenceZoneReader, fast: PacketZoneReader, raw: PacketZoneReader,
              push: Push) -> None:
    """One zone into the three readers: the same outcome and the same state after it."""
    outcomes: list[Any] = []
    for method in (ref.push, fast.push, raw.push_raw):
        try:
            outcomes.append(method(*push))
        except SdlsQkdError as exc:
            outcomes.append((type(exc), str(exc)))
    want, typed, octets = outcomes
    if isinstance(want, tuple):
        assert typed == want and octets == want
    else:
        assert isinstance(typed, ZoneResult) and isinstance(octets, RawZoneResult)
        assert typed == want
        assert octets.packets == [p.pack() for p in want.packets]
        assert all(type(p) is bytes for p in octets.packets)
        assert octets.anomalies == want.anomalies and octets.idle_packets == want.idle_packets
        assert octets.to_zone_result() == want
    for reader in (fast, raw):
        assert reader.in_sync == ref.in_sync
        assert bytes(reader._partial) == bytes(ref.partial)
        assert (reader.counts.last if reader.counts else None) == (
            ref.counts.last if ref.counts else None)


@settings(max_examples=300, deadline=None)
@given(damaged_zone_streams(),
       st.sampled_from([MAX_PACKET_LENGTH, 60, 7, 200]),
       st.booleans(), st.sampled_from([256, None]))
def test_fast_reader_equals_reference_on_damaged_streams(
        stream: tuple[int, list[Push]], max_length: int, keep_idle: bool,
        modulus: int | None) -> None:
    zone_length, pushes = stream
    kw: dict[str, Any] = dict(count_modulus=modulus, max_packet_length=max_length,
                              keep_idle=keep_idle)
    ref = ReferenceZoneReader(zone_length, **kw)
    fast = PacketZoneReader(zone_length, **kw)
    raw = PacketZoneReader(zone_length, **kw)
    for push in pushes:
        same_push(ref, fast, raw, push)


@settings(max_examples=100, deadline=None)
@given(damaged_zone_streams(codes=FHP_USLP, modulus=1 << 24))
def test_fast_reader_equals_reference_16bit_fhp(stream: tuple[int, list[Push]]) -> None:
    zone_length, pushes = stream
    ref = ReferenceZoneReader(zone_length, fhp=FHP_USLP, count_modulus=1 << 24)
    fast = PacketZoneReader(zone_length, fhp=FHP_USLP, count_modulus=1 << 24)
    raw = PacketZoneReader(zone_length, fhp=FHP_USLP, count_modulus=1 << 24)
    for push in pushes:
        same_push(ref, fast, raw, push)


@settings(max_examples=150, deadline=None)
@given(st.integers(8, 40),
       st.lists(st.tuples(st.binary(min_size=40, max_size=40),
                          st.one_of(st.integers(0, 39), st.sampled_from([0x7FE, 0x7FF])),
                          st.integers(0, 255)), max_size=10))
def test_fast_reader_equals_reference_on_garbage(
        zone_length: int, zones: list[tuple[bytes, int, int]]) -> None:
    ref = ReferenceZoneReader(zone_length)
    fast = PacketZoneReader(zone_length)
    raw = PacketZoneReader(zone_length)
    for data, fhp, count in zones:
        same_push(ref, fast, raw, (data[:zone_length], fhp, count))


@pytest.mark.parametrize("tail", [0, 4])
def test_open_packet_ending_in_a_no_start_zone_with_a_bad_header(tail: int) -> None:
    """An idle packet with the secondary header flag, its header cut before octet 6 (so only
    checked when complete), ending in a 'no packet start' zone: exactly at its end, or
    ``tail`` octets before (the report once said 'ended -25 octets before the end')."""
    total = 25 - tail
    bad = bytes([0x0F, 0xFF, 0xC0, 0x00]) + (total - 7).to_bytes(2, "big") + bytes(total - 6)
    zones = [(bytes(5) + bad[:5], 5), (bad[5:15], 0x7FF), ((bad[15:] + bytes(10))[:10], 0x7FF)]
    ref = ReferenceZoneReader(10, count_modulus=None)
    fast = PacketZoneReader(10, count_modulus=None)
    raw = PacketZoneReader(10, count_modulus=None)
    for data, fhp in zones:
        same_push(ref, fast, raw, (data, fhp, None))
    result = PacketZoneReader(10, count_modulus=None)
    for data, fhp in zones:
        last = result.push(data, fhp)
    assert [a.kind for a in last.anomalies] == [AnomalyKind.BAD_PACKET_HEADER] + (
        [AnomalyKind.FHP_MISMATCH] if tail else [])
    assert "idle packet (APID 0x7FF) with secondary header flag set" in last.anomalies[0].detail
    if tail:
        assert f"packet ended {tail} octets before the end" in last.anomalies[1].detail
    assert not result.in_sync


# --------------------------------------------------------------------------- TM receiver
CH = TmChannel(scid=42, vcid=3, frame_length=80, has_ocf=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(space_packets(max_data_field=150), min_size=1, max_size=12),
       st.sets(st.integers(0, 30), max_size=6))
def test_receive_raw_equals_receive_on_a_lossy_link(packets: list[SpacePacket],
                                                    drops: set[int]) -> None:
    sender = TmPacketSender(CH)
    for p in packets:
        sender.put(p)
    frames = sender.frames(flush=True, ocf=bytes(4))
    typed_rx, raw_rx = TmPacketReceiver(CH), TmPacketReceiver(CH)
    ref = ReferenceZoneReader(CH.data_field_length)
    codec = TmCodec(CH)
    for i, frame in enumerate(frames):
        if i in drops:
            continue
        view = codec.parse(frame)
        want = ref.push(view.data, view.first_header_pointer, view.vc_frame_count)
        typed = typed_rx.receive(frame)
        raw = raw_rx.receive_raw(frame)
        assert typed == want
        assert raw.packets == [p.pack() for p in want.packets]
        assert raw.anomalies == want.anomalies and raw.idle_packets == want.idle_packets
        assert [v.to_packet() for v in raw.views()] == want.packets


def test_receive_raw_rejects_a_bad_frame_without_state_change() -> None:
    sender = TmPacketSender(CH)
    sender.put(SpacePacket.build(PacketType.TM, 5, bytes(100)))
    frames = sender.frames(flush=True, ocf=bytes(4))
    rx = TmPacketReceiver(CH)
    rx.receive_raw(frames[0])
    bad = bytearray(frames[1])
    bad[20] ^= 1
    with pytest.raises(SdlsQkdError, match="FECF"):
        rx.receive_raw(bytes(bad))
    with pytest.raises(InvalidFrameLength, match="TM frame needs 80 octets, got 79"):
        rx.receive_raw(frames[1][:-1])
    sync = TmCodec(CH).build(bytes(CH.data_field_length), mc_frame_count=0, vc_frame_count=1,
                             sync_flag=True, ocf=bytes(4))
    with pytest.raises(InvalidHeader, match="sync flag"):
        rx.receive_raw(sync)
    result = rx.receive_raw(frames[1])
    assert result.anomalies == [] and result.packets == [
        SpacePacket.build(PacketType.TM, 5, bytes(100)).pack()]


def test_generic_length_rule_takes_the_generic_path() -> None:
    """A custom ``packet_length`` is honoured by push and push_raw alike."""
    packets = [SpacePacket.build(PacketType.TM, 3 + i, bytes([i]) * (20 + 7 * i))
               for i in range(6)]
    writer = PacketZoneWriter(30)
    writer.put_all(packets)
    calls: list[int] = []

    def length_rule(data: bytes | bytearray | memoryview, offset: int) -> int | None:
        calls.append(offset)
        return packet_length_at(data, offset)

    typed = PacketZoneReader(30, packet_length=length_rule)
    raw = PacketZoneReader(30, packet_length=length_rule)
    got_typed: list[SpacePacket] = []
    got_raw: list[bytes] = []
    count = 0
    while writer.pending:
        zone = writer.take_zone()
        assert zone is not None
        got_typed += typed.push(zone.data, zone.first_header_pointer, count).packets
        got_raw += raw.push_raw(zone.data, zone.first_header_pointer, count).packets
        count += 1
    assert calls and got_typed == packets and got_raw == [p.pack() for p in packets]


# --------------------------------------------------------------------------- typed objects
@settings(max_examples=150, deadline=None)
@given(space_packets(max_data_field=80))
def test_space_packet_view_matches_the_typed_packet(packet: SpacePacket) -> None:
    raw = packet.pack()
    view = SpacePacketView(raw)
    assert view.octets == raw and view.pack() == raw and len(view) == len(packet)
    h = packet.header
    assert (view.packet_type, view.sec_hdr_flag, view.apid, view.sequence_flags,
            view.sequence_count, view.data_length, view.is_idle) == (
        h.packet_type, h.sec_hdr_flag, h.apid, h.sequence_flags, h.sequence_count,
        h.data_length, packet.is_idle)
    assert type(view.packet_type) is PacketType
    assert view.header == h and view.data == packet.data and view.to_packet() == packet
    assert view == SpacePacketView(bytearray(raw)) and hash(view) == hash(raw)
    assert f"apid={h.apid:#05x}" in repr(view)


@settings(max_examples=150, deadline=None)
@given(mutated_packet_stream())
def test_space_packet_view_rejects_as_space_packet_does(data: bytes) -> None:
    try:
        want: Any = SpacePacket.unpack(data)
    except SdlsQkdError as exc:
        want = (type(exc), str(exc))
    try:
        got: Any = SpacePacketView(data).to_packet()
    except SdlsQkdError as exc:
        got = (type(exc), str(exc))
    assert got == want


def test_trusted_objects_are_real_frozen_dataclasses() -> None:
    """Objects built on the fast paths behave as the checked constructors' objects."""
    packet = SpacePacket.build(PacketType.TC, 0x123, b"abc", sequence_count=9)
    (fast,), _ = split_packets(packet.pack())
    assert type(fast) is SpacePacket and type(fast.header) is SpacePacketHeader
    assert fast == packet and hash(fast) == hash(packet) and repr(fast) == repr(packet)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.header.apid = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.data = b""  # type: ignore[misc]
    assert dataclasses.replace(fast.header, apid=7).apid == 7
    assert dataclasses.asdict(fast) == dataclasses.asdict(packet)


TM_CHANNELS = [
    TmChannel(scid=758, vcid=0, frame_length=64, has_ocf=True, has_fecf=True),
    TmChannel(scid=1, vcid=7, frame_length=40, has_ocf=False, has_fecf=False),
    TmChannel(scid=0x3FF, vcid=2, frame_length=50, has_ocf=True, has_fecf=False,
              secondary_header_length=5),
]


def checked_tm_frame(raw: bytes, channel: TmChannel) -> TmFrame:
    """The frame built with every public, checking constructor (the reference)."""
    end = channel.frame_length - (2 if channel.has_fecf else 0)
    ocf = raw[end - 4:end] if channel.has_ocf else None
    start = 6 + channel.secondary_header_length
    sh = (TmSecondaryHeader.unpack(raw) if channel.secondary_header_length else None)
    return TmFrame(TmPrimaryHeader.unpack(raw), raw[start:end - (4 if ocf else 0)], sh, ocf,
                   int.from_bytes(raw[-2:], "big") if channel.has_fecf else None)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TM_CHANNELS), st.data())
def test_tm_unpack_equals_the_checked_constructors(channel: TmChannel, data: st.DataObject) -> None:
    codec = TmCodec(channel)
    raw = codec.build(
        data.draw(st.binary(min_size=channel.data_field_length,
                            max_size=channel.data_field_length)),
        mc_frame_count=data.draw(st.integers(0, 255)),
        vc_frame_count=data.draw(st.integers(0, 255)),
        first_header_pointer=data.draw(st.integers(0, 0x7FF)),
        sync_flag=data.draw(st.booleans()), packet_order_flag=data.draw(st.booleans()),
        segment_length_id=data.draw(st.integers(0, 3)),
        ocf=data.draw(st.binary(min_size=4, max_size=4)) if channel.has_ocf else None,
        secondary_header=(bytes([(data.draw(st.integers(0, 3)) << 6)
                                 | (channel.secondary_header_length - 1)])
                          + bytes(channel.secondary_header_length - 1)
                          if channel.secondary_header_length else None))
    frame = TmFrame.unpack(raw, channel)
    want = checked_tm_frame(raw, channel)
    assert frame == want and repr(frame) == repr(want) and hash(frame) == hash(want)
    assert type(frame.header) is TmPrimaryHeader
    assert all(type(getattr(frame.header, f)) is bool for f in
               ("ocf_flag", "secondary_header_flag", "sync_flag", "packet_order_flag"))
    assert frame.pack(channel) == raw
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.header.scid = 1  # type: ignore[misc]
    # a channel equal to but not the same object as the cached one decodes the same
    assert TmFrame.unpack(raw, dataclasses.replace(channel)) == want


def test_tm_unpack_subclass_and_any_vcid() -> None:
    class MyFrame(TmFrame):
        pass

    channel = TM_CHANNELS[0]
    raw = TmFrame.idle(channel, vc_frame_count=3, ocf=bytes(4)).pack(channel)
    frame = MyFrame.unpack(raw, channel)
    assert type(frame) is MyFrame and frame.header.vc_frame_count == 3
    other = dataclasses.replace(channel, vcid=5)
    with pytest.raises(InvalidHeader, match="VCID 0 is not the channel's 5"):
        TmFrame.unpack(raw, other)
    assert TmFrame.unpack(raw, other, check_vcid=False).vcid == 0


def test_open_packet_with_a_bad_version_continued_in_a_no_start_zone() -> None:
    """A header cut after 3 octets whose version turns out bad once it grows."""
    bad = bytes([0xE0, 0x10, 0xC0, 0x00, 0x00, 0x20]) + bytes(0x21)
    zones = [(bytes(7) + bad[:3], 7), (bad[3:13], 0x7FF)]
    ref = ReferenceZoneReader(10, count_modulus=None)
    fast = PacketZoneReader(10, count_modulus=None)
    raw = PacketZoneReader(10, count_modulus=None)
    for data, fhp in zones:
        same_push(ref, fast, raw, (data, fhp, None))
    assert not fast.in_sync
