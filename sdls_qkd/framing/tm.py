"""TM Transfer Frames (CCSDS 132.0-B-3): fixed-length frames of a TM virtual channel.

Frame::

    | primary header 6 | [secondary header 2..64] | data field | [OCF 4] | [FECF 2] |

Primary header bits: TFVN 0-1 | SCID 2-11 | VCID 12-14 | OCF flag 15 | MC frame count 16-23 |
VC frame count 24-31 | data field status 32-47 = secondary header flag 32 | sync flag 33 |
packet order flag 34 | segment length ID 35-36 | first header pointer 37-47.

Two ways in, held to the same bytes by the tests:

* :class:`TmFrame` / :class:`TmPrimaryHeader` -- frozen dataclasses, every field typed and
  checked; :data:`TM_PRIMARY_HEADER_LAYOUT` is the ``construct`` layout of the primary header,
  the readable specification.
* :class:`TmCodec` -- the hot path for one channel: offsets precomputed once, one
  ``struct.unpack_from`` and one CRC per frame, results in a :class:`TmFrameView` tuple.

Both check, in this order: exact frame length, FECF, then the header against the managed
parameters (TFVN, SCID, VCID unless disabled, OCF flag, secondary header flag and length).
Settled leniency (as Yamcs and spacepackets): the secondary header version number, the packet
order flag and the segment length ID are reported but not enforced.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from construct import BitsInteger, BitStruct, Flag

from sdls_qkd.errors import FecfError, InvalidConfiguration, InvalidFrameLength, InvalidHeader
from sdls_qkd.framing.channel import TmChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.ocf import OCF_LENGTH, Clcw, FrameSecurityReport, OcfWord, ocf_unpack
from sdls_qkd.framing.space_packet import _layout_twin

PRIMARY_HEADER_LENGTH: Final = 6
FECF_LENGTH: Final = 2
TFVN: Final = 0
#: First Header Pointer: no packet header starts in this frame
FHP_NO_PACKET_START: Final = 0x7FF
#: First Header Pointer: the data field holds only idle data (OID frame)
FHP_IDLE: Final = 0x7FE
#: Segment length ID required when the sync flag is 0
SEGMENT_LENGTH_ID_PACKETS: Final = 0b11
MAX_SECONDARY_HEADER_LENGTH: Final = 64

_HEADER = struct.Struct(">HBBH")
# the CRC backend itself (one Python call less than the crc16 wrapper) when crc.py exposes it
_crc16: Callable[[bytes | bytearray | memoryview], int] = crc16

#: The primary header as a ``construct`` layout: the readable spec, used by slow paths
#: (inspect, fuzzing) and tested to give the same bytes as :class:`TmPrimaryHeader` and
#: :class:`TmCodec`.
TM_PRIMARY_HEADER_LAYOUT = BitStruct(
    "tfvn" / BitsInteger(2),
    "scid" / BitsInteger(10),
    "vcid" / BitsInteger(3),
    "ocf_flag" / Flag,
    "mc_frame_count" / BitsInteger(8),
    "vc_frame_count" / BitsInteger(8),
    "secondary_header_flag" / Flag,
    "sync_flag" / Flag,
    "packet_order_flag" / Flag,
    "segment_length_id" / BitsInteger(2),
    "first_header_pointer" / BitsInteger(11),
)


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidConfiguration(f"{name} must be an integer in {lo}..{hi}, not {value!r}",
                                   field=name)


@dataclass(frozen=True, slots=True)
class TmPrimaryHeader:
    """The 6-octet TM primary header."""

    scid: int
    vcid: int
    mc_frame_count: int = 0
    vc_frame_count: int = 0
    ocf_flag: bool = False
    secondary_header_flag: bool = False
    sync_flag: bool = False
    packet_order_flag: bool = False
    segment_length_id: int = SEGMENT_LENGTH_ID_PACKETS
    first_header_pointer: int = 0
    tfvn: int = TFVN

    def __post_init__(self) -> None:
        _check("tfvn", self.tfvn, TFVN, TFVN)
        _check("scid", self.scid, 0, 0x3FF)
        _check("vcid", self.vcid, 0, 7)
        _check("mc_frame_count", self.mc_frame_count, 0, 0xFF)
        _check("vc_frame_count", self.vc_frame_count, 0, 0xFF)
        _check("segment_length_id", self.segment_length_id, 0, 3)
        _check("first_header_pointer", self.first_header_pointer, 0, 0x7FF)
        for name in ("ocf_flag", "secondary_header_flag", "sync_flag", "packet_order_flag"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def data_field_status(self) -> int:
        """Bits 32-47 as an integer."""
        return ((self.secondary_header_flag << 15) | (self.sync_flag << 14)
                | (self.packet_order_flag << 13) | (self.segment_length_id << 11)
                | self.first_header_pointer)

    def pack(self) -> bytes:
        return _HEADER.pack(
            (self.tfvn << 14) | (self.scid << 4) | (self.vcid << 1) | self.ocf_flag,
            self.mc_frame_count, self.vc_frame_count, self.data_field_status)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> TmPrimaryHeader:
        """Decode the first 6 octets (TFVN must be 0)."""
        if len(data) < PRIMARY_HEADER_LENGTH:
            raise InvalidFrameLength(
                f"TM primary header needs {PRIMARY_HEADER_LENGTH} octets, got {len(data)}")
        ident, mc, vc, status = _HEADER.unpack_from(data, 0)
        tfvn = ident >> 14
        if tfvn != TFVN:
            raise InvalidHeader(f"TM transfer frame version must be 0, got {tfvn}",
                                field="tfvn", offset=0)
        return cls(scid=(ident >> 4) & 0x3FF, vcid=(ident >> 1) & 7, mc_frame_count=mc,
                   vc_frame_count=vc, ocf_flag=bool(ident & 1),
                   secondary_header_flag=bool(status >> 15), sync_flag=bool((status >> 14) & 1),
                   packet_order_flag=bool((status >> 13) & 1),
                   segment_length_id=(status >> 11) & 3, first_header_pointer=status & 0x7FF)


@dataclass(frozen=True, slots=True)
class TmSecondaryHeader:
    """TM secondary header: ID octet (version 2 bits, length 6 bits = total - 1) + data."""

    data: bytes
    version: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        _check("version", self.version, 0, 3)
        if not 1 <= len(self.data) <= MAX_SECONDARY_HEADER_LENGTH - 1:
            raise InvalidConfiguration(
                f"TM secondary header data must be 1..{MAX_SECONDARY_HEADER_LENGTH - 1} octets, "
                f"not {len(self.data)}", field="secondary_header")

    @property
    def length(self) -> int:
        """Total octets including the ID octet."""
        return 1 + len(self.data)

    def pack(self) -> bytes:
        return bytes([(self.version << 6) | len(self.data)]) + self.data

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview,
               offset: int = PRIMARY_HEADER_LENGTH) -> TmSecondaryHeader:
        """Decode the secondary header at ``offset``; its length comes from its ID octet."""
        if len(data) <= offset:
            raise InvalidFrameLength(f"TM secondary header needs 1 octet at offset {offset}, "
                                     f"got {max(len(data) - offset, 0)}", offset=offset)
        ident = data[offset]
        length = (ident & 0x3F) + 1
        if length < 2:
            raise InvalidHeader("TM secondary header length field is 0 (no data octet)",
                                field="secondary_header_length", offset=offset)
        if offset + length > len(data):
            raise InvalidFrameLength(
                f"TM secondary header needs {length} octets, got {len(data) - offset}",
                field="secondary_header_length", offset=offset)
        return cls(bytes(data[offset + 1:offset + length]), ident >> 6)


_TM_FIELD_KEYS = frozenset({
    "tfvn", "scid", "vcid", "data_field_hex", "fecf", "ocf_flag", "mc_frame_count",
    "vc_frame_count", "secondary_header_flag", "sync_flag", "packet_order_flag",
    "segment_length_id", "first_header_pointer", "secondary_header_hex", "ocf_hex"})


def _hex(value: object, name: str) -> bytes:
    """Octets from a schema hex string (caller's input: InvalidConfiguration if not hex)."""
    if not isinstance(value, str):
        raise InvalidConfiguration(f"{name} must be a hex string, not {value!r}", field=name)
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidConfiguration(f"{name} is not valid hex", field=name) from None


def _ocf_bytes(ocf: bytes | OcfWord | None) -> bytes | None:
    if ocf is None or isinstance(ocf, bytes):
        return ocf
    return ocf.pack()


@dataclass(frozen=True, slots=True)
class TmFrame:
    """A TM transfer frame: header, optional secondary header, data field, OCF and FECF."""

    header: TmPrimaryHeader
    data: bytes
    secondary_header: TmSecondaryHeader | None = None
    ocf: bytes | None = None
    fecf: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if self.ocf is not None and len(self.ocf) != OCF_LENGTH:
            raise InvalidConfiguration(f"OCF must be {OCF_LENGTH} octets, not {len(self.ocf)}",
                                       field="ocf")
        if self.header.ocf_flag != (self.ocf is not None):
            raise InvalidConfiguration("OCF flag and OCF presence disagree", field="ocf_flag")
        if self.header.secondary_header_flag != (self.secondary_header is not None):
            raise InvalidConfiguration("secondary header flag and presence disagree",
                                       field="secondary_header_flag")

    # ------------------------------------------------------------------ convenience
    @property
    def scid(self) -> int:
        return self.header.scid

    @property
    def vcid(self) -> int:
        return self.header.vcid

    @property
    def first_header_pointer(self) -> int:
        return self.header.first_header_pointer

    @property
    def is_idle(self) -> bool:
        """An OID frame (FHP 0x7FE)."""
        return not self.header.sync_flag and self.header.first_header_pointer == FHP_IDLE

    @property
    def ocf_word(self) -> OcfWord | None:
        """The OCF decoded as CLCW or FSR."""
        return None if self.ocf is None else ocf_unpack(self.ocf)

    def to_fields(self) -> dict[str, int | str | None]:
        """The TM field keys of the ``sdls-vectors/1`` schema (flags as 0/1, octets as hex;
        absent secondary header / OCF / FECF as None).  ``secondary_header_hex`` is the whole
        secondary header, ID octet included."""
        h = self.header
        return {
            "tfvn": h.tfvn, "scid": h.scid, "vcid": h.vcid, "ocf_flag": int(h.ocf_flag),
            "mc_frame_count": h.mc_frame_count, "vc_frame_count": h.vc_frame_count,
            "secondary_header_flag": int(h.secondary_header_flag), "sync_flag": int(h.sync_flag),
            "packet_order_flag": int(h.packet_order_flag),
            "segment_length_id": h.segment_length_id,
            "first_header_pointer": h.first_header_pointer,
            "secondary_header_hex": (None if self.secondary_header is None
                                     else self.secondary_header.pack().hex()),
            "data_field_hex": self.data.hex(),
            "ocf_hex": None if self.ocf is None else self.ocf.hex(),
            "fecf": self.fecf,
        }

    #: former name of :meth:`to_fields`, kept for callers
    schema_fields = to_fields

    @classmethod
    def from_fields(cls, fields: dict[str, Any], channel: TmChannel) -> TmFrame:
        """Inverse of :meth:`to_fields` (``sdls-vectors/1`` ``frame_encode``).

        Defaults: the channel's SCID/VCID, counts 0, sync/packet-order 0, segment length ID 11,
        FHP 0, zero octets for data field / secondary header data / OCF.  Flags the channel
        fixes (OCF, secondary header) must agree with it when given; ``fecf`` is computed by
        :meth:`pack` (a given value is ignored).
        """
        unknown = set(fields) - _TM_FIELD_KEYS
        if unknown:
            raise InvalidConfiguration(f"unknown TM field keys: {sorted(unknown)}")
        if fields.get("tfvn", TFVN) != TFVN:
            raise InvalidConfiguration(f"TM tfvn must be 0, not {fields['tfvn']!r}", field="tfvn")
        for key, want in (("ocf_flag", channel.has_ocf),
                          ("secondary_header_flag", bool(channel.secondary_header_length))):
            if key in fields and bool(fields[key]) != want:
                raise InvalidConfiguration(f"{key} {fields[key]!r} disagrees with the channel",
                                           field=key)
        sh = None
        if channel.secondary_header_length:
            raw_sh = fields.get("secondary_header_hex")
            if raw_sh is None:
                sh = TmSecondaryHeader(bytes(channel.secondary_header_length - 1))
            else:
                octets = _hex(raw_sh, "secondary_header_hex")
                if not 2 <= len(octets) <= MAX_SECONDARY_HEADER_LENGTH or (
                        (octets[0] & 0x3F) + 1 != len(octets)):
                    raise InvalidConfiguration(
                        "secondary_header_hex must be 2..64 octets with a matching length field",
                        field="secondary_header_hex")
                sh = TmSecondaryHeader(octets[1:], octets[0] >> 6)
        data = fields.get("data_field_hex")
        ocf = fields.get("ocf_hex")
        return cls.build(
            channel,
            _hex(data, "data_field_hex") if data is not None else bytes(channel.data_field_length),
            mc_frame_count=fields.get("mc_frame_count", 0),
            vc_frame_count=fields.get("vc_frame_count", 0),
            first_header_pointer=fields.get("first_header_pointer", 0),
            ocf=(_hex(ocf, "ocf_hex") if ocf is not None else bytes(OCF_LENGTH))
            if channel.has_ocf else None,
            secondary_header=sh, sync_flag=bool(fields.get("sync_flag", 0)),
            packet_order_flag=bool(fields.get("packet_order_flag", 0)),
            segment_length_id=fields.get("segment_length_id", SEGMENT_LENGTH_ID_PACKETS),
            scid=fields.get("scid", channel.scid), vcid=fields.get("vcid", channel.vcid))

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        channel: TmChannel,
        data: bytes,
        *,
        mc_frame_count: int = 0,
        vc_frame_count: int = 0,
        first_header_pointer: int = 0,
        ocf: bytes | Clcw | FrameSecurityReport | None = None,
        secondary_header: bytes | TmSecondaryHeader | None = None,
        sync_flag: bool = False,
        packet_order_flag: bool = False,
        segment_length_id: int = SEGMENT_LENGTH_ID_PACKETS,
        scid: int | None = None,
        vcid: int | None = None,
    ) -> TmFrame:
        """A frame for ``channel``; ``data`` must fill the data field exactly.  ``scid`` /
        ``vcid`` default to the channel's (other values make frames for negative tests)."""
        if len(data) != channel.data_field_length:
            raise InvalidConfiguration(
                f"TM data field must be {channel.data_field_length} octets on this channel, "
                f"not {len(data)}", field="data")
        if channel.has_ocf != (ocf is not None):
            raise InvalidConfiguration(
                f"channel {'requires' if channel.has_ocf else 'has no'} OCF", field="ocf")
        sh: TmSecondaryHeader | None = None
        if channel.secondary_header_length:
            if secondary_header is None:
                raise InvalidConfiguration("channel requires a secondary header",
                                           field="secondary_header")
            sh = (secondary_header if isinstance(secondary_header, TmSecondaryHeader)
                  else TmSecondaryHeader(bytes(secondary_header)))
            if sh.length != channel.secondary_header_length:
                raise InvalidConfiguration(
                    f"secondary header must be {channel.secondary_header_length} octets, "
                    f"not {sh.length}", field="secondary_header")
        elif secondary_header is not None:
            raise InvalidConfiguration("channel has no secondary header", field="secondary_header")
        header = TmPrimaryHeader(
            scid=channel.scid if scid is None else scid,
            vcid=channel.vcid if vcid is None else vcid, mc_frame_count=mc_frame_count,
            vc_frame_count=vc_frame_count, ocf_flag=channel.has_ocf,
            secondary_header_flag=sh is not None, sync_flag=sync_flag,
            packet_order_flag=packet_order_flag, segment_length_id=segment_length_id,
            first_header_pointer=first_header_pointer, tfvn=channel.tfvn)
        frame = cls(header, bytes(data), sh, _ocf_bytes(ocf))
        if channel.has_fecf:
            object.__setattr__(frame, "fecf", crc16(frame._body()))
        return frame

    @classmethod
    def idle(cls, channel: TmChannel, *, mc_frame_count: int = 0, vc_frame_count: int = 0,
             fill: int = 0x55, ocf: bytes | Clcw | FrameSecurityReport | None = None,
             secondary_header: bytes | TmSecondaryHeader | None = None) -> TmFrame:
        """An OID (idle) frame: FHP 0x7FE, data field filled with the mission's idle octet."""
        _check("fill", fill, 0, 0xFF)
        return cls.build(channel, bytes([fill]) * channel.data_field_length,
                         mc_frame_count=mc_frame_count, vc_frame_count=vc_frame_count,
                         first_header_pointer=FHP_IDLE, ocf=ocf,
                         secondary_header=secondary_header)

    def _body(self) -> bytes:
        parts = [self.header.pack()]
        if self.secondary_header is not None:
            parts.append(self.secondary_header.pack())
        parts.append(self.data)
        if self.ocf is not None:
            parts.append(self.ocf)
        return b"".join(parts)

    def pack(self, channel: TmChannel) -> bytes:
        """The frame octets (FECF recomputed when the channel has one)."""
        body = self._body()
        total = len(body) + (FECF_LENGTH if channel.has_fecf else 0)
        if total != channel.frame_length:
            raise InvalidConfiguration(
                f"TM frame would be {total} octets, channel frame length is "
                f"{channel.frame_length}", field="frame_length")
        if self.header.ocf_flag != channel.has_ocf:
            raise InvalidConfiguration("frame OCF flag does not match the channel",
                                       field="ocf_flag")
        if self.header.secondary_header_flag != bool(channel.secondary_header_length):
            raise InvalidConfiguration("frame secondary header does not match the channel",
                                       field="secondary_header_flag")
        if channel.has_fecf:
            return body + crc16(body).to_bytes(2, "big")
        return body

    # ------------------------------------------------------------------ parsing
    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, channel: TmChannel, *,
               check_vcid: bool = True) -> TmFrame:
        """Decode one frame of ``channel`` (see the module docstring for the checks)."""
        entry = _CODECS_BY_ID[1 if check_vcid else 0].get(id(channel))
        codec = (entry[1] if entry is not None and entry[0] is channel
                 else _codec_for(channel, check_vcid))
        ident, mc, vc, status, sh_raw, data_field, ocf, fecf = codec.parse(data)
        # every value below is in range by construction (the codec checked the frame): build
        # the frozen dataclasses without their __post_init__ checks
        header = _new(_PrimaryHeaderTwin)
        header.scid = (ident >> 4) & 0x3FF
        header.vcid = (ident >> 1) & 7
        header.mc_frame_count = mc
        header.vc_frame_count = vc
        header.ocf_flag = ocf != b""
        header.secondary_header_flag = sh_raw != b""
        header.sync_flag = (status & 0x4000) != 0
        header.packet_order_flag = (status & 0x2000) != 0
        header.segment_length_id = (status >> 11) & 3
        header.first_header_pointer = status & 0x7FF
        header.tfvn = TFVN
        header.__class__ = TmPrimaryHeader
        sh = None
        if sh_raw:
            sh = _new(_SecondaryHeaderTwin)
            sh.data = sh_raw[1:]
            sh.version = sh_raw[0] >> 6
            sh.__class__ = TmSecondaryHeader
        if cls is TmFrame:
            frame = _new(_FrameTwin)
            frame.header = header
            frame.data = data_field
            frame.secondary_header = sh
            frame.ocf = ocf or None
            frame.fecf = fecf if codec._has_fecf else None
            frame.__class__ = TmFrame
            result: TmFrame = frame
            return result
        return _trusted(cls, (("header", header), ("data", data_field), ("secondary_header", sh),
                              ("ocf", ocf or None),
                              ("fecf", fecf if codec._has_fecf else None)))


_T = TypeVar("_T")
_new = object.__new__
_PrimaryHeaderTwin = _layout_twin(TmPrimaryHeader)
_SecondaryHeaderTwin = _layout_twin(TmSecondaryHeader)
_FrameTwin = _layout_twin(TmFrame)


def _trusted(cls: type[_T], values: tuple[tuple[str, object], ...]) -> _T:
    """An instance of a frozen dataclass built from values already known to be valid."""
    obj = object.__new__(cls)
    for name, value in values:
        object.__setattr__(obj, name, value)
    return obj


@functools.lru_cache(maxsize=64)
def _codec_by_value(channel: TmChannel, check_vcid: bool) -> TmCodec:
    """One codec per channel value (channels are frozen, hence hashable)."""
    return TmCodec(channel, check_vcid=check_vcid)


#: id(channel) -> (channel, codec), one table per ``check_vcid``: the channel object a caller
#: passes again and again is found without hashing its fields; the entry holds the channel, so
#: its id cannot be reused by another object while the entry lives
_CODECS_BY_ID: Final[tuple[dict[int, tuple[TmChannel, TmCodec]], ...]] = ({}, {})


def _codec_for(channel: TmChannel, check_vcid: bool) -> TmCodec:
    """The codec of ``channel`` (cached by identity, then by value)."""
    table = _CODECS_BY_ID[1 if check_vcid else 0]
    entry = table.get(id(channel))
    if entry is not None and entry[0] is channel:
        return entry[1]
    codec = _codec_by_value(channel, bool(check_vcid))
    if len(table) >= 64:
        table.pop(next(iter(table)), None)
    table[id(channel)] = (channel, codec)
    return codec


class TmFrameView(tuple[Any, ...]):
    """What :meth:`TmCodec.parse` returns: the frame split by one ``struct`` call.

    The tuple holds the raw pieces (header words, secondary header, data field, OCF, FECF);
    header fields are decoded on access, so a receiver pays only for what it reads.
    """

    __slots__ = ()

    @property
    def scid(self) -> int:
        return (self[0] >> 4) & 0x3FF

    @property
    def vcid(self) -> int:
        return (self[0] >> 1) & 7

    @property
    def ocf_flag(self) -> bool:
        return bool(self[0] & 1)

    @property
    def mc_frame_count(self) -> int:
        return self[1]

    @property
    def vc_frame_count(self) -> int:
        return self[2]

    @property
    def secondary_header_flag(self) -> bool:
        return bool(self[3] & 0x8000)

    @property
    def sync_flag(self) -> bool:
        return bool(self[3] & 0x4000)

    @property
    def packet_order_flag(self) -> bool:
        return bool(self[3] & 0x2000)

    @property
    def segment_length_id(self) -> int:
        return (self[3] >> 11) & 3

    @property
    def first_header_pointer(self) -> int:
        return self[3] & 0x7FF

    @property
    def secondary_header(self) -> bytes | None:
        """The whole secondary header (ID octet included), None if absent."""
        return self[4] or None

    @property
    def data(self) -> bytes:
        """The data field."""
        return self[5]

    @property
    def ocf(self) -> bytes | None:
        return self[6] or None

    @property
    def fecf(self) -> int | None:
        """The FECF value, None when the channel has none."""
        return None if self[7] == b"" else self[7]


_new_view = tuple.__new__  # wraps the struct result without copying through Python code


class TmCodec:
    """Fast parse/build of the frames of one TM channel, offsets precomputed.

    ``check_vcid=False`` accepts any VCID of the master channel (the frame's VCID is in the
    result), for demultiplexers on a physical channel whose VCs share the layout.
    """

    __slots__ = ("channel", "check_vcid", "frame_length", "data_start", "data_end", "ocf_end",
                 "_ident", "_ident_mask", "_ident_want", "_status_want", "_sh_ident_len",
                 "_has_fecf", "_has_ocf", "_sh_len", "_scid", "_split", "parse")

    def __init__(self, channel: TmChannel, *, check_vcid: bool = True) -> None:
        self.channel = channel
        self.check_vcid = check_vcid
        self.frame_length = channel.frame_length
        self._sh_len = channel.secondary_header_length
        self.data_start = PRIMARY_HEADER_LENGTH + self._sh_len
        self._has_fecf = channel.has_fecf
        self._has_ocf = channel.has_ocf
        self.ocf_end = self.frame_length - (FECF_LENGTH if self._has_fecf else 0)
        self.data_end = self.ocf_end - (OCF_LENGTH if self._has_ocf else 0)
        self._ident = ((channel.tfvn << 14) | (channel.scid << 4) | (channel.vcid << 1)
                       | int(channel.has_ocf))
        self._ident_mask = 0xFFFF if check_vcid else 0xFFF1
        self._ident_want = self._ident & self._ident_mask
        self._scid = channel.scid
        self._status_want = 0x8000 if self._sh_len else 0
        self._sh_ident_len = self._sh_len - 1  # the 6-bit length field value expected
        self._split = struct.Struct(
            f">HBBH{self._sh_len}s{self.data_end - self.data_start}s"
            f"{OCF_LENGTH if self._has_ocf else 0}s{'H' if self._has_fecf else '0s'}").unpack

        self.parse: Callable[[bytes | bytearray | memoryview], TmFrameView] = \
            self._make_parser()

    # ------------------------------------------------------------------ parse
    def _make_parser(self) -> Callable[[bytes | bytearray | memoryview], TmFrameView]:
        """Build ``parse``: a closure whose constants are all local variables (hot path)."""
        n = self.frame_length
        has_fecf = self._has_fecf
        mask, want = self._ident_mask, self._ident_want
        status_want = self._status_want
        sh_ident_len = self._sh_ident_len
        sh_len = self._sh_len
        split = self._split
        crc = _crc16
        new = _new_view
        view_type = TmFrameView
        fecf_error = self._fecf_error
        diagnose = self._diagnose
        sh_error = self._secondary_header_error

        def parse(buf: bytes | bytearray | memoryview) -> TmFrameView:
            """Check and split one frame.  Raises only :mod:`sdls_qkd.errors` exceptions."""
            if len(buf) != n:
                raise InvalidFrameLength(f"TM frame needs {n} octets, got {len(buf)}")
            # receiver property: the CRC over frame + FECF is 0 for an intact frame
            if has_fecf and crc(buf):
                fecf_error(buf)
            # one C call splits the whole frame: header words, sec. header, data, OCF, FECF
            parts = split(buf)
            ident = parts[0]
            status = parts[3]
            if (ident & mask) != want or (status & 0x8000) != status_want:
                diagnose(ident, status)
            if sh_len and (parts[4][0] & 0x3F) != sh_ident_len:
                sh_error(parts[4][0])
            return new(view_type, parts)

        return parse

    def _fecf_error(self, buf: bytes | bytearray | memoryview) -> None:
        n = self.frame_length
        fecf = (buf[n - 2] << 8) | buf[n - 1]
        raise FecfError(f"TM FECF is {fecf:#06x}, computed {crc16(buf[:n - 2]):#06x}",
                        field="fecf", offset=n - 2)

    def _secondary_header_error(self, ident: int) -> None:
        got = (ident & 0x3F) + 1
        raise InvalidHeader(
            f"TM secondary header length is {got} octets, channel says {self._sh_len}",
            field="secondary_header_length", offset=PRIMARY_HEADER_LENGTH)

    def _diagnose(self, ident: int, status: int) -> None:
        """Say which header field disagrees with the channel (slow path, always raises)."""
        ch = self.channel
        tfvn = ident >> 14
        if tfvn != ch.tfvn:
            raise InvalidHeader(f"TM transfer frame version must be {ch.tfvn}, got {tfvn}",
                                field="tfvn", offset=0)
        scid = (ident >> 4) & 0x3FF
        if scid != ch.scid:
            raise InvalidHeader(f"TM frame SCID {scid} is not the channel's {ch.scid}",
                                field="scid", offset=0)
        vcid = (ident >> 1) & 7
        if self.check_vcid and vcid != ch.vcid:
            raise InvalidHeader(f"TM frame VCID {vcid} is not the channel's {ch.vcid}",
                                field="vcid", offset=1)
        if bool(ident & 1) != ch.has_ocf:
            raise InvalidHeader(
                f"TM OCF flag is {ident & 1} but the channel has "
                f"{'an' if ch.has_ocf else 'no'} OCF", field="ocf_flag", offset=1)
        raise InvalidHeader(
            f"TM secondary header flag is {status >> 15} but the channel has "
            f"{'a' if self._sh_len else 'no'} secondary header",
            field="secondary_header_flag", offset=4)

    def vcid_of(self, buf: bytes | bytearray | memoryview) -> int:
        """The VCID of a frame (for demultiplexing before the full parse)."""
        if len(buf) < 2:
            raise InvalidFrameLength(f"TM primary header needs 2 octets for the VCID, "
                                     f"got {len(buf)}")
        return (buf[1] >> 1) & 7

    # ------------------------------------------------------------------ build
    def build(
        self,
        data: bytes | bytearray | memoryview,
        *,
        mc_frame_count: int,
        vc_frame_count: int,
        first_header_pointer: int = 0,
        ocf: bytes | None = None,
        secondary_header: bytes | None = None,
        sync_flag: bool = False,
        packet_order_flag: bool = False,
        segment_length_id: int = SEGMENT_LENGTH_ID_PACKETS,
    ) -> bytes:
        """The frame octets.  ``secondary_header`` is the whole header including its ID octet.

        Values are range-checked (cheaply); lengths must fit the channel exactly.
        """
        if not (0 <= mc_frame_count <= 0xFF and 0 <= vc_frame_count <= 0xFF
                and 0 <= first_header_pointer <= 0x7FF and 0 <= segment_length_id <= 3):
            raise InvalidConfiguration(
                f"TM counters/FHP out of range: mc={mc_frame_count} vc={vc_frame_count} "
                f"fhp={first_header_pointer} slid={segment_length_id}")
        if len(data) != self.data_end - self.data_start:
            raise InvalidConfiguration(
                f"TM data field must be {self.data_end - self.data_start} octets on this "
                f"channel, not {len(data)}", field="data")
        if (ocf is not None) != self._has_ocf or (ocf is not None and len(ocf) != OCF_LENGTH):
            raise InvalidConfiguration(
                f"channel {'requires a 4-octet' if self._has_ocf else 'has no'} OCF",
                field="ocf")
        sh = secondary_header or b""
        if len(sh) != self._sh_len or (sh and (sh[0] & 0x3F) != self._sh_ident_len):
            raise InvalidConfiguration(
                f"secondary header must be {self._sh_len} octets with a matching length field",
                field="secondary_header")
        status = ((0x8000 if self._sh_len else 0) | (sync_flag << 14)
                  | (packet_order_flag << 13) | (segment_length_id << 11) | first_header_pointer)
        body = b"".join((_HEADER.pack(self._ident, mc_frame_count, vc_frame_count, status),
                         sh, data, ocf or b""))
        if self._has_fecf:
            return body + crc16(body).to_bytes(2, "big")
        return body
