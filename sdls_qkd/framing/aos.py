"""AOS Transfer Frames (CCSDS 732.0-B-4).

Layout of a frame (fixed length per physical channel, see :class:`AosChannel`)::

    | Primary Header 6 | [FHEC 2] | [Insert Zone n] | Data Field | [OCF 4] | [FECF 2] |

Primary header bits (bit 0 = MSB of octet 0): TFVN 2 (``01``), SCID 8, VCID 6, VC Frame Count 24,
then the Signaling Field: Replay Flag 1, VC Frame Count Usage Flag 1, spare 2, VC Frame Count
Cycle 4.  The FHEC (:mod:`sdls_qkd.framing.fhec`) protects octets 0-1 and the Signaling Field.

Receiving rules settled here (the digest marked them uncertain):

* VC Frame Count Cycle with the Usage Flag at 0: a sender writes ``0000`` (``pack`` refuses
  anything else); a receiver keeps the four bits as received and ignores them
  (:attr:`AosPrimaryHeader.extended_vc_frame_count` uses the cycle only when the flag is 1).
  Reserved spare bits are treated the same way: written as 0, kept but not rejected on receipt.
* FHEC before FECF: a receiver corrects the header first (up to 2 symbol errors), then checks the
  FECF over the corrected frame, so a frame whose only damage was in the protected header is
  accepted only when the FECF proves the correction right.

Two code paths give the same bytes (tests hold them together):

* :class:`AosFrame` / :class:`AosPrimaryHeader` frozen dataclasses with ``pack``/``unpack`` and a
  ``construct`` layout (:data:`AOS_PRIMARY_HEADER`) as the readable specification;
* :class:`AosCodec`, one per channel, with precomputed offsets and a single ``struct`` read for
  the hot path (SDLS processing parses every frame with it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import construct as cs

from sdls_qkd.errors import (
    FecfError,
    FhecError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
    UsageError,
)
from sdls_qkd.framing.channel import AosChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.fhec import fhec_decode, fhec_encode_unchecked

__all__ = [
    "AOS_PRIMARY_HEADER",
    "AOS_TFVN",
    "IDLE_VCID",
    "AosCodec",
    "AosFrame",
    "AosPrimaryHeader",
    "AosView",
    "BPdu",
    "MPdu",
]

AOS_TFVN = 1
#: VCID of Only-Idle-Data frames
IDLE_VCID = 63
PRIMARY_HEADER_LENGTH = 6
FHEC_LENGTH = 2
OCF_LENGTH = 4
FECF_LENGTH = 2
VC_FRAME_COUNT_MODULUS = 1 << 24

#: readable specification of the 6-octet primary header (slow path, inspection, tests)
AOS_PRIMARY_HEADER = cs.BitStruct(
    "tfvn" / cs.BitsInteger(2),
    "scid" / cs.BitsInteger(8),
    "vcid" / cs.BitsInteger(6),
    "vc_frame_count" / cs.BitsInteger(24),
    "replay_flag" / cs.Flag,
    "vc_frame_count_usage_flag" / cs.Flag,
    "spare" / cs.BitsInteger(2),
    "vc_frame_count_cycle" / cs.BitsInteger(4),
)

_HDR = struct.Struct(">HI")  # octets 0-1 (TFVN/SCID/VCID), octets 2-5 (count 24 | signaling 8)
_U16 = struct.Struct(">H")
_fhec_fast = fhec_encode_unchecked
_new_tuple = tuple.__new__


def _bytes_like(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise UsageError(f"{what} must be bytes, bytearray or memoryview, not {type(data).__name__}")


def _check_width(name: str, value: Any, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise InvalidConfiguration(f"{name} must be an integer of {bits} bits (0..{(1 << bits) - 1}), "
                                   f"not {value!r}")


def _hex(value: Any, name: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):
        raise InvalidConfiguration(f"{name} must be a hex string, not {value!r}") from None


_AOS_FIELD_KEYS = frozenset({
    "tfvn", "scid", "vcid", "vc_frame_count", "replay_flag", "vc_frame_count_usage_flag",
    "vc_frame_count_cycle", "fhec", "insert_zone_hex", "first_header_pointer", "data_field_hex",
    "ocf_hex", "fecf"})


# --------------------------------------------------------------------------- primary header
@dataclass(frozen=True)
class AosPrimaryHeader:
    """The 6-octet AOS primary header (without the FHEC)."""

    LENGTH: ClassVar[int] = PRIMARY_HEADER_LENGTH

    scid: int
    vcid: int
    vc_frame_count: int = 0
    replay_flag: bool = False
    vc_frame_count_usage_flag: bool = False
    vc_frame_count_cycle: int = 0
    spare: int = 0
    tfvn: int = AOS_TFVN

    def __post_init__(self) -> None:
        _check_width("tfvn", self.tfvn, 2)
        _check_width("scid", self.scid, 8)
        _check_width("vcid", self.vcid, 6)
        _check_width("vc_frame_count", self.vc_frame_count, 24)
        _check_width("replay_flag", int(self.replay_flag), 1)
        _check_width("vc_frame_count_usage_flag", int(self.vc_frame_count_usage_flag), 1)
        _check_width("spare", self.spare, 2)
        _check_width("vc_frame_count_cycle", self.vc_frame_count_cycle, 4)
        object.__setattr__(self, "replay_flag", bool(self.replay_flag))
        object.__setattr__(self, "vc_frame_count_usage_flag", bool(self.vc_frame_count_usage_flag))

    # ---- derived words
    @property
    def id_word(self) -> int:
        """Octets 0-1: TFVN, SCID, VCID (the 16 bits MCID + VCID that the FHEC protects)."""
        return (self.tfvn << 14) | (self.scid << 6) | self.vcid

    @property
    def signaling_field(self) -> int:
        """Octet 5: replay flag, usage flag, spare, VC frame count cycle."""
        return ((int(self.replay_flag) << 7) | (int(self.vc_frame_count_usage_flag) << 6)
                | (self.spare << 4) | self.vc_frame_count_cycle)

    @property
    def mcid(self) -> int:
        """Master Channel ID: TFVN and SCID (10 bits)."""
        return (self.tfvn << 8) | self.scid

    @property
    def extended_vc_frame_count(self) -> int:
        """The 28-bit count (cycle * 2^24 + count) when the cycle is in use, else the 24-bit count."""
        if self.vc_frame_count_usage_flag:
            return (self.vc_frame_count_cycle << 24) | self.vc_frame_count
        return self.vc_frame_count

    @property
    def is_idle(self) -> bool:
        """An Only-Idle-Data frame (VCID 63)."""
        return self.vcid == IDLE_VCID

    def check_sendable(self) -> None:
        """Raise unless the header obeys the sender rules (TFVN 01, spare 00, cycle 0 when unused)."""
        if self.tfvn != AOS_TFVN:
            raise InvalidConfiguration(f"AOS TFVN must be {AOS_TFVN}, not {self.tfvn}")
        if self.spare:
            raise InvalidConfiguration(f"AOS reserved spare bits must be 0, not {self.spare}")
        if not self.vc_frame_count_usage_flag and self.vc_frame_count_cycle:
            raise InvalidConfiguration(
                f"vc_frame_count_cycle must be 0 when vc_frame_count_usage_flag is 0, "
                f"not {self.vc_frame_count_cycle}")

    def pack(self) -> bytes:
        """The 6 header octets (fields as they are; :meth:`check_sendable` enforces sender rules)."""
        return _HDR.pack(self.id_word, (self.vc_frame_count << 8) | self.signaling_field)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> AosPrimaryHeader:
        """Parse 6 octets at ``offset``; the TFVN must be ``01``."""
        buf = _bytes_like(data, "AOS header")
        if offset < 0 or len(buf) - offset < PRIMARY_HEADER_LENGTH:
            raise InvalidFrameLength(
                f"AOS primary header needs {PRIMARY_HEADER_LENGTH} octets, got {max(len(buf) - offset, 0)}",
                field="primary_header", offset=offset)
        w0, w1 = _HDR.unpack_from(buf, offset)
        return cls._from_words(w0, w1, offset)

    @classmethod
    def _from_words(cls, w0: int, w1: int, offset: int = 0) -> AosPrimaryHeader:
        tfvn = w0 >> 14
        if tfvn != AOS_TFVN:
            raise InvalidHeader(f"AOS TFVN must be {AOS_TFVN} (binary 01), got {tfvn}",
                                field="tfvn", offset=offset)
        sig = w1 & 0xFF
        obj = object.__new__(cls)
        # every value below comes from a bit field of the right width: skip __post_init__ checks
        obj.__dict__.update(
            scid=(w0 >> 6) & 0xFF, vcid=w0 & 0x3F, vc_frame_count=w1 >> 8,
            replay_flag=bool(sig & 0x80), vc_frame_count_usage_flag=bool(sig & 0x40),
            vc_frame_count_cycle=sig & 0x0F, spare=(sig >> 4) & 0x3, tfvn=tfvn)
        return obj


# --------------------------------------------------------------------------- data field PDUs
@dataclass(frozen=True)
class MPdu:
    """Multiplexing PDU (packet service): 5 spare bits, 11-bit First Header Pointer, Packet Zone."""

    HEADER_LENGTH: ClassVar[int] = 2
    #: no packet header starts in this M_PDU
    FHP_NO_PACKET_START: ClassVar[int] = 0x7FF
    #: the Packet Zone holds only idle data
    FHP_IDLE: ClassVar[int] = 0x7FE

    first_header_pointer: int
    packet_zone: bytes
    spare: int = 0

    def __post_init__(self) -> None:
        _check_width("first_header_pointer", self.first_header_pointer, 11)
        _check_width("spare", self.spare, 5)
        object.__setattr__(self, "packet_zone", bytes(self.packet_zone))

    @property
    def no_packet_start(self) -> bool:
        return self.first_header_pointer == self.FHP_NO_PACKET_START

    @property
    def idle(self) -> bool:
        return self.first_header_pointer == self.FHP_IDLE

    def pack(self) -> bytes:
        self._check_pointer(len(self.packet_zone), 0, InvalidConfiguration)
        if self.spare:
            raise InvalidConfiguration(f"M_PDU spare bits must be 0, not {self.spare}")
        return _U16.pack((self.spare << 11) | self.first_header_pointer) + self.packet_zone

    def _check_pointer(self, zone: int, offset: int, exc: type[Exception]) -> None:
        fhp = self.first_header_pointer
        if fhp < self.FHP_IDLE and fhp >= zone:
            if exc is InvalidHeader:
                raise InvalidHeader(
                    f"M_PDU first header pointer {fhp} is past the {zone}-octet packet zone",
                    field="first_header_pointer", offset=offset)
            raise InvalidConfiguration(
                f"M_PDU first header pointer {fhp} is past the {zone}-octet packet zone")

    @classmethod
    def unpack(cls, data_field: bytes | bytearray | memoryview, offset: int = 0) -> MPdu:
        """Parse a data field; ``offset`` is its position in the frame (for error messages)."""
        buf = _bytes_like(data_field, "M_PDU")
        if len(buf) < cls.HEADER_LENGTH + 1:
            raise InvalidFrameLength(
                f"M_PDU needs at least {cls.HEADER_LENGTH + 1} octets, got {len(buf)}",
                field="m_pdu", offset=offset)
        (word,) = _U16.unpack_from(buf, 0)
        obj = cls(word & 0x7FF, buf[2:], word >> 11)
        obj._check_pointer(len(buf) - 2, offset, InvalidHeader)
        return obj


@dataclass(frozen=True)
class BPdu:
    """Bitstream PDU: 2 spare bits, 14-bit Bitstream Data Pointer, Bitstream Data Zone.

    The pointer is the 0-based index of the last valid bit of the zone; all ones means every
    bit is valid, all ones minus one means the zone holds only idle data.
    """

    HEADER_LENGTH: ClassVar[int] = 2
    BDP_ALL_VALID: ClassVar[int] = 0x3FFF
    BDP_IDLE: ClassVar[int] = 0x3FFE

    bitstream_data_pointer: int
    data: bytes
    spare: int = 0

    def __post_init__(self) -> None:
        _check_width("bitstream_data_pointer", self.bitstream_data_pointer, 14)
        _check_width("spare", self.spare, 2)
        object.__setattr__(self, "data", bytes(self.data))

    @property
    def valid_bits(self) -> int:
        """Number of valid bits at the start of the zone."""
        bdp = self.bitstream_data_pointer
        if bdp == self.BDP_ALL_VALID:
            return 8 * len(self.data)
        if bdp == self.BDP_IDLE:
            return 0
        return bdp + 1

    def _pointer_error(self) -> str | None:
        bdp = self.bitstream_data_pointer
        if bdp < self.BDP_IDLE and bdp >= 8 * len(self.data):
            return f"B_PDU bitstream data pointer {bdp} is past the {8 * len(self.data)}-bit zone"
        return None

    def pack(self) -> bytes:
        msg = self._pointer_error()
        if msg:
            raise InvalidConfiguration(msg)
        if self.spare:
            raise InvalidConfiguration(f"B_PDU spare bits must be 0, not {self.spare}")
        return _U16.pack((self.spare << 14) | self.bitstream_data_pointer) + self.data

    @classmethod
    def unpack(cls, data_field: bytes | bytearray | memoryview, offset: int = 0) -> BPdu:
        buf = _bytes_like(data_field, "B_PDU")
        if len(buf) < cls.HEADER_LENGTH + 1:
            raise InvalidFrameLength(
                f"B_PDU needs at least {cls.HEADER_LENGTH + 1} octets, got {len(buf)}",
                field="b_pdu", offset=offset)
        (word,) = _U16.unpack_from(buf, 0)
        obj = cls(word & 0x3FFF, buf[2:], word >> 14)
        msg = obj._pointer_error()
        if msg:
            raise InvalidHeader(msg, field="bitstream_data_pointer", offset=offset)
        return obj


# --------------------------------------------------------------------------- frame
@dataclass(frozen=True)
class AosFrame:
    """One AOS transfer frame.

    ``fhec`` and ``fecf`` are the values carried by a received frame (after FHEC correction);
    ``pack`` always computes them afresh, and equality ignores them (two frames are equal when they
    carry the same content).  ``fhec_corrected_symbols`` says how many header symbols the FHEC
    decoder changed.
    """

    header: AosPrimaryHeader
    data_field: bytes
    insert_zone: bytes = b""
    ocf: bytes | None = None
    fhec: int | None = field(default=None, compare=False)
    fecf: int | None = field(default=None, compare=False)
    fhec_corrected_symbols: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_field", bytes(self.data_field))
        object.__setattr__(self, "insert_zone", bytes(self.insert_zone))
        if self.ocf is not None:
            object.__setattr__(self, "ocf", bytes(self.ocf))

    def pack(self, channel: AosChannel) -> bytes:
        """The frame octets, FHEC and FECF computed, checked against the channel."""
        return AosCodec.for_channel(channel).pack(self)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, channel: AosChannel, *,
               correct_fhec: bool = True, check_fecf: bool = True) -> AosFrame:
        """Parse and check one frame of ``channel`` (see :meth:`AosCodec.unpack`)."""
        codec = AosCodec.for_channel(channel, correct_fhec=correct_fhec, check_fecf=check_fecf)
        return codec.unpack(data)

    @classmethod
    def from_fields(cls, fields: dict[str, Any], channel: AosChannel) -> AosFrame:
        """Inverse of :meth:`to_fields` (``sdls-vectors/1`` ``frame_encode``): header fields
        default to the channel's IDs and zero, octet fields to zeros; ``fhec`` and ``fecf`` are
        computed by :meth:`pack`, so given values are ignored.  A ``first_header_pointer`` must
        agree with the data field when both are given (it builds the M_PDU header when the data
        field is absent)."""
        unknown = set(fields) - _AOS_FIELD_KEYS
        if unknown:
            raise InvalidConfiguration(f"unknown AOS field keys: {sorted(unknown)}")
        if fields.get("tfvn", AOS_TFVN) != AOS_TFVN:
            raise InvalidConfiguration(f"AOS tfvn must be {AOS_TFVN}, not {fields['tfvn']!r}")
        header = AosPrimaryHeader(
            scid=fields.get("scid", channel.scid), vcid=fields.get("vcid", channel.vcid),
            vc_frame_count=fields.get("vc_frame_count", 0),
            replay_flag=fields.get("replay_flag", 0),
            vc_frame_count_usage_flag=fields.get("vc_frame_count_usage_flag", 0),
            vc_frame_count_cycle=fields.get("vc_frame_count_cycle", 0))
        fhp = fields.get("first_header_pointer")
        if fields.get("data_field_hex") is not None:
            data = _hex(fields["data_field_hex"], "data_field_hex")
            if fhp is not None and (len(data) < 2 or int.from_bytes(data[:2], "big") & 0x7FF != fhp):
                raise InvalidConfiguration(
                    f"first_header_pointer {fhp} disagrees with the data field's M_PDU header")
        elif fhp is not None:
            data = MPdu(fhp, bytes(channel.data_field_length - MPdu.HEADER_LENGTH)).pack()
        else:
            data = bytes(channel.data_field_length)
        iz = fields.get("insert_zone_hex")
        ocf = fields.get("ocf_hex")
        return cls(header, data,
                   _hex(iz, "insert_zone_hex") if iz is not None else bytes(channel.insert_zone_length),
                   _hex(ocf, "ocf_hex") if ocf is not None else (bytes(OCF_LENGTH) if channel.has_ocf
                                                                 else None))

    def m_pdu(self, channel: AosChannel | None = None) -> MPdu:
        """The data field read as an M_PDU."""
        offset = channel.header_length if channel is not None else 0
        return MPdu.unpack(self.data_field, offset)

    def b_pdu(self, channel: AosChannel | None = None) -> BPdu:
        """The data field read as a B_PDU."""
        offset = channel.header_length if channel is not None else 0
        return BPdu.unpack(self.data_field, offset)

    def to_fields(self) -> dict[str, Any]:
        """The ``sdls-vectors/1`` ``frame_decode`` field keys for AOS.

        ``first_header_pointer`` is the 11-bit field of the data field read as an M_PDU header
        (not validated; None if the data field is shorter than 2 octets)."""
        h = self.header
        fhp = (int.from_bytes(self.data_field[:2], "big") & 0x7FF
               if len(self.data_field) >= 2 else None)
        return {
            "tfvn": h.tfvn,
            "scid": h.scid,
            "vcid": h.vcid,
            "vc_frame_count": h.vc_frame_count,
            "replay_flag": int(h.replay_flag),
            "vc_frame_count_usage_flag": int(h.vc_frame_count_usage_flag),
            "vc_frame_count_cycle": h.vc_frame_count_cycle,
            "fhec": self.fhec,
            "first_header_pointer": fhp,
            "insert_zone_hex": self.insert_zone.hex(),
            "data_field_hex": self.data_field.hex(),
            "ocf_hex": self.ocf.hex() if self.ocf is not None else None,
            "fecf": self.fecf,
        }


class AosView(NamedTuple):
    """A checked frame, as cheap as it gets: header fields and the (FHEC-corrected) octets.

    The data field is ``frame[data_offset:data_end]``; ``ocf`` and ``fecf`` are None when absent.
    """

    frame: bytes
    scid: int
    vcid: int
    vc_frame_count: int
    signaling_field: int
    fhec: int | None
    fecf: int | None
    data_offset: int
    data_end: int
    corrected_symbols: int

    @property
    def replay_flag(self) -> bool:
        return bool(self.signaling_field & 0x80)

    @property
    def vc_frame_count_usage_flag(self) -> bool:
        return bool(self.signaling_field & 0x40)

    @property
    def vc_frame_count_cycle(self) -> int:
        return self.signaling_field & 0x0F

    @property
    def data_field(self) -> bytes:
        return self.frame[self.data_offset:self.data_end]


class AosCodec:
    """Frame codec for one :class:`AosChannel` with every offset computed once.

    ``parse`` returns an :class:`AosView` (one ``struct`` read, one CRC); ``unpack`` the full
    :class:`AosFrame`; ``pack`` builds a frame; ``seal`` fills FHEC and FECF of a frame buffer in
    place (for a sender that writes the data field itself, e.g. ApplySecurity).
    """

    def __init__(self, channel: AosChannel, *, correct_fhec: bool = True,
                 check_fecf: bool = True) -> None:
        if not isinstance(channel, AosChannel):
            raise UsageError(f"AosCodec needs an AosChannel, not {type(channel).__name__}")
        self.channel = channel
        self.correct_fhec = correct_fhec
        self.check_fecf = check_fecf
        self.frame_length = channel.frame_length
        self.has_fhec = channel.has_fhec
        self.insert_zone_offset = PRIMARY_HEADER_LENGTH + (FHEC_LENGTH if channel.has_fhec else 0)
        self.data_offset = self.insert_zone_offset + channel.insert_zone_length
        self.fecf_offset: int | None = (
            self.frame_length - FECF_LENGTH if channel.has_fecf else None)
        tail = self.frame_length - (FECF_LENGTH if channel.has_fecf else 0)
        self.ocf_offset: int | None = tail - OCF_LENGTH if channel.has_ocf else None
        self.data_end = tail - (OCF_LENGTH if channel.has_ocf else 0)
        self.data_field_length = self.data_end - self.data_offset
        self._expected_id = (AOS_TFVN << 14) | (channel.scid << 6) | channel.vcid

    @staticmethod
    @lru_cache(maxsize=256)
    def for_channel(channel: AosChannel, *, correct_fhec: bool = True,
                    check_fecf: bool = True) -> AosCodec:
        """A shared codec per (channel, options): channels are frozen, codecs stateless."""
        return AosCodec(channel, correct_fhec=correct_fhec, check_fecf=check_fecf)

    # ---- receive
    def parse(self, data: bytes | bytearray | memoryview) -> AosView:
        """Check length, TFVN, FHEC (correcting), FECF, SCID and VCID; return the view."""
        frame = data if type(data) is bytes else _bytes_like(data, "AOS frame")
        n = len(frame)
        if n != self.frame_length:
            raise InvalidFrameLength(
                f"AOS frame needs {self.frame_length} octets, got {n}", field="frame_length")
        w0, w1 = _HDR.unpack_from(frame, 0)
        corrected = 0
        fhec: int | None = None
        if self.has_fhec:
            (fhec,) = _U16.unpack_from(frame, PRIMARY_HEADER_LENGTH)
            if _fhec_fast(w0, w1 & 0xFF) != fhec:
                if not self.correct_fhec:
                    raise FhecError("AOS FHEC does not match the header (correction disabled)",
                                    field="fhec", offset=PRIMARY_HEADER_LENGTH)
                res = fhec_decode(w0, w1 & 0xFF, fhec)
                corrected = res.corrected_symbols
                w0, fhec = res.gvcid, res.fhec
                w1 = (w1 & ~0xFF) | res.signaling
                fixed = bytearray(frame)
                _HDR.pack_into(fixed, 0, w0, w1)
                _U16.pack_into(fixed, PRIMARY_HEADER_LENGTH, fhec)
                frame = bytes(fixed)
        fecf: int | None = None
        fo = self.fecf_offset
        if fo is not None:
            (fecf,) = _U16.unpack_from(frame, fo)
            # no reflection, no final XOR: the CRC over frame + FECF is 0 exactly when they match
            if self.check_fecf and crc16(frame):
                computed = crc16(memoryview(frame)[:fo])
                if computed != fecf:  # pragma: no branch - always true here
                    raise FecfError(
                        f"AOS FECF mismatch: computed 0x{computed:04X}, frame carries 0x{fecf:04X}",
                        field="fecf", offset=fo)
        if w0 != self._expected_id:
            self._id_error(w0)
        return _new_tuple(AosView, (frame, (w0 >> 6) & 0xFF, w0 & 0x3F, w1 >> 8, w1 & 0xFF, fhec,
                                     fecf, self.data_offset, self.data_end, corrected))

    def _id_error(self, w0: int) -> None:
        tfvn = w0 >> 14
        if tfvn != AOS_TFVN:
            raise InvalidHeader(f"AOS TFVN must be {AOS_TFVN} (binary 01), got {tfvn}",
                                field="tfvn", offset=0)
        scid = (w0 >> 6) & 0xFF
        if scid != self.channel.scid:
            raise InvalidHeader(f"AOS SCID {scid} is not the channel's SCID {self.channel.scid}",
                                field="scid", offset=0)
        raise InvalidHeader(f"AOS VCID {w0 & 0x3F} is not the channel's VCID {self.channel.vcid}",
                            field="vcid", offset=1)

    def unpack(self, data: bytes | bytearray | memoryview) -> AosFrame:
        """Parse into an :class:`AosFrame` (same checks as :meth:`parse`)."""
        v = self.parse(data)
        frame = v.frame
        header = AosPrimaryHeader._from_words(
            (AOS_TFVN << 14) | (v.scid << 6) | v.vcid, (v.vc_frame_count << 8) | v.signaling_field)
        obj = object.__new__(AosFrame)
        oo = self.ocf_offset
        obj.__dict__.update(
            header=header,
            data_field=frame[self.data_offset:self.data_end],
            insert_zone=frame[self.insert_zone_offset:self.data_offset],
            ocf=frame[oo:oo + OCF_LENGTH] if oo is not None else None,
            fhec=v.fhec, fecf=v.fecf, fhec_corrected_symbols=v.corrected_symbols)
        return obj

    # ---- send
    def pack(self, frame: AosFrame) -> bytes:
        """Build the octets of ``frame`` for this channel, computing FHEC and FECF."""
        h = frame.header
        h.check_sendable()
        ch = self.channel
        if h.scid != ch.scid or h.vcid != ch.vcid:
            raise InvalidConfiguration(
                f"AOS header SCID/VCID {h.scid}/{h.vcid} do not match the channel's "
                f"{ch.scid}/{ch.vcid}")
        if len(frame.insert_zone) != ch.insert_zone_length:
            raise InvalidConfiguration(
                f"AOS insert zone must be {ch.insert_zone_length} octets, got {len(frame.insert_zone)}")
        if len(frame.data_field) != self.data_field_length:
            raise InvalidConfiguration(
                f"AOS data field must be {self.data_field_length} octets, got {len(frame.data_field)}")
        if ch.has_ocf != (frame.ocf is not None):
            raise InvalidConfiguration(
                f"AOS channel {'requires' if ch.has_ocf else 'has no'} OCF")
        if frame.ocf is not None and len(frame.ocf) != OCF_LENGTH:
            raise InvalidConfiguration(f"AOS OCF must be {OCF_LENGTH} octets, got {len(frame.ocf)}")
        buf = bytearray(self.frame_length)
        buf[0:PRIMARY_HEADER_LENGTH] = h.pack()
        buf[self.insert_zone_offset:self.data_offset] = frame.insert_zone
        buf[self.data_offset:self.data_end] = frame.data_field
        if frame.ocf is not None and self.ocf_offset is not None:
            buf[self.ocf_offset:self.ocf_offset + OCF_LENGTH] = frame.ocf
        self.seal(buf)
        return bytes(buf)

    def seal(self, buf: bytearray) -> None:
        """Write FHEC (if the channel has one) and then FECF (if any) into a frame buffer."""
        if len(buf) != self.frame_length:
            raise InvalidFrameLength(
                f"AOS frame needs {self.frame_length} octets, got {len(buf)}", field="frame_length")
        if self.has_fhec:
            w0, w1 = _HDR.unpack_from(buf, 0)
            _U16.pack_into(buf, PRIMARY_HEADER_LENGTH, _fhec_fast(w0, w1 & 0xFF))
        fo = self.fecf_offset
        if fo is not None:
            _U16.pack_into(buf, fo, crc16(memoryview(buf)[:fo]))
