"""Hypothesis strategies for Space Packets, plus the generic byte mutator of the framing fuzzers.

:func:`mutated_bytes` is shared by :mod:`sdls_qkd.fuzz.tc`, :mod:`sdls_qkd.fuzz.tm` and
:mod:`sdls_qkd.fuzz.ocf`: given valid octets, the offsets of their length fields and an optional
``reseal`` (recompute the FECF so the checks behind the CRC are reached), it draws truncations,
extensions, length fields set to 0 / all ones / off by one, single header bits flipped, random
octet overwrites and random bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from sdls_qkd.framing.space_packet import (
    IDLE_APID,
    MAX_APID,
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
)

__all__ = [
    "LengthField",
    "SPACE_PACKET_LENGTH_FIELDS",
    "mutated_bytes",
    "mutated_packet_stream",
    "packet_headers",
    "packet_streams",
    "space_packets",
]


@dataclass(frozen=True)
class LengthField:
    """A length (or count) field inside a structure: ``width`` bits starting at bit ``bit``
    (bit 0 = MSB of octet 0)."""

    bit: int
    width: int

    def get(self, data: bytes | bytearray) -> int | None:
        end = self.bit + self.width
        if len(data) * 8 < end:
            return None
        word = int.from_bytes(data[self.bit // 8:(end + 7) // 8], "big")
        return (word >> ((8 - end % 8) % 8)) & ((1 << self.width) - 1)

    def put(self, data: bytes, value: int) -> bytes:
        end = self.bit + self.width
        if len(data) * 8 < end:
            return data
        first, last = self.bit // 8, (end + 7) // 8
        shift = (8 - end % 8) % 8
        mask = ((1 << self.width) - 1) << shift
        word = int.from_bytes(data[first:last], "big")
        word = (word & ~mask) | ((value % (1 << self.width)) << shift)
        return data[:first] + word.to_bytes(last - first, "big") + data[last:]


#: the Space Packet data length field (octets 4-5)
SPACE_PACKET_LENGTH_FIELDS = (LengthField(32, 16),)


def mutated_bytes(
    data: bytes,
    *,
    header_length: int,
    length_fields: Sequence[LengthField] = (),
    reseal: Callable[[bytes], bytes] | None = None,
) -> st.SearchStrategy[bytes]:
    """Mutants of ``data`` (which may still be valid): see the module docstring."""
    n = len(data)

    def flip(bit: int) -> bytes:
        b = bytearray(data)
        if n:
            b[bit // 8] ^= 0x80 >> (bit % 8)
        return bytes(b)

    def overwrite(args: tuple[int, int]) -> bytes:
        pos, val = args
        b = bytearray(data)
        if n:
            b[pos % n] = val
        return bytes(b)

    def set_length(args: tuple[LengthField, str]) -> bytes:
        lf, how = args
        value = lf.get(data)
        if value is None:
            return data
        new = {"zero": 0, "max": (1 << lf.width) - 1, "plus": value + 1,
               "minus": value - 1}[how]
        return lf.put(data, new)

    choices: list[st.SearchStrategy[bytes]] = [
        st.integers(0, max(n - 1, 0)).map(lambda k: data[:k]),
        st.binary(min_size=1, max_size=8).map(lambda extra: data + extra),
        st.integers(0, max(8 * min(header_length, n) - 1, 0)).map(flip),
        st.tuples(st.integers(0, max(n - 1, 0)), st.integers(0, 255)).map(overwrite),
        st.binary(max_size=n + 4),
    ]
    if length_fields:
        choices.append(st.tuples(st.sampled_from(list(length_fields)),
                                 st.sampled_from(["zero", "max", "plus", "minus"])).map(set_length))
    raw = st.one_of(*choices)
    if reseal is None:
        return raw
    return st.one_of(raw, raw.map(reseal))


@st.composite
def packet_headers(draw: st.DrawFn, *, max_data_length: int = 0xFFFF) -> SpacePacketHeader:
    """Any valid primary header (idle packets without secondary header flag)."""
    apid = draw(st.integers(0, MAX_APID))
    return SpacePacketHeader(
        packet_type=draw(st.sampled_from(PacketType)),
        apid=apid,
        sequence_count=draw(st.integers(0, 0x3FFF)),
        data_length=draw(st.integers(0, max_data_length)),
        sec_hdr_flag=False if apid == IDLE_APID else draw(st.booleans()),
        sequence_flags=draw(st.sampled_from(SequenceFlags)),
    )


@st.composite
def space_packets(draw: st.DrawFn, *, max_data_field: int = 64,
                  apids: Sequence[int] | None = None) -> SpacePacket:
    """Valid packets with data fields of 1..``max_data_field`` octets."""
    data = draw(st.binary(min_size=1, max_size=max_data_field))
    apid = draw(st.sampled_from(list(apids))) if apids else draw(st.integers(0, MAX_APID))
    return SpacePacket.build(
        draw(st.sampled_from(PacketType)), apid, data,
        sequence_count=draw(st.integers(0, 0x3FFF)),
        sec_hdr_flag=False if apid == IDLE_APID else draw(st.booleans()),
        sequence_flags=draw(st.sampled_from(SequenceFlags)))


def packet_streams(*, max_packets: int = 8,
                   max_data_field: int = 64) -> st.SearchStrategy[list[SpacePacket]]:
    """Lists of valid packets (to concatenate into streams or packet zones)."""
    return st.lists(space_packets(max_data_field=max_data_field), max_size=max_packets)


@st.composite
def mutated_packet_stream(draw: st.DrawFn) -> bytes:
    """Concatenated packets, then mutated (truncated, length fields damaged, bits flipped)."""
    packets = draw(packet_streams(max_packets=4))
    data = b"".join(p.pack() for p in packets)
    fields = [LengthField(32 + 8 * off, 16)
              for off in _offsets(packets)] or list(SPACE_PACKET_LENGTH_FIELDS)
    return draw(mutated_bytes(data, header_length=len(data), length_fields=fields))


def _offsets(packets: Sequence[SpacePacket]) -> list[int]:
    out, pos = [], 0
    for p in packets:
        out.append(pos)
        pos += len(p)
    return out
