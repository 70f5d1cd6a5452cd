"""Packet service: Space Packets into and out of transfer frames.

Two halves, both sans-I/O:

* **Packet zones** (TM data field, AOS M_PDU packet zone, USLP TFDZ construction rule ``000``):
  fixed-size zones carry a continuous stream of packets; each zone's *First Header Pointer*
  (FHP) gives the offset of the first packet header that starts in it.  :class:`PacketZoneWriter`
  cuts the stream into zones (packets span zones, the tail is filled with idle packets, an empty
  stream gives an idle-only zone); :class:`PacketZoneReader` reassembles packets across zones,
  detects loss from frame-count gaps (:class:`FrameCountTracker`) and resynchronises at the next
  FHP.  Both are generic over the zone: the frame codecs only supply ``(zone, fhp, count)``.
  :class:`FhpCodes` holds the two special FHP values of a frame type (TM/AOS: 0x7FF / 0x7FE).
  :class:`TmPacketSender` / :class:`TmPacketReceiver` wire them to TM frames.  Receivers give
  typed :class:`SpacePacket` objects (``push`` / ``receive``) or, on the fast path, the same
  packets as checked octets (``push_raw`` / ``receive_raw`` -> :class:`RawZoneResult`, with
  :class:`SpacePacketView` decoding header fields on demand): same checks, anomalies and state.
* **TC segmentation** (232.0-B segment header): :func:`segment` splits a packet larger than a
  frame into FIRST / CONTINUATION / LAST segments; :class:`TcPacketSender` makes the frames;
  :class:`TcSegmentReassembler` rebuilds packets per MAP ID.

Receivers never raise for damage they can survive (lost frames, a packet cut by a gap): they
report :class:`Anomaly` records and go on.  They raise :mod:`sdls_qkd.errors` exceptions only
for input they must reject as a whole (an FHP beyond the zone, a frame of another channel), and
then change no state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, TypeVar

from sdls_qkd.errors import (
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    SdlsQkdError,
)
from sdls_qkd.framing.channel import TcChannel, TmChannel
from sdls_qkd.framing.ocf import Clcw, FrameSecurityReport
from sdls_qkd.framing.space_packet import (
    IDENT_AND_LENGTH,
    MAX_PACKET_LENGTH,
    MIN_PACKET_LENGTH,
    PRIMARY_HEADER_LENGTH,
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketView,
    _packet_from_checked_octets,
    packet_length_at,
    scan_packet_octets,
    split_packets,
)
from sdls_qkd.framing.tc import (
    FECF_LENGTH as TC_FECF_LENGTH,
)
from sdls_qkd.framing.tc import (
    PRIMARY_HEADER_LENGTH as TC_PRIMARY_HEADER_LENGTH,
)
from sdls_qkd.framing.tc import (
    SEGMENT_HEADER_LENGTH,
    TcFrame,
    TcFrameType,
)
from sdls_qkd.framing.tm import TmCodec

_ident_and_length = IDENT_AND_LENGTH.unpack_from
_new = object.__new__
#: indexed by a packet's first 16 bits: 1 for an ordinary header (version 0, APID not idle), 0
#: for one the checked scanner must look at
_ORDINARY_IDENT: Final = (b"\x01" * 0x7FF + b"\x00") * 4 + bytes(0xE000)

#: returns the total length of the packet whose header starts at ``offset``, or None when the
#: header is not complete yet; raises InvalidHeader for a header it cannot accept
PacketLengthFn = Callable[[bytes | bytearray | memoryview, int], "int | None"]


@dataclass(frozen=True)
class FhpCodes:
    """The special First Header Pointer values of a frame type."""

    #: no packet header starts in this zone
    no_packet_start: int
    #: the zone holds only idle data (or None when the frame type has no such code)
    idle_only: int | None

    def max_offset(self) -> int:
        """Largest FHP value that is an offset."""
        specials = [self.no_packet_start] + ([self.idle_only] if self.idle_only is not None
                                             else [])
        return min(specials) - 1


#: TM (132.0-B) and AOS M_PDU (732.0-B): 11-bit FHP
FHP_11BIT: Final = FhpCodes(no_packet_start=0x7FF, idle_only=0x7FE)
FHP_TM: Final = FHP_11BIT
FHP_AOS: Final = FHP_11BIT
#: USLP TFDZ construction rule 000 (732.1-B): 16-bit FHP, no idle-only code (idle frames use
#: VCID 63 instead), so an empty stream is filled with idle packets
FHP_USLP: Final = FhpCodes(no_packet_start=0xFFFF, idle_only=None)


class AnomalyKind(Enum):
    """What a receiver noticed and survived."""

    FRAMES_LOST = "frames_lost"            # frame-count gap
    PACKET_LOST = "packet_lost"            # a partial packet was dropped
    OCTETS_SKIPPED = "octets_skipped"      # octets before the FHP while out of sync
    BAD_PACKET_HEADER = "bad_packet_header"  # lost sync inside a zone
    FHP_MISMATCH = "fhp_mismatch"          # a packet did not end where the FHP says
    SEGMENT_OUT_OF_ORDER = "segment_out_of_order"  # TC segment without its FIRST


@dataclass(frozen=True)
class Anomaly:
    kind: AnomalyKind
    detail: str
    count: int = 1


@dataclass
class ZoneResult:
    """What one zone (frame) delivered."""

    packets: list[SpacePacket] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    idle_packets: int = 0


# --------------------------------------------------------------------------- frame counts
class FrameCountTracker:
    """Detects gaps in a frame count (TM VC count mod 256, AOS mod 2^24, USLP mod 2^(8n))."""

    def __init__(self, modulus: int) -> None:
        if modulus < 2:
            raise InvalidConfiguration(f"frame count modulus must be >= 2, not {modulus}")
        self.modulus = modulus
        self.last: int | None = None

    def gap(self, count: int) -> int:
        """Frames missing before ``count`` (0 if in order or first frame); does not advance."""
        if self.last is None:
            return 0
        return (count - self.last - 1) % self.modulus

    def advance(self, count: int) -> None:
        self.last = count % self.modulus


# --------------------------------------------------------------------------- sender
@dataclass(frozen=True)
class PacketZone:
    """One zone's worth: the FHP value and the zone octets."""

    first_header_pointer: int
    data: bytes


class PacketZoneWriter:
    """Cuts a stream of packets into fixed-size zones, computing each zone's FHP.

    ``take_zone(fill=True)`` always returns a zone: the tail of the stream is completed with an
    idle packet (APID 0x7FF; at least 7 octets, so it may spill into the next zone), and an empty
    stream gives an idle-only zone (FHP ``idle_only``, octets ``oid_fill``) or, for a frame type
    without that code, a zone of idle packets.
    """

    def __init__(self, zone_length: int, *, fhp: FhpCodes = FHP_11BIT, idle_fill: int = 0x00,
                 oid_fill: int = 0x55, packet_type: PacketType = PacketType.TM) -> None:
        if zone_length < 1:
            raise InvalidConfiguration(f"zone length must be >= 1, not {zone_length}")
        if zone_length - 1 > fhp.max_offset():
            raise InvalidConfiguration(
                f"zone of {zone_length} octets needs offsets beyond the FHP maximum "
                f"{fhp.max_offset()}")
        self.zone_length = zone_length
        self.fhp = fhp
        self.idle_fill = idle_fill
        self.oid_fill = oid_fill
        self.packet_type = packet_type
        self._stream = bytearray()
        self._base = 0                      # stream position of _stream[0]
        self._starts: deque[int] = deque()  # stream positions of packet headers
        self._idle_count = 0

    @property
    def pending(self) -> int:
        """Octets queued and not yet in a zone."""
        return len(self._stream)

    def put(self, packet: SpacePacket | bytes) -> None:
        """Queue one whole packet (a :class:`SpacePacket` or its octets)."""
        raw = packet.pack() if isinstance(packet, SpacePacket) else bytes(packet)
        try:
            length = packet_length_at(raw, 0)
        except InvalidHeader as exc:
            raise InvalidConfiguration(f"not a Space Packet: {exc.message}") from None
        if length != len(raw):
            raise InvalidConfiguration(
                f"packet octets ({len(raw)}) do not match its length field ({length})")
        self._starts.append(self._base + len(self._stream))
        self._stream += raw

    def put_all(self, packets: Iterable[SpacePacket | bytes]) -> None:
        for p in packets:
            self.put(p)

    def has_zone(self) -> bool:
        """A full zone of real data is queued."""
        return len(self._stream) >= self.zone_length

    def take_zone(self, *, fill: bool = True) -> PacketZone | None:
        """The next zone; None when ``fill`` is False and less than a zone is queued."""
        n = self.zone_length
        if len(self._stream) < n:
            if not fill:
                return None
            if not self._stream and self.fhp.idle_only is not None:
                return PacketZone(self.fhp.idle_only, bytes([self.oid_fill]) * n)
            gap = n - len(self._stream)
            idle = SpacePacket.idle(min(max(gap, MIN_PACKET_LENGTH), MAX_PACKET_LENGTH),
                                    sequence_count=self._idle_count, fill=self.idle_fill,
                                    packet_type=self.packet_type)
            self._idle_count = (self._idle_count + 1) % (1 << 14)
            self.put(idle)
        end = self._base + n
        fhp = self.fhp.no_packet_start
        starts = self._starts
        if starts and starts[0] < end:
            fhp = starts[0] - self._base
        while starts and starts[0] < end:
            starts.popleft()
        data = bytes(self._stream[:n])
        del self._stream[:n]
        self._base = end
        return PacketZone(fhp, data)


# --------------------------------------------------------------------------- receiver
@dataclass(slots=True)
class RawZoneResult:
    """What one zone delivered, packets as their octets: the fast receive path.

    Every item of ``packets`` is one whole packet whose header the reader checked (version,
    idle APID without secondary header flag, length limit); :meth:`views` wraps them in
    :class:`SpacePacketView` (fields decoded on access), :meth:`to_zone_result` decodes them
    into :class:`SpacePacket` objects, exactly what :meth:`PacketZoneReader.push` returns.
    """

    packets: list[bytes] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    idle_packets: int = 0

    def views(self) -> list[SpacePacketView]:
        """The packets as lightweight views (headers decoded only when read)."""
        trusted = SpacePacketView._trusted
        return [trusted(raw) for raw in self.packets]

    def to_zone_result(self) -> ZoneResult:
        """The typed result (the octets were checked: no check is repeated)."""
        return ZoneResult([_packet_from_checked_octets(raw) for raw in self.packets],
                          self.anomalies, self.idle_packets)


#: the typed or the raw result of one zone
_Result = TypeVar("_Result", "ZoneResult", "RawZoneResult")


class PacketZoneReader:
    """Reassembles packets from consecutive zones of one virtual channel.

    Call :meth:`push` with each zone, its FHP and (optionally) the frame count.  A frame-count
    gap drops the partial packet and resynchronises at the next zone's FHP, as does a packet
    header that cannot be parsed (wrong version) or a packet that does not end where the next FHP
    says.  Idle packets are counted, not returned.

    :meth:`push` returns typed :class:`SpacePacket` objects; :meth:`push_raw` does the same work
    (same checks, same anomalies, same state) and returns the packets as octets, which is what a
    router or recorder needs and about twice as fast.  With the standard Space Packet length
    rule (the default ``packet_length``) both run one octet-level scanner; a custom
    ``packet_length`` takes the generic path.
    """

    def __init__(self, zone_length: int, *, fhp: FhpCodes = FHP_11BIT,
                 count_modulus: int | None = 256, max_packet_length: int = MAX_PACKET_LENGTH,
                 packet_length: PacketLengthFn = packet_length_at,
                 keep_idle: bool = False) -> None:
        self.zone_length = zone_length
        self.fhp = fhp
        self.counts = FrameCountTracker(count_modulus) if count_modulus else None
        self.max_packet_length = max_packet_length
        self._packet_length = packet_length
        self.keep_idle = keep_idle
        self._partial: bytes | bytearray = b""  # octets of a packet begun in an earlier zone
        self._in_sync = False         # True once a packet start has been located
        self._octet_path = packet_length is packet_length_at

    @property
    def in_sync(self) -> bool:
        return self._in_sync

    def reset(self) -> None:
        """Forget the partial packet and wait for the next FHP."""
        self._partial = b""
        self._in_sync = False

    def push(self, zone: bytes | bytearray | memoryview, first_header_pointer: int,
             frame_count: int | None = None) -> ZoneResult:
        """Take one zone; return the packets it completes and what went wrong."""
        if self._octet_path:
            raw = self.push_raw(zone, first_header_pointer, frame_count)
            return ZoneResult([_packet_from_checked_octets(p) for p in raw.packets],
                              raw.anomalies, raw.idle_packets)
        return self._push_generic(zone, first_header_pointer, frame_count)

    def push_raw(self, zone: bytes | bytearray | memoryview, first_header_pointer: int,
                 frame_count: int | None = None) -> RawZoneResult:
        """As :meth:`push`, with the packets returned as checked octets (the hot path)."""
        if not self._octet_path:
            typed = self._push_generic(zone, first_header_pointer, frame_count)
            return RawZoneResult([p.pack() for p in typed.packets], typed.anomalies,
                                 typed.idle_packets)
        fhp = first_header_pointer
        n = self.zone_length
        if len(zone) != n:
            raise InvalidFrameLength(f"packet zone must be {n} octets, got {len(zone)}")
        codes = self.fhp
        if not 0 <= fhp < n and fhp != codes.no_packet_start and fhp != codes.idle_only:
            raise InvalidHeader(
                f"first header pointer {fhp} is beyond the {n}-octet packet zone",
                field="first_header_pointer")
        result = _new(RawZoneResult)  # RawZoneResult([], [], 0) without the __init__ call
        result.packets = []
        result.anomalies = []
        result.idle_packets = 0
        if frame_count is not None:
            counts = self.counts
            if counts is not None:  # FrameCountTracker.gap + advance, inlined
                modulus = counts.modulus
                last = counts.last
                counts.last = frame_count % modulus
                if last is not None:
                    lost = (frame_count - last - 1) % modulus
                    if lost:
                        self._frames_lost(result, lost, frame_count)
        if type(zone) is not bytes:
            zone = bytes(zone)
        if fhp == codes.idle_only:
            if self._partial:
                self._drop_partial(result, "idle-only zone while a packet was open")
            self._in_sync = True  # the next zone starts a fresh packet stream
            return result
        if fhp == codes.no_packet_start:
            if self._in_sync and self._partial:
                self._continue_partial(zone, result)
            else:
                # nothing open: the zone continues a packet we do not have
                result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                                f"{n} octets with no packet start skipped", 1))
                self._in_sync = False
            return result
        # a packet header starts at fhp
        unpack = _ident_and_length
        ordinary = _ORDINARY_IDENT
        max_length = self.max_packet_length
        packets = result.packets
        partial = self._partial
        if partial and self._in_sync:
            # the octets before the FHP must complete the open packet exactly
            whole = partial + zone[:fhp]
            size = len(whole)
            if size >= PRIMARY_HEADER_LENGTH:
                ident, data_length = unpack(whole, 0)
                if (ordinary[ident] and data_length + PRIMARY_HEADER_LENGTH + 1 == size
                        and size <= max_length):
                    packets.append(whole if type(whole) is bytes else bytes(whole))
                else:  # idle, bad header or mismatch: the checked path decides
                    self._finish_partial_octets(result, whole)
            else:
                self._finish_partial_octets(result, whole)
        elif fhp:
            if self._in_sync:
                result.anomalies.append(Anomaly(AnomalyKind.FHP_MISMATCH,
                                                f"{fhp} octets before the FHP belong to no "
                                                f"packet", 1))
            else:
                result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                                f"{fhp} octets before FHP {fhp} skipped "
                                                f"while resynchronising", 1))
        self._in_sync = True
        if max_length < n:  # packets may end in the zone and still be too long: checked scan
            self._scan_checked(zone, fhp, result)
            return result
        # Scan the whole packets from the FHP on.  The loop takes ordinary packets (version 0,
        # not idle) that end in the zone; at any other header it stops, and a header needing a
        # decision (bad version, idle APID, length over the limit) hands the rest of the zone
        # to the checked scanner, which gives the same packets, errors and offsets.
        offset = fhp
        last_header = n - PRIMARY_HEADER_LENGTH
        append = packets.append
        while offset <= last_header:
            ident, data_length = unpack(zone, offset)
            end = offset + data_length + 7  # header 6 + data field (data_length + 1)
            if end > n or not ordinary[ident]:
                if not ordinary[ident] or end - offset > max_length:
                    self._scan_checked(zone, offset, result)
                    return result
                break
            append(zone[offset:end])
            offset = end
        self._partial = zone[offset:]
        return result

    # ---------------------------------------------------------------- shared internals
    def _frames_lost(self, result: ZoneResult | RawZoneResult, lost: int,
                     frame_count: int) -> None:
        result.anomalies.append(Anomaly(AnomalyKind.FRAMES_LOST,
                                        f"{lost} frame(s) missing before count "
                                        f"{frame_count}", lost))
        self._drop_partial(result, "frame-count gap")
        self._in_sync = False

    def _drop_partial(self, result: ZoneResult | RawZoneResult, why: str) -> None:
        if self._partial:
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            f"partial packet of {len(self._partial)} octets "
                                            f"dropped: {why}", 1))
            self._partial = b""

    def _lose_sync(self, result: ZoneResult | RawZoneResult, exc: SdlsQkdError) -> None:
        result.anomalies.append(Anomaly(AnomalyKind.BAD_PACKET_HEADER, str(exc), 1))
        self._partial = b""
        self._in_sync = False

    def _grow_partial(self, zone: bytes) -> bytearray:
        """Append a whole zone to the open packet (a bytearray: linear growth)."""
        partial = self._partial
        if not isinstance(partial, bytearray):
            partial = bytearray(partial)
        partial += zone
        self._partial = partial
        return partial

    def _length(self, data: bytes | bytearray, offset: int) -> int | None:
        length = self._packet_length(data, offset)
        if length is not None and length > self.max_packet_length:
            raise InvalidFrameLength(
                f"packet of {length} octets is over the maximum {self.max_packet_length}",
                field="data_length", offset=offset + 4)
        return length

    # ---------------------------------------------------------------- octet path internals
    def _finish_octets(self, result: RawZoneResult, raw: bytes) -> None:
        """Deliver one complete packet assembled across zones (checked as SpacePacket.unpack)."""
        try:
            packet = SpacePacket.unpack(raw)
        except SdlsQkdError as exc:
            self._lose_sync(result, exc)
            return
        if packet.is_idle and not self.keep_idle:
            result.idle_packets += 1
        else:
            result.packets.append(raw)

    def _finish_partial_octets(self, result: RawZoneResult, whole: bytes | bytearray) -> None:
        """The open packet and the octets before the FHP disagree, or its header is bad."""
        try:
            length = self._length(whole, 0)
        except SdlsQkdError as exc:
            self._lose_sync(result, exc)
            return
        if length == len(whole):
            self._finish_octets(result, bytes(whole))
        else:
            result.anomalies.append(Anomaly(
                AnomalyKind.FHP_MISMATCH,
                f"open packet has {len(whole)} octets at the FHP, its header says "
                f"{length}", 1))
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            "packet inconsistent with the FHP dropped", 1))

    def _continue_partial(self, zone: bytes, result: RawZoneResult) -> None:
        """A zone with no packet start extends the open packet, which must not end in it."""
        self._end_spanning(result, self._grow_partial(zone), self._finish_octets)

    def _end_spanning(self, result: _Result, partial: bytes | bytearray,
                      finish: Callable[[_Result, bytes], None]) -> None:
        """The open packet grew by a zone with FHP 'no packet start': it must not be complete.

        If it is, the next packet started in that zone (FHP wrong) or the length field is
        corrupt: the packet is delivered through ``finish`` and the mismatch reported.
        """
        try:
            length = self._length(partial, 0)
        except SdlsQkdError as exc:
            self._lose_sync(result, exc)
            return
        if length is not None and len(partial) >= length:
            rest = len(partial) - length
            self._partial = b""
            finish(result, bytes(partial[:length]))
            if rest:
                result.anomalies.append(Anomaly(
                    AnomalyKind.FHP_MISMATCH,
                    f"packet ended {rest} octets before the end of a zone with FHP "
                    f"'no packet start'", 1))
                self._in_sync = False

    def _scan_checked(self, zone: bytes, offset: int, result: RawZoneResult) -> None:
        """The rest of the zone through :func:`scan_packet_octets` (idle packets, errors)."""
        raws, stop, error = scan_packet_octets(zone, offset,
                                               max_packet_length=self.max_packet_length)
        packets = result.packets
        for raw in raws:
            if raw[0] & 0x07 == 0x07 and raw[1] == 0xFF:  # APID 0x7FF
                if self.keep_idle:
                    packets.append(raw)
                else:
                    result.idle_packets += 1
            else:
                packets.append(raw)
        if error is not None:
            self._lose_sync(result, error)
        else:
            self._partial = zone[stop:]

    # ---------------------------------------------------------------- generic path
    def _push_generic(self, zone: bytes | bytearray | memoryview, first_header_pointer: int,
                      frame_count: int | None) -> ZoneResult:
        """:meth:`push` for a custom ``packet_length`` rule: packet by packet, typed."""
        fhp = first_header_pointer
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
                self._frames_lost(result, lost, frame_count)
        zone = bytes(zone)
        if fhp == self.fhp.idle_only:
            if self._partial:
                self._drop_partial(result, "idle-only zone while a packet was open")
            self._in_sync = True
            return result
        if fhp == self.fhp.no_packet_start:
            if self._in_sync and self._partial:
                self._grow_partial(zone)
                self._check_partial_length(result)
            else:
                result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                                f"{len(zone)} octets with no packet start "
                                                f"skipped", 1))
                self._in_sync = False
            return result
        head = zone[:fhp]
        if self._in_sync and self._partial:
            self._partial = self._partial + head
            self._finish_partial_at_fhp(result)
        elif head and self._in_sync:
            result.anomalies.append(Anomaly(AnomalyKind.FHP_MISMATCH,
                                            f"{len(head)} octets before the FHP belong to no "
                                            f"packet", 1))
        elif head:
            result.anomalies.append(Anomaly(AnomalyKind.OCTETS_SKIPPED,
                                            f"{len(head)} octets before FHP {fhp} skipped "
                                            f"while resynchronising", 1))
        self._partial = b""
        self._in_sync = True
        self._parse_from(zone, fhp, result)
        return result

    def _check_partial_length(self, result: ZoneResult) -> None:
        """A spanning packet grew: it must not yet be complete (no FHP in this zone)."""
        self._end_spanning(result, self._partial, self._finish)

    def _finish_partial_at_fhp(self, result: ZoneResult) -> None:
        """The octets before the FHP complete the open packet: exactly, or it is lost."""
        partial = self._partial
        try:
            length = self._length(partial, 0)
        except SdlsQkdError as exc:
            self._lose_sync(result, exc)
            return
        if length == len(partial):
            self._finish(result, partial)
        else:
            result.anomalies.append(Anomaly(
                AnomalyKind.FHP_MISMATCH,
                f"open packet has {len(partial)} octets at the FHP, its header says "
                f"{length}", 1))
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            "packet inconsistent with the FHP dropped", 1))
        self._partial = b""

    def _parse_from(self, zone: bytes, offset: int, result: ZoneResult) -> None:
        n = len(zone)
        while offset < n:
            try:
                length = self._length(zone, offset)
            except SdlsQkdError as exc:
                self._lose_sync(result, exc)
                return
            if length is None or offset + length > n:  # continues in the next zone
                self._partial = zone[offset:]
                return
            self._finish(result, zone[offset:offset + length])
            offset += length

    def _finish(self, result: ZoneResult, raw: bytes | bytearray) -> None:
        try:
            packet = SpacePacket.unpack(bytes(raw))
        except SdlsQkdError as exc:
            self._lose_sync(result, exc)
            return
        if packet.is_idle and not self.keep_idle:
            result.idle_packets += 1
        else:
            result.packets.append(packet)


# --------------------------------------------------------------------------- TM wiring
class TmPacketSender:
    """Packets in, fixed-length TM frames out (VC frame count kept here; MC count optional)."""

    def __init__(self, channel: TmChannel, *, idle_fill: int = 0x00, oid_fill: int = 0x55,
                 secondary_header: bytes | None = None) -> None:
        self.channel = channel
        self.codec = TmCodec(channel)
        self.writer = PacketZoneWriter(channel.data_field_length, idle_fill=idle_fill,
                                       oid_fill=oid_fill)
        self.vc_frame_count = 0
        self.mc_frame_count = 0
        self.secondary_header = secondary_header

    def put(self, packet: SpacePacket | bytes) -> None:
        self.writer.put(packet)

    def next_frame(self, *, fill: bool = True, ocf: bytes | Clcw | FrameSecurityReport |
                   None = None, mc_frame_count: int | None = None) -> bytes | None:
        """The next frame (idle-filled when ``fill``), or None if not a full zone is queued."""
        zone = self.writer.take_zone(fill=fill)
        if zone is None:
            return None
        mc = self.mc_frame_count if mc_frame_count is None else mc_frame_count
        raw = self.codec.build(
            zone.data, mc_frame_count=mc, vc_frame_count=self.vc_frame_count,
            first_header_pointer=zone.first_header_pointer,
            ocf=ocf.pack() if isinstance(ocf, Clcw | FrameSecurityReport) else ocf,
            secondary_header=self.secondary_header)
        self.vc_frame_count = (self.vc_frame_count + 1) % 256
        self.mc_frame_count = (mc + 1) % 256
        return raw

    def frames(self, *, flush: bool = False,
               ocf: bytes | Clcw | FrameSecurityReport | None = None) -> list[bytes]:
        """Every full frame queued; with ``flush`` also the idle-filled last one."""
        out = []
        while self.writer.has_zone():
            frame = self.next_frame(fill=False, ocf=ocf)
            assert frame is not None
            out.append(frame)
        if flush and self.writer.pending:
            frame = self.next_frame(ocf=ocf)
            assert frame is not None
            out.append(frame)
        return out


class TmPacketReceiver:
    """TM frames in (raw octets), packets out, with loss detection and resynchronisation.

    :meth:`receive` gives typed :class:`SpacePacket` objects, :meth:`receive_raw` the same
    packets as checked octets (the fast path: see :class:`RawZoneResult`).
    """

    def __init__(self, channel: TmChannel, *, max_packet_length: int = MAX_PACKET_LENGTH) -> None:
        self.channel = channel
        self.codec = TmCodec(channel)
        self.reader = PacketZoneReader(channel.data_field_length, count_modulus=256,
                                       max_packet_length=max_packet_length)

    def receive(self, frame: bytes | bytearray | memoryview) -> ZoneResult:
        """Parse and check one frame (raises on a bad frame, state unchanged), then reassemble.

        Frames with the sync flag set carry no packets (VCA_SDU): :class:`InvalidHeader`.
        """
        parts = self.codec.parse(frame)
        status = parts[3]  # the data field status word, as TmFrameView keeps it
        if status & 0x4000:
            raise InvalidHeader("TM frame has the sync flag set: no packet zone",
                                field="sync_flag", offset=4)
        return self.reader.push(parts[5], status & 0x7FF, parts[2])

    def receive_raw(self, frame: bytes | bytearray | memoryview) -> RawZoneResult:
        """As :meth:`receive`, with the packets as checked octets."""
        parts = self.codec.parse(frame)
        status = parts[3]
        if status & 0x4000:
            raise InvalidHeader("TM frame has the sync flag set: no packet zone",
                                field="sync_flag", offset=4)
        return self.reader.push_raw(parts[5], status & 0x7FF, parts[2])


# --------------------------------------------------------------------------- TC segmentation
def segment(data: bytes, max_segment: int) -> list[tuple[SequenceFlags, bytes]]:
    """Split ``data`` into segments of at most ``max_segment`` octets with their flags."""
    if max_segment < 1:
        raise InvalidConfiguration(f"segment size must be >= 1, not {max_segment}")
    if not data:
        raise InvalidConfiguration("nothing to segment")
    if len(data) <= max_segment:
        return [(SequenceFlags.UNSEGMENTED, bytes(data))]
    parts = [bytes(data[i:i + max_segment]) for i in range(0, len(data), max_segment)]
    flags = ([SequenceFlags.FIRST] + [SequenceFlags.CONTINUATION] * (len(parts) - 2)
             + [SequenceFlags.LAST])
    return list(zip(flags, parts, strict=True))


class TcPacketSender:
    """Packets in, TC frames out: blocks nothing, segments what does not fit in one frame.

    AD frames take their sequence number from V(S) (mod 256), BD frames carry 0.
    """

    def __init__(self, channel: TcChannel, *, frame_type: TcFrameType = TcFrameType.AD) -> None:
        if frame_type == TcFrameType.BC:
            raise InvalidConfiguration("packets travel in AD or BD frames, not BC")
        self.channel = channel
        self.frame_type = frame_type
        self.vs = 0
        self.max_data = (channel.max_frame_length - TC_PRIMARY_HEADER_LENGTH
                         - (SEGMENT_HEADER_LENGTH if channel.has_segment_header else 0)
                         - (TC_FECF_LENGTH if channel.has_fecf else 0))

    def frames_for(self, packet: SpacePacket | bytes, *, map_id: int | None = None) -> list[TcFrame]:
        raw = packet.pack() if isinstance(packet, SpacePacket) else bytes(packet)
        if len(raw) > self.max_data and not self.channel.has_segment_header:
            raise InvalidConfiguration(
                f"packet of {len(raw)} octets does not fit a {self.max_data}-octet data field "
                f"and the channel has no segment header")
        out = []
        for flags, part in segment(raw, self.max_data):
            fsn = self.vs if self.frame_type == TcFrameType.AD else 0
            out.append(TcFrame.build(self.channel, part, frame_type=self.frame_type,
                                     frame_sequence_number=fsn, sequence_flags=flags,
                                     map_id=map_id))
            if self.frame_type == TcFrameType.AD:
                self.vs = (self.vs + 1) % 256
        return out


@dataclass
class _MapState:
    buffer: bytearray = field(default_factory=bytearray)
    open: bool = False


class TcSegmentReassembler:
    """Rebuilds packets from TC data frames, per MAP ID (segment header in use) or per VC.

    A complete data unit (UNSEGMENTED, or FIRST..LAST) holds one or more whole packets.
    """

    def __init__(self, channel: TcChannel, *, max_packet_length: int = MAX_PACKET_LENGTH) -> None:
        self.channel = channel
        self.max_packet_length = max_packet_length
        self._maps: dict[int, _MapState] = {}

    def push(self, frame: TcFrame) -> ZoneResult:
        """Take one accepted data frame (BC frames carry no packets and are ignored)."""
        result = ZoneResult()
        if frame.header.control_command_flag:
            return result
        seg = frame.segment_header
        if seg is None:
            self._deliver(frame.data, result)
            return result
        state = self._maps.setdefault(seg.map_id, _MapState())
        flags = seg.sequence_flags
        if flags in (SequenceFlags.UNSEGMENTED, SequenceFlags.FIRST) and state.open:
            result.anomalies.append(Anomaly(
                AnomalyKind.PACKET_LOST,
                f"MAP {seg.map_id}: segmented packet of {len(state.buffer)} octets "
                f"abandoned by a new {flags.name} segment"))
            state.buffer.clear()
            state.open = False
        if flags == SequenceFlags.UNSEGMENTED:
            self._deliver(frame.data, result)
        elif flags == SequenceFlags.FIRST:
            state.buffer += frame.data
            state.open = True
        elif not state.open:
            result.anomalies.append(Anomaly(
                AnomalyKind.SEGMENT_OUT_OF_ORDER,
                f"MAP {seg.map_id}: {flags.name} segment without a FIRST segment dropped"))
        else:
            state.buffer += frame.data
            if len(state.buffer) > self.max_packet_length:
                result.anomalies.append(Anomaly(
                    AnomalyKind.PACKET_LOST,
                    f"MAP {seg.map_id}: segmented data over {self.max_packet_length} octets"))
                state.buffer.clear()
                state.open = False
            elif flags == SequenceFlags.LAST:
                self._deliver(bytes(state.buffer), result)
                state.buffer.clear()
                state.open = False
        return result

    def _deliver(self, data: bytes, result: ZoneResult) -> None:
        try:
            packets, tail = split_packets(data, max_packet_length=self.max_packet_length)
        except SdlsQkdError as exc:
            result.anomalies.append(Anomaly(AnomalyKind.BAD_PACKET_HEADER, str(exc)))
            return
        result.packets.extend(packets)
        if tail:
            result.anomalies.append(Anomaly(AnomalyKind.PACKET_LOST,
                                            f"{len(tail)} trailing octets are no whole packet"))
