"""TC Transfer Frames (CCSDS 232.0-B-4): primary header, segment header, COP-1 control commands.

Frame (variable length, at most 1024 octets)::

    | primary header 5 | [segment header 1] | data field | [FECF 2] |

Primary header bits: TFVN 0-1 | bypass 2 | control command 3 | spare 4-5 | SCID 6-15 |
VCID 16-21 | frame length 22-31 (octets - 1) | frame sequence number 32-39.

The managed parameters of the virtual channel (:class:`~sdls_qkd.framing.channel.TcChannel`)
say whether data frames carry a segment header and whether frames end with a FECF; BC frames
(COP-1 control commands) never carry a segment header.  :meth:`TcFrame.unpack` checks the FECF
first (over the octets as received), then the header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

from sdls_qkd.errors import (
    FecfError,
    InvalidConfiguration,
    InvalidFrameLength,
    InvalidHeader,
)
from sdls_qkd.framing.channel import TC_MAX_FRAME_LENGTH, TcChannel
from sdls_qkd.framing.crc import crc16
from sdls_qkd.framing.space_packet import SequenceFlags

PRIMARY_HEADER_LENGTH: Final = 5
SEGMENT_HEADER_LENGTH: Final = 1
FECF_LENGTH: Final = 2
TFVN: Final = 0
MAX_FRAME_LENGTH: Final = TC_MAX_FRAME_LENGTH

_HEADER = struct.Struct(">HHB")


class TcFrameType(IntEnum):
    """Frame type, coded as (bypass flag << 1) | control command flag.  ``01`` is illegal."""

    AD = 0b00  # sequence-controlled data
    BD = 0b10  # expedited data
    BC = 0b11  # COP-1 control command

    @property
    def bypass_flag(self) -> bool:
        return bool(self.value >> 1)

    @property
    def control_command_flag(self) -> bool:
        return bool(self.value & 1)


def _check(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidConfiguration(f"{name} must be an integer in {lo}..{hi}, not {value!r}",
                                   field=name)


@dataclass(frozen=True, slots=True)
class TcPrimaryHeader:
    """The 5-octet TC primary header; ``frame_length`` is the field (total octets - 1)."""

    scid: int
    vcid: int
    frame_length: int
    bypass_flag: bool = True
    control_command_flag: bool = False
    frame_sequence_number: int = 0
    spare: int = 0
    tfvn: int = TFVN

    def __post_init__(self) -> None:
        _check("tfvn", self.tfvn, TFVN, TFVN)
        _check("spare", self.spare, 0, 3)
        _check("scid", self.scid, 0, 0x3FF)
        _check("vcid", self.vcid, 0, 0x3F)
        _check("frame_length", self.frame_length, 0, 0x3FF)
        _check("frame_sequence_number", self.frame_sequence_number, 0, 0xFF)
        if self.control_command_flag and not self.bypass_flag:
            raise InvalidConfiguration("control command frames must be Type-B (bypass flag 1)",
                                       field="bypass_flag")
        object.__setattr__(self, "bypass_flag", bool(self.bypass_flag))
        object.__setattr__(self, "control_command_flag", bool(self.control_command_flag))

    @property
    def frame_type(self) -> TcFrameType:
        return TcFrameType((self.bypass_flag << 1) | self.control_command_flag)

    @property
    def total_length(self) -> int:
        """Octets of the whole frame."""
        return self.frame_length + 1

    def pack(self) -> bytes:
        return _HEADER.pack(
            (self.tfvn << 14) | (self.bypass_flag << 13) | (self.control_command_flag << 12)
            | (self.spare << 10) | self.scid,
            (self.vcid << 10) | self.frame_length,
            self.frame_sequence_number,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> TcPrimaryHeader:
        """Decode the first 5 octets."""
        if len(data) < PRIMARY_HEADER_LENGTH:
            raise InvalidFrameLength(
                f"TC primary header needs {PRIMARY_HEADER_LENGTH} octets, got {len(data)}")
        first, second, fsn = _HEADER.unpack_from(data, 0)
        tfvn = first >> 14
        if tfvn != TFVN:
            raise InvalidHeader(f"TC transfer frame version must be 0, got {tfvn}",
                                field="tfvn", offset=0)
        bypass = bool(first & 0x2000)
        control = bool(first & 0x1000)
        if control and not bypass:
            raise InvalidHeader("control command flag set on a Type-A frame (illegal type 01)",
                                field="control_command_flag", offset=0)
        return cls(scid=first & 0x3FF, vcid=second >> 10, frame_length=second & 0x3FF,
                   bypass_flag=bypass, control_command_flag=control,
                   frame_sequence_number=fsn, spare=(first >> 10) & 3)


@dataclass(frozen=True, slots=True)
class TcSegmentHeader:
    """The 1-octet segment header: sequence flags and MAP ID."""

    map_id: int = 0
    sequence_flags: SequenceFlags = SequenceFlags.UNSEGMENTED

    def __post_init__(self) -> None:
        _check("map_id", self.map_id, 0, 0x3F)
        _check("sequence_flags", self.sequence_flags, 0, 3)
        if not isinstance(self.sequence_flags, SequenceFlags):
            object.__setattr__(self, "sequence_flags", SequenceFlags(self.sequence_flags))

    def pack(self) -> bytes:
        return bytes([(self.sequence_flags << 6) | self.map_id])

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, offset: int = 0) -> TcSegmentHeader:
        if len(data) <= offset:
            raise InvalidFrameLength(f"TC segment header needs 1 octet at offset {offset}, "
                                     f"got {max(len(data) - offset, 0)}", offset=offset)
        octet = data[offset]
        return cls(map_id=octet & 0x3F, sequence_flags=SequenceFlags(octet >> 6))


# --------------------------------------------------------------------------- COP-1 commands
@dataclass(frozen=True, slots=True)
class Unlock:
    """COP-1 Unlock directive (one octet ``00``)."""

    def pack(self) -> bytes:
        return b"\x00"


@dataclass(frozen=True, slots=True)
class SetVr:
    """COP-1 Set V(R) directive (``82 00 VR``)."""

    vr: int

    def __post_init__(self) -> None:
        _check("vr", self.vr, 0, 0xFF)

    def pack(self) -> bytes:
        return bytes((0x82, 0x00, self.vr))


ControlCommand = Unlock | SetVr


def control_command_unpack(data: bytes | bytearray | memoryview,
                           offset: int = 0) -> ControlCommand:
    """Decode the data field of a BC frame: exactly an Unlock or a Set V(R)."""
    octets = bytes(data)
    if octets == b"\x00":
        return Unlock()
    if len(octets) == 3 and octets[:2] == b"\x82\x00":
        return SetVr(octets[2])
    raise InvalidHeader(f"BC frame data field is not a COP-1 control command: {octets[:8].hex()}"
                        f" ({len(octets)} octets)", field="control_command", offset=offset)


# --------------------------------------------------------------------------- frames
_TC_FIELD_KEYS = frozenset({
    "tfvn", "scid", "vcid", "data_field_hex", "fecf", "bypass_flag", "control_command_flag",
    "frame_length", "frame_sequence_number", "sequence_flags", "map_id"})


@dataclass(frozen=True, slots=True)
class TcFrame:
    """A TC transfer frame.

    ``data`` is the data field after the segment header and before the FECF (for a BC frame:
    the control command).  ``fecf`` is the received (or computed) FECF value, or None when the
    frame carries none.  :meth:`build` fills the length field and FECF for you.
    """

    header: TcPrimaryHeader
    data: bytes
    segment_header: TcSegmentHeader | None = None
    fecf: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if self.header.control_command_flag and self.segment_header is not None:
            raise InvalidConfiguration("BC frames carry no segment header", field="segment_header")

    @property
    def frame_type(self) -> TcFrameType:
        return self.header.frame_type

    @property
    def scid(self) -> int:
        return self.header.scid

    @property
    def vcid(self) -> int:
        return self.header.vcid

    @property
    def control_command(self) -> ControlCommand | None:
        """The COP-1 directive of a BC frame, None for data frames."""
        if not self.header.control_command_flag:
            return None
        return control_command_unpack(self.data)

    def to_fields(self) -> dict[str, int | str | None]:
        """The TC field keys of the ``sdls-vectors/1`` schema.

        ``data_field_hex`` is the Transfer Frame Data Field of 232.0-B: segment header (when
        present) and frame data unit, i.e. everything between primary header and FECF.
        ``sequence_flags`` / ``map_id`` are None without a segment header.
        """
        h, seg = self.header, self.segment_header
        return {
            "tfvn": h.tfvn, "scid": h.scid, "vcid": h.vcid, "bypass_flag": int(h.bypass_flag),
            "control_command_flag": int(h.control_command_flag), "frame_length": h.frame_length,
            "frame_sequence_number": h.frame_sequence_number,
            "sequence_flags": None if seg is None else int(seg.sequence_flags),
            "map_id": None if seg is None else seg.map_id,
            "data_field_hex": ((seg.pack() if seg is not None else b"") + self.data).hex(),
            "fecf": self.fecf,
        }

    #: former name of :meth:`to_fields`, kept for callers
    schema_fields = to_fields

    @classmethod
    def from_fields(cls, fields: dict[str, Any], channel: TcChannel) -> TcFrame:
        """Inverse of :meth:`to_fields` (``sdls-vectors/1`` ``frame_encode``).

        ``data_field_hex`` (default one zero octet) is the whole data field: on a channel with
        segment headers its first octet is the segment header, and ``sequence_flags`` /
        ``map_id``, when given, must agree with it (without ``data_field_hex`` they build it).
        Defaults: the channel's SCID/VCID, a BD frame, sequence number 0.  ``frame_length``
        must agree with the result when given; ``fecf`` is computed (a given value is ignored).
        """
        unknown = set(fields) - _TC_FIELD_KEYS
        if unknown:
            raise InvalidConfiguration(f"unknown TC field keys: {sorted(unknown)}")
        if fields.get("tfvn", TFVN) != TFVN:
            raise InvalidConfiguration(f"TC tfvn must be 0, not {fields['tfvn']!r}", field="tfvn")
        bypass = bool(fields.get("bypass_flag", 1))
        control = bool(fields.get("control_command_flag", 0))
        with_segment = channel.has_segment_header and not control
        raw = fields.get("data_field_hex")
        segment: TcSegmentHeader | None = None
        if raw is not None:
            if not isinstance(raw, str):
                raise InvalidConfiguration("data_field_hex must be a hex string",
                                           field="data_field_hex")
            try:
                field_octets = bytes.fromhex(raw)
            except ValueError:
                raise InvalidConfiguration("data_field_hex is not valid hex",
                                           field="data_field_hex") from None
            if with_segment:
                if not field_octets:
                    raise InvalidConfiguration("data field lacks the segment header",
                                               field="data_field_hex")
                segment = TcSegmentHeader.unpack(field_octets)
                field_octets = field_octets[SEGMENT_HEADER_LENGTH:]
                for key, have in (("sequence_flags", int(segment.sequence_flags)),
                                  ("map_id", segment.map_id)):
                    if fields.get(key) is not None and fields[key] != have:
                        raise InvalidConfiguration(
                            f"{key} {fields[key]!r} disagrees with the segment header {have}",
                            field=key)
        else:
            field_octets = b"\x00"
            if with_segment:
                map_id = fields.get("map_id")
                segment = TcSegmentHeader(
                    map_id if map_id is not None else (channel.map_id or 0),
                    fields.get("sequence_flags", SequenceFlags.UNSEGMENTED))
        total = (PRIMARY_HEADER_LENGTH + (SEGMENT_HEADER_LENGTH if segment else 0)
                 + len(field_octets) + (FECF_LENGTH if channel.has_fecf else 0))
        if fields.get("frame_length") is not None and fields["frame_length"] != total - 1:
            raise InvalidConfiguration(
                f"frame_length {fields['frame_length']} disagrees with the frame ({total - 1})",
                field="frame_length")
        header = TcPrimaryHeader(
            scid=fields.get("scid", channel.scid), vcid=fields.get("vcid", channel.vcid),
            frame_length=total - 1, bypass_flag=bypass, control_command_flag=control,
            frame_sequence_number=fields.get("frame_sequence_number", 0))
        frame = cls(header, field_octets, segment)
        if channel.has_fecf:
            object.__setattr__(frame, "fecf", crc16(frame._body()))
        return frame

    @classmethod
    def build(
        cls,
        channel: TcChannel,
        data: bytes | ControlCommand,
        *,
        frame_type: TcFrameType = TcFrameType.BD,
        frame_sequence_number: int = 0,
        sequence_flags: SequenceFlags = SequenceFlags.UNSEGMENTED,
        map_id: int | None = None,
    ) -> TcFrame:
        """A frame on ``channel`` with length field and FECF computed.

        For BC frames pass an :class:`Unlock` or :class:`SetVr` (or its octets).
        """
        payload = data if isinstance(data, bytes | bytearray) else data.pack()
        is_control = frame_type == TcFrameType.BC
        if is_control:
            try:
                control_command_unpack(payload)  # only real directives
            except InvalidHeader as exc:
                raise InvalidConfiguration(exc.message, field="control_command") from None
        segment = None
        if channel.has_segment_header and not is_control:
            chosen = map_id if map_id is not None else (channel.map_id or 0)
            segment = TcSegmentHeader(chosen, sequence_flags)
        total = (PRIMARY_HEADER_LENGTH + (SEGMENT_HEADER_LENGTH if segment else 0) + len(payload)
                 + (FECF_LENGTH if channel.has_fecf else 0))
        if not payload:
            raise InvalidConfiguration("TC frame data field must have at least 1 octet")
        if total > channel.max_frame_length:
            raise InvalidConfiguration(
                f"TC frame of {total} octets is over the maximum {channel.max_frame_length}",
                field="frame_length")
        header = TcPrimaryHeader(
            scid=channel.scid, vcid=channel.vcid, frame_length=total - 1,
            bypass_flag=frame_type.bypass_flag,
            control_command_flag=frame_type.control_command_flag,
            frame_sequence_number=frame_sequence_number, tfvn=channel.tfvn)
        frame = cls(header, bytes(payload), segment)
        if channel.has_fecf:
            object.__setattr__(frame, "fecf", crc16(frame._body()))
        return frame

    def _body(self) -> bytes:
        seg = self.segment_header.pack() if self.segment_header is not None else b""
        return self.header.pack() + seg + self.data

    def pack(self, channel: TcChannel | None = None) -> bytes:
        """The frame octets, FECF recomputed.

        With a channel, its managed parameters decide segment header and FECF presence (and
        they must match the frame); without one, the frame's own ``segment_header`` and ``fecf``
        (None or not) decide.
        """
        has_fecf = self.fecf is not None
        if channel is not None:
            has_fecf = channel.has_fecf
            wants_segment = channel.has_segment_header and not self.header.control_command_flag
            if wants_segment != (self.segment_header is not None):
                raise InvalidConfiguration(
                    f"channel {'requires' if wants_segment else 'forbids'} a segment header "
                    f"on this frame", field="segment_header")
        body = self._body()
        total = len(body) + (FECF_LENGTH if has_fecf else 0)
        if total != self.header.total_length:
            raise InvalidConfiguration(
                f"frame length field says {self.header.total_length} octets, frame has {total}",
                field="frame_length")
        if channel is not None and total > channel.max_frame_length:
            raise InvalidConfiguration(
                f"TC frame of {total} octets is over the maximum {channel.max_frame_length}",
                field="frame_length")
        if has_fecf:
            return body + crc16(body).to_bytes(2, "big")
        return body

    @staticmethod
    def frame_octets(data: bytes | bytearray | memoryview) -> int:
        """Octets of the frame starting at ``data[0]`` per its length field (to strip CLTU fill)."""
        if len(data) < PRIMARY_HEADER_LENGTH:
            raise InvalidFrameLength(
                f"TC primary header needs {PRIMARY_HEADER_LENGTH} octets, got {len(data)}")
        return (((data[2] & 0x03) << 8) | data[3]) + 1

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview, channel: TcChannel, *,
               check_ids: bool = True) -> TcFrame:
        """Decode exactly one frame received on ``channel``.

        Order of checks: minimum length, FECF (over the octets as given), header fields,
        length field against the octets given, SCID/VCID against the channel (unless
        ``check_ids`` is False, e.g. for a master-channel demultiplexer), data field.
        """
        size = len(data)
        fecf_len = FECF_LENGTH if channel.has_fecf else 0
        minimum = PRIMARY_HEADER_LENGTH + fecf_len + 1
        if size < minimum:
            raise InvalidFrameLength(f"TC frame needs at least {minimum} octets, got {size}")
        if size > channel.max_frame_length:
            raise InvalidFrameLength(
                f"TC frame of {size} octets is over the maximum {channel.max_frame_length}")
        fecf = None
        if fecf_len:
            fecf = (data[size - 2] << 8) | data[size - 1]
            computed = crc16(data[: size - 2])
            if computed != fecf:
                raise FecfError(f"TC FECF is {fecf:#06x}, computed {computed:#06x}",
                                field="fecf", offset=size - 2)
        header = TcPrimaryHeader.unpack(data)
        if header.total_length != size:
            raise InvalidFrameLength(
                f"TC frame length field says {header.total_length} octets, got {size}",
                field="frame_length", offset=2)
        if check_ids:
            if header.scid != channel.scid:
                raise InvalidHeader(f"TC frame SCID {header.scid} is not the channel's "
                                    f"{channel.scid}", field="scid", offset=0)
            if header.vcid != channel.vcid:
                raise InvalidHeader(f"TC frame VCID {header.vcid} is not the channel's "
                                    f"{channel.vcid}", field="vcid", offset=2)
        start = PRIMARY_HEADER_LENGTH
        segment = None
        if channel.has_segment_header and not header.control_command_flag:
            segment = TcSegmentHeader.unpack(data, start)
            start += SEGMENT_HEADER_LENGTH
        end = size - fecf_len
        if end <= start:
            raise InvalidFrameLength(
                f"TC frame needs at least {start + fecf_len + 1} octets for a data field, "
                f"got {size}", field="frame_length", offset=2)
        payload = bytes(data[start:end])
        if header.control_command_flag:
            control_command_unpack(payload, start)
        return cls(header, payload, segment, fecf)
