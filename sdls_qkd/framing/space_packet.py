"""CCSDS Space Packets (133.0-B-2): primary header, packets, idle packets, sequence counters.

Layout of the 6-octet primary header (bit 0 = MSB of octet 0)::

    0-2 version (000) | 3 packet type | 4 sec. header flag | 5-15 APID |
    16-17 sequence flags | 18-31 sequence count | 32-47 data length (octets of data field - 1)

A packet is 7 .. 65542 octets.  Parsers raise only :mod:`sdls_qkd.errors` exceptions:
:class:`~sdls_qkd.errors.InvalidFrameLength` when octets are missing or a length is over a limit,
:class:`~sdls_qkd.errors.InvalidHeader` for a version or flag that is not allowed.  Builders raise
:class:`~sdls_qkd.errors.InvalidConfiguration` for values out of range.

Stream helpers: :func:`split_packets` splits a buffer of concatenated packets and returns the
incomplete tail; :class:`PacketStreamParser` does the same incrementally.  Both are what the
packet service uses to take packets out of a frame's packet zone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from sdls_qkd.errors import InvalidConfiguration, InvalidFrameLength, InvalidHeader

#: octets of the packet primary header
PRIMARY_HEADER_LENGTH: Final = 6
#: the only packet version number defined by 133.0-B-2 ("version 1", coded 000)
PACKET_VERSION: Final = 0
#: APID of idle packets
IDLE_APID: Final = 0x7FF
#: limits
MAX_APID: Final = 0x7FF
MAX_DATA_FIELD_LENGTH: Final = 65536
MIN_PACKET_LENGTH: Final = PRIMARY_HEADER_LENGTH + 1
MAX_PACKET_LENGTH: Final = PRIMARY_HEADER_LENGTH + MAX_DATA_FIELD_LENGTH
#: the sequence count is 14 bits and wraps per APID
SEQUENCE_COUNT_MODULUS: Final = 1 << 14

_HEADER = struct.Struct(">HHH")
#: the packet identification word and the data length field in one call (hot path of scanners)
IDENT_AND_LENGTH: Final = struct.Struct(">H2xH")


class PacketType(IntEnum):
    """Packet Type bit: telemetry (reporting) or telecommand (requesting)."""

    TM = 0
    TC = 1


class SequenceFlags(IntEnum):
    """Sequence flags of a Space Packet (and, same coding, of a TC segment header)."""

    CONTINUATION = 0b00
    FIRST = 0b01
    LAST = 0b10
    UNSEGMENTED = 0b11


_PACKET_TYPES: Final = tuple(PacketType)
_SEQUENCE_FLAGS: Final = tuple(SequenceFlags)


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidConfiguration(f"{name} must be an integer in {lo}..{hi}, not {value!r}",
                                   field=name)


@dataclass(frozen=True, slots=True)
class SpacePacketHeader:
    """The 6-octet Space Packet primary header.

    ``data_length`` is the field value: octets in the packet data field minus one.
    """

    packet_type: PacketType
    apid: int
    sequence_count: int = 0
    data_length: int = 0
    sec_hdr_flag: bool = False
    sequence_flags: SequenceFlags = SequenceFlags.UNSEGMENTED
    version: int = PACKET_VERSION

    def __post_init__(self) -> None:
        _check("version", self.version, PACKET_VERSION, PACKET_VERSION)
        _check("packet_type", self.packet_type, 0, 1)
        _check("apid", self.apid, 0, MAX_APID)
        _check("sequence_flags", self.sequence_flags, 0, 3)
        _check("sequence_count", self.sequence_count, 0, SEQUENCE_COUNT_MODULUS - 1)
        _check("data_length", self.data_length, 0, MAX_DATA_FIELD_LENGTH - 1)
        if self.apid == IDLE_APID and self.sec_hdr_flag:
            raise InvalidConfiguration("idle packets (APID 0x7FF) carry no secondary header",
                                       field="sec_hdr_flag")
        if not isinstance(self.packet_type, PacketType):
            object.__setattr__(self, "packet_type", PacketType(self.packet_type))
        if not isinstance(self.sequence_flags, SequenceFlags):
            object.__setattr__(self, "sequence_flags", SequenceFlags(self.sequence_flags))
        object.__setattr__(self, "sec_hdr_flag", bool(self.sec_hdr_flag))

    @property
    def packet_length(self) -> int:
        """Total packet octets: header + data field."""
        return PRIMARY_HEADER_LENGTH + self.data_length + 1

    @property
    def data_field_length(self) -> int:
        """Octets of the packet data field."""
        return self.data_length + 1

    @property
    def is_idle(self) -> bool:
        return self.apid == IDLE_APID

    def pack(self) -> bytes:
        """The 6 header octets."""
        return _HEADER.pack(
            (self.version << 13) | (self.packet_type << 12) | (self.sec_hdr_flag << 11) | self.apid,
            (self.sequence_flags << 14) | self.sequence_count,
            self.data_length,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> SpacePacketHeader:
        """Decode the header at ``offset`` of ``data`` (only 6 octets are read)."""
        have = len(data) - offset
        if have < PRIMARY_HEADER_LENGTH:
            raise InvalidFrameLength(
                f"Space Packet header needs {PRIMARY_HEADER_LENGTH} octets, got {max(have, 0)}",
                offset=offset)
        ident, control, length = _HEADER.unpack_from(data, offset)
        version = ident >> 13
        if version != PACKET_VERSION:
            raise InvalidHeader(f"Space Packet version must be 0, got {version}",
                                field="version", offset=offset)
        apid = ident & 0x7FF
        sec_hdr_flag = bool(ident & 0x0800)
        if apid == IDLE_APID and sec_hdr_flag:
            raise InvalidHeader("idle packet (APID 0x7FF) with secondary header flag set",
                                field="sec_hdr_flag", offset=offset)
        return _trusted_header(ident, control, length)


# Hot path: frozen dataclasses built from values in range by construction, skipping
# __post_init__ and the frozen __setattr__.
_new = object.__new__


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The ``__set__`` of a slot descriptor (writes a frozen dataclass field directly)."""
    setter: Callable[[object, object], None] = cls.__dict__[name].__set__
    return setter


def _layout_twin(cls: type) -> type[Any]:
    """A plain class with exactly the slots of the slotted frozen dataclass ``cls``.

    Hot paths fill a twin with ordinary attribute stores (which CPython specialises: several
    times faster than calling slot descriptors or ``object.__setattr__``), then turn it into a
    ``cls`` by ``__class__`` assignment, which CPython allows between classes of identical
    layout.  The probe below raises ``TypeError`` at import if the layouts ever differ.
    """
    twin: type[Any] = type(f"_{cls.__name__}Twin", (), {"__slots__": cls.__dict__["__slots__"]})
    probe = _new(twin)
    probe.__class__ = cls
    return twin


_HeaderTwin = _layout_twin(SpacePacketHeader)


def _trusted_header(ident: int, control: int, length: int) -> SpacePacketHeader:
    """A header from the three 16-bit words, version and idle rule already checked."""
    header = _new(_HeaderTwin)
    header.packet_type = _PACKET_TYPES[(ident >> 12) & 1]
    header.apid = ident & 0x7FF
    header.sequence_count = control & 0x3FFF
    header.data_length = length
    header.sec_hdr_flag = (ident & 0x0800) != 0
    header.sequence_flags = _SEQUENCE_FLAGS[control >> 14]
    header.version = PACKET_VERSION
    header.__class__ = SpacePacketHeader
    result: SpacePacketHeader = header
    return result


def packet_length_at(data: bytes | bytearray | memoryview, offset: int = 0) -> int | None:
    """Total length of the packet whose header starts at ``offset``, or None if the 6 header
    octets are not all there yet.  Checks the version (so a stream that lost sync is noticed)."""
    if len(data) - offset < PRIMARY_HEADER_LENGTH:
        return None
    if data[offset] >> 5 != PACKET_VERSION:
        raise InvalidHeader(f"Space Packet version must be 0, got {data[offset] >> 5}",
                            field="version", offset=offset)
    return PRIMARY_HEADER_LENGTH + 1 + ((data[offset + 4] << 8) | data[offset + 5])


@dataclass(frozen=True, slots=True)
class SpacePacket:
    """A whole Space Packet: header and packet data field (secondary header + user data).

    The secondary header's length is mission-defined per APID, so it stays inside ``data``.
    """

    header: SpacePacketHeader
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) != self.header.data_field_length:
            raise InvalidConfiguration(
                f"packet data field has {len(self.data)} octets but the header says "
                f"{self.header.data_field_length}", field="data_length")

    @classmethod
    def build(
        cls,
        packet_type: PacketType,
        apid: int,
        data: bytes,
        *,
        sequence_count: int = 0,
        sec_hdr_flag: bool = False,
        sequence_flags: SequenceFlags = SequenceFlags.UNSEGMENTED,
    ) -> SpacePacket:
        """A packet with its data length field computed from ``data`` (1..65536 octets)."""
        if not 1 <= len(data) <= MAX_DATA_FIELD_LENGTH:
            raise InvalidConfiguration(
                f"packet data field must be 1..{MAX_DATA_FIELD_LENGTH} octets, not {len(data)}",
                field="data_length")
        header = SpacePacketHeader(packet_type, apid, sequence_count, len(data) - 1,
                                   sec_hdr_flag, sequence_flags)
        return cls(header, bytes(data))

    @classmethod
    def idle(cls, length: int, *, sequence_count: int = 0, fill: int = 0x00,
             packet_type: PacketType = PacketType.TM) -> SpacePacket:
        """An idle packet (APID 0x7FF) of ``length`` total octets (7..65542); the fill octet is
        mission-defined."""
        if not MIN_PACKET_LENGTH <= length <= MAX_PACKET_LENGTH:
            raise InvalidConfiguration(
                f"idle packet length must be {MIN_PACKET_LENGTH}..{MAX_PACKET_LENGTH}, not {length}")
        _check("fill", fill, 0, 0xFF)
        return cls.build(packet_type, IDLE_APID, bytes([fill]) * (length - PRIMARY_HEADER_LENGTH),
                         sequence_count=sequence_count)

    # convenient read-through properties
    @property
    def apid(self) -> int:
        return self.header.apid

    @property
    def sequence_count(self) -> int:
        return self.header.sequence_count

    @property
    def is_idle(self) -> bool:
        return self.header.apid == IDLE_APID

    def __len__(self) -> int:
        return self.header.packet_length

    def pack(self) -> bytes:
        """Header and data field octets."""
        return self.header.pack() + self.data

    @classmethod
    def unpack_from(cls, data: bytes | bytearray | memoryview,
                    offset: int = 0) -> tuple[SpacePacket, int]:
        """Decode the packet at ``offset``; return it and the offset just past it."""
        header = SpacePacketHeader.unpack(data, offset)
        end = offset + header.packet_length
        if end > len(data):
            raise InvalidFrameLength(
                f"Space Packet needs {header.packet_length} octets, got {len(data) - offset}",
                field="data_length", offset=offset + 4)
        packet = _new(cls)  # consistent by construction: skip __post_init__
        _set_packet_header(packet, header)
        _set_packet_data(packet, bytes(data[offset + PRIMARY_HEADER_LENGTH:end]))
        return packet, end

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> SpacePacket:
        """Decode exactly one packet; trailing octets are an error."""
        packet, end = cls.unpack_from(data, 0)
        if end != len(data):
            raise InvalidFrameLength(
                f"Space Packet is {end} octets but {len(data)} were given",
                field="data_length", offset=4)
        return packet


def scan_packet_octets(
    data: bytes, offset: int = 0, *, max_packet_length: int = MAX_PACKET_LENGTH
) -> tuple[list[bytes], int, InvalidHeader | InvalidFrameLength | None]:
    """Walk concatenated packets in ``data`` from ``offset`` without raising.

    Returns the whole packets' octets (headers checked: version, idle packet without secondary
    header flag, length limit), the offset where scanning stopped (start of an incomplete packet,
    or of a bad header) and the error found there, if any.
    """
    out: list[bytes] = []
    total = len(data)
    while total - offset >= PRIMARY_HEADER_LENGTH:
        first = data[offset]
        if first & 0xE0:
            return out, offset, InvalidHeader(
                f"Space Packet version must be 0, got {first >> 5}", field="version",
                offset=offset)
        if first & 0x0F == 0x0F and data[offset + 1] == 0xFF:
            return out, offset, InvalidHeader(
                "idle packet (APID 0x7FF) with secondary header flag set", field="sec_hdr_flag",
                offset=offset)
        length = ((data[offset + 4] << 8) | data[offset + 5]) + PRIMARY_HEADER_LENGTH + 1
        if length > max_packet_length:
            return out, offset, InvalidFrameLength(
                f"Space Packet of {length} octets is over the maximum {max_packet_length}",
                field="data_length", offset=offset + 4)
        end = offset + length
        if end > total:
            break
        out.append(data[offset:end])
        offset = end
    return out, offset, None


def split_packet_octets(
    buf: bytes | bytearray | memoryview, *, max_packet_length: int = MAX_PACKET_LENGTH
) -> tuple[list[bytes], bytes]:
    """Split concatenated packets into their octets (headers checked, not decoded); return the
    whole packets and the incomplete tail.  The fast path under :func:`split_packets`.

    A header with a bad version, an idle packet with the secondary header flag, or a length over
    ``max_packet_length`` raises (the stream lost synchronisation).
    """
    data = bytes(buf)
    out, offset, error = scan_packet_octets(data, 0, max_packet_length=max_packet_length)
    if error is not None:
        raise error
    return out, data[offset:]


_set_packet_header = _slot_setter(SpacePacket, "header")
_set_packet_data = _slot_setter(SpacePacket, "data")
_PacketTwin = _layout_twin(SpacePacket)
_unpack_header = _HEADER.unpack_from


def _packet_from_checked_octets(raw: bytes) -> SpacePacket:
    """A SpacePacket from octets :func:`split_packet_octets` already checked (no re-checks)."""
    packet = _new(_PacketTwin)
    packet.header = _trusted_header(*_unpack_header(raw, 0))
    packet.data = raw[PRIMARY_HEADER_LENGTH:]
    packet.__class__ = SpacePacket
    result: SpacePacket = packet
    return result


class SpacePacketView:
    """A whole Space Packet kept as its octets, header fields decoded only when read.

    The lightweight twin of :class:`SpacePacket` for receivers that route or store packets
    without looking inside most of them: making one costs a single object, every field is a
    few integer operations on access, :attr:`header` and :meth:`to_packet` give the typed
    objects.  The constructor checks the octets as :meth:`SpacePacket.unpack` does.
    """

    __slots__ = ("_octets",)

    def __init__(self, octets: bytes | bytearray | memoryview) -> None:
        raw = bytes(octets)
        SpacePacket.unpack(raw)  # same checks, same errors
        self._octets = raw

    @classmethod
    def _trusted(cls, raw: bytes) -> SpacePacketView:
        """A view of octets a scanner already checked."""
        view = _new(cls)
        view._octets = raw
        return view

    @property
    def octets(self) -> bytes:
        """The packet octets (header and data field)."""
        return self._octets

    @property
    def packet_type(self) -> PacketType:
        return _PACKET_TYPES[(self._octets[0] >> 4) & 1]

    @property
    def sec_hdr_flag(self) -> bool:
        return bool(self._octets[0] & 0x08)

    @property
    def apid(self) -> int:
        raw = self._octets
        return ((raw[0] << 8) | raw[1]) & 0x7FF

    @property
    def sequence_flags(self) -> SequenceFlags:
        return _SEQUENCE_FLAGS[self._octets[2] >> 6]

    @property
    def sequence_count(self) -> int:
        raw = self._octets
        return ((raw[2] << 8) | raw[3]) & 0x3FFF

    @property
    def data_length(self) -> int:
        """The data length field (octets of the data field minus one)."""
        raw = self._octets
        return (raw[4] << 8) | raw[5]

    @property
    def is_idle(self) -> bool:
        raw = self._octets
        return raw[0] & 0x07 == 0x07 and raw[1] == 0xFF

    @property
    def header(self) -> SpacePacketHeader:
        """The typed primary header."""
        return _trusted_header(*_unpack_header(self._octets, 0))

    @property
    def data(self) -> bytes:
        """The packet data field (secondary header + user data)."""
        return self._octets[PRIMARY_HEADER_LENGTH:]

    def to_packet(self) -> SpacePacket:
        """The typed :class:`SpacePacket`."""
        return _packet_from_checked_octets(self._octets)

    def pack(self) -> bytes:
        return self._octets

    def __len__(self) -> int:
        return len(self._octets)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpacePacketView):
            return self._octets == other.octets
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._octets)

    def __repr__(self) -> str:
        return (f"SpacePacketView(apid={self.apid:#05x}, sequence_count={self.sequence_count}, "
                f"length={len(self._octets)})")



def split_packets(
    buf: bytes | bytearray | memoryview, *, max_packet_length: int = MAX_PACKET_LENGTH
) -> tuple[list[SpacePacket], bytes]:
    """Split concatenated packets; return the whole packets (decoded) and the incomplete tail.

    Raises as :func:`split_packet_octets`.
    """
    raws, tail = split_packet_octets(buf, max_packet_length=max_packet_length)
    return [_packet_from_checked_octets(raw) for raw in raws], tail


class PacketStreamParser:
    """Incremental splitter of a byte stream of concatenated Space Packets.

    ``feed`` returns every packet completed by the new octets.  No packet is ever lost to an
    error: when a bad header follows good packets, ``feed`` returns the good ones and leaves the
    bad header at the head of the buffer, so the next ``feed`` (or :meth:`check`) raises, with
    ``offset`` counted from the start of the stream.  After an error the stream has lost
    synchronisation: call :meth:`reset` or :meth:`resync` to go on.
    """

    def __init__(self, *, max_packet_length: int = MAX_PACKET_LENGTH) -> None:
        _check("max_packet_length", max_packet_length, MIN_PACKET_LENGTH, MAX_PACKET_LENGTH)
        self.max_packet_length = max_packet_length
        self._buf = bytearray()
        #: octets consumed so far (stream offset of the buffer head)
        self.consumed = 0

    @property
    def pending(self) -> int:
        """Octets held waiting for the rest of a packet."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop the buffered octets (e.g. after a gap in the stream)."""
        self.consumed += len(self._buf)
        self._buf.clear()

    def resync(self, data: bytes | bytearray | memoryview) -> list[SpacePacket]:
        """Drop the buffer and restart at ``data``, which begins with a packet header."""
        self.reset()
        return self.feed(data)

    def feed(self, data: bytes | bytearray | memoryview) -> list[SpacePacket]:
        """Add octets; return the packets they complete."""
        self._buf += data
        packets: list[SpacePacket] = []
        offset = 0
        try:
            while True:
                length = packet_length_at(self._buf, offset)
                if length is None:
                    break
                if length > self.max_packet_length:
                    raise InvalidFrameLength(
                        f"Space Packet of {length} octets is over the maximum "
                        f"{self.max_packet_length}", field="data_length", offset=offset + 4)
                if offset + length > len(self._buf):
                    break
                packet, offset = SpacePacket.unpack_from(self._buf, offset)
                packets.append(packet)
        except (InvalidHeader, InvalidFrameLength) as exc:
            if not packets:
                # offsets in the error count from the start of the stream
                if exc.offset is not None:
                    exc.offset += self.consumed
                raise
        del self._buf[:offset]
        self.consumed += offset
        return packets

    def check(self) -> None:
        """Raise if the buffer head is a bad header (see the class docstring)."""
        self.feed(b"")


class SequenceCounter:
    """Per-APID 14-bit packet sequence counters (sender side), wrapping 16383 -> 0."""

    def __init__(self, initial: dict[int, int] | None = None) -> None:
        self._next: dict[int, int] = {}
        for apid, value in (initial or {}).items():
            self.set(apid, value)

    def peek(self, apid: int) -> int:
        """The count the next packet of ``apid`` will carry."""
        _check("apid", apid, 0, MAX_APID)
        return self._next.get(apid, 0)

    def next(self, apid: int) -> int:
        """Take the count for a new packet of ``apid`` and advance (mod 16384)."""
        value = self.peek(apid)
        self._next[apid] = (value + 1) % SEQUENCE_COUNT_MODULUS
        return value

    def set(self, apid: int, value: int) -> None:
        """Set the next count of ``apid``."""
        _check("apid", apid, 0, MAX_APID)
        _check("sequence_count", value, 0, SEQUENCE_COUNT_MODULUS - 1)
        self._next[apid] = value

    def snapshot(self) -> dict[int, int]:
        """The next count per APID (for persisting)."""
        return dict(self._next)


def sequence_gap(previous: int, received: int) -> int:
    """Packets missing between two consecutive counts of one APID (mod 16384): 0 if in order."""
    return (received - previous - 1) % SEQUENCE_COUNT_MODULUS


def pack_packets(packets: Iterable[SpacePacket]) -> bytes:
    """Concatenate packets."""
    return b"".join(p.pack() for p in packets)
