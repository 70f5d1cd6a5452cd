"""SDLS Extended Procedures PDU codec (CCSDS 355.1-B-1 §5): tag, bit length, data field.

An EP PDU is ``| Tag (8) | Length (16, in bits) | Data Field |``.  The tag octet holds the PDU type
(bit 0: 0 command, 1 reply), the user flag (bit 1: 0 CCSDS-defined, 1 mission-defined), the
service group (bits 2-3) and the procedure identification (bits 4-7).  A reply reuses the
command's service group and procedure ID with PDU type 1.

:class:`Procedure` names every procedure by its *command* tag octet with the type bit cleared
(``tag & 0x7F``): OTAR is ``0x01``, Start SA ``0x1B``, Ping ``0x31`` and the mission-defined
QKD rekey ``0x41``.  That octet is also what the SA Status reply reports as "last procedure".

Settled ``[UNCERTAIN]`` points (see the package README):

* The Length field counts bits, but every defined data field is whole octets; a length that is
  not a multiple of 8 is rejected (:class:`~sdls_qkd.errors.InvalidProcedure`), as CryptoLib does.
* Service group ``10`` is reserved: it carries no procedure here (LeoDOS' "reverse SA management"
  reading has no second source); PDUs using it are rejected as unknown procedures.
* A strict parse requires the Length field to cover exactly the octets that follow (no trailing
  octets); :func:`Pdu.unpack_from` serves streams that hold several PDUs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from sdls_qkd.errors import FrameError, InvalidConfiguration, InvalidProcedure
from sdls_qkd.framing.space_packet import PacketType, SequenceFlags, SpacePacketHeader

__all__ = [
    "PDU_HEADER_LENGTH",
    "MAX_DATA_LENGTH",
    "PduType",
    "ServiceGroup",
    "Procedure",
    "PduTag",
    "Pdu",
    "REPLY_PROCEDURES",
    "EpPacketConfig",
    "EpPacket",
    "wrap_command",
    "wrap_reply",
    "unwrap_command",
    "unwrap_reply",
    "PACKET_TYPE_TC",
    "PACKET_TYPE_TM",
]

#: octets of tag + length
PDU_HEADER_LENGTH: Final = 3
#: the 16-bit Length field counts bits: at most 65535 bits -> 8191 whole octets of data
MAX_DATA_LENGTH: Final = 0xFFFF // 8


class PduType(IntEnum):
    """Tag bit 0."""

    COMMAND = 0
    REPLY = 1


class ServiceGroup(IntEnum):
    """Tag bits 2-3."""

    KEY_MANAGEMENT = 0b00
    SA_MANAGEMENT = 0b01
    RESERVED = 0b10
    MONITORING_CONTROL = 0b11


class Procedure(IntEnum):
    """Every procedure this library knows, valued by its command tag octet (type bit 0)."""

    # Key management (SG 00)
    OTAR = 0x01
    KEY_ACTIVATION = 0x02
    KEY_DEACTIVATION = 0x03
    KEY_VERIFICATION = 0x04
    KEY_DESTRUCTION = 0x06
    KEY_INVENTORY = 0x07
    # SA management (SG 01)
    READ_ARSN = 0x10
    CREATE_SA = 0x11
    DELETE_SA = 0x14
    SET_ARSN_WINDOW = 0x15
    REKEY_SA = 0x16
    EXPIRE_SA = 0x19
    SET_ARSN = 0x1A
    START_SA = 0x1B
    STOP_SA = 0x1E
    SA_STATUS = 0x1F
    # Security monitoring & control (SG 11)
    PING = 0x31
    LOG_STATUS = 0x32
    DUMP_LOG = 0x33
    ERASE_LOG = 0x34
    SELF_TEST = 0x35
    ALARM_FLAG_RESET = 0x37
    # Mission-defined (user flag 1), see qkd_rekey.py
    QKD_REKEY = 0x41
    QKD_KEY_CHECK = 0x42

    @property
    def user_flag(self) -> int:
        return (self.value >> 6) & 1

    @property
    def service_group(self) -> ServiceGroup:
        return ServiceGroup((self.value >> 4) & 0b11)

    @property
    def procedure_id(self) -> int:
        return self.value & 0x0F

    @property
    def has_reply(self) -> bool:
        """Whether the standard defines a reply PDU for this procedure."""
        return self in REPLY_PROCEDURES


#: procedures whose execution produces a reply PDU (strict mode; see onboard.py for CryptoLib's)
REPLY_PROCEDURES: Final = frozenset({
    Procedure.KEY_VERIFICATION,
    Procedure.KEY_INVENTORY,
    Procedure.READ_ARSN,
    Procedure.SA_STATUS,
    Procedure.PING,
    Procedure.LOG_STATUS,
    Procedure.DUMP_LOG,
    Procedure.SELF_TEST,
    Procedure.QKD_REKEY,
    Procedure.QKD_KEY_CHECK,
})

_PROCEDURE_BY_VALUE: Final = {p.value: p for p in Procedure}


@dataclass(frozen=True, slots=True)
class PduTag:
    """The tag octet as fields; ``procedure`` resolves it to a known :class:`Procedure`."""

    pdu_type: PduType
    user_flag: int
    service_group: ServiceGroup
    procedure_id: int

    def __post_init__(self) -> None:
        if self.user_flag not in (0, 1):
            raise InvalidConfiguration(f"user flag must be 0 or 1, not {self.user_flag!r}",
                                       field="user_flag")
        if not isinstance(self.procedure_id, int) or not 0 <= self.procedure_id <= 0xF:
            raise InvalidConfiguration(f"procedure ID must be 0..15, not {self.procedure_id!r}",
                                       field="procedure_id")

    @classmethod
    def for_procedure(cls, procedure: Procedure, pdu_type: PduType = PduType.COMMAND) -> PduTag:
        return cls(pdu_type, procedure.user_flag, procedure.service_group, procedure.procedure_id)

    def to_int(self) -> int:
        return (int(self.pdu_type) << 7) | (self.user_flag << 6) | (int(self.service_group) << 4) \
            | self.procedure_id

    @classmethod
    def from_int(cls, octet: int) -> PduTag:
        return cls(PduType(octet >> 7), (octet >> 6) & 1, ServiceGroup((octet >> 4) & 0b11),
                   octet & 0x0F)

    @property
    def procedure(self) -> Procedure:
        """The procedure named by the tag; :class:`InvalidProcedure` for a reserved one."""
        value = self.to_int() & 0x7F
        try:
            return _PROCEDURE_BY_VALUE[value]
        except KeyError:
            raise InvalidProcedure(
                f"no procedure with user flag {self.user_flag}, service group "
                f"{int(self.service_group):02b}, procedure ID {self.procedure_id:04b}",
                field="tag", offset=0) from None


@dataclass(frozen=True, slots=True)
class Pdu:
    """One EP PDU.  ``length_bits`` is the Length field; normally ``8 * len(data)``."""

    tag: PduTag
    data: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > MAX_DATA_LENGTH:
            raise InvalidConfiguration(
                f"EP data field holds at most {MAX_DATA_LENGTH} octets, got {len(self.data)}",
                field="data")

    @classmethod
    def command(cls, procedure: Procedure, data: bytes = b"") -> Pdu:
        return cls(PduTag.for_procedure(procedure, PduType.COMMAND), data)

    @classmethod
    def reply(cls, procedure: Procedure, data: bytes = b"") -> Pdu:
        return cls(PduTag.for_procedure(procedure, PduType.REPLY), data)

    @property
    def procedure(self) -> Procedure:
        return self.tag.procedure

    @property
    def is_reply(self) -> bool:
        return self.tag.pdu_type is PduType.REPLY

    @property
    def length_bits(self) -> int:
        return 8 * len(self.data)

    def pack(self, *, length_bits: int | None = None) -> bytes:
        """Tag, Length (bits) and data.  ``length_bits`` overrides the Length field (only the
        CryptoLib-compatible replies need it: CryptoLib writes some lengths short)."""
        bits = self.length_bits if length_bits is None else length_bits
        if not 0 <= bits <= 0xFFFF:
            raise InvalidConfiguration(f"length field must be 0..65535 bits, not {bits}")
        return bytes((self.tag.to_int(),)) + bits.to_bytes(2, "big") + self.data

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Pdu, int]:
        """Parse one PDU starting at ``offset``; returns it and the offset just after it."""
        view = memoryview(buf)
        if offset < 0 or len(view) - offset < PDU_HEADER_LENGTH:
            raise InvalidProcedure(
                f"EP PDU header needs {PDU_HEADER_LENGTH} octets, got {max(0, len(view) - offset)}",
                field="tag", offset=offset)
        tag = PduTag.from_int(view[offset])
        bits = int.from_bytes(view[offset + 1:offset + 3], "big")
        if bits % 8:
            raise InvalidProcedure(f"EP length field must be a multiple of 8 bits, got {bits}",
                                   field="length", offset=offset + 1)
        end = offset + PDU_HEADER_LENGTH + bits // 8
        if end > len(view):
            raise InvalidProcedure(
                f"EP length field announces {bits // 8} data octets, only "
                f"{len(view) - offset - PDU_HEADER_LENGTH} follow", field="length",
                offset=offset + 1)
        return cls(tag, bytes(view[offset + PDU_HEADER_LENGTH:end])), end

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview) -> Pdu:
        """Parse exactly one PDU: the Length field must cover every octet after the header."""
        pdu, end = cls.unpack_from(buf, 0)
        if end != len(buf):
            raise InvalidProcedure(
                f"EP PDU of {end} octets followed by {len(buf) - end} extra octets",
                field="length", offset=1)
        return pdu

    def __repr__(self) -> str:
        try:
            name = self.procedure.name
        except InvalidProcedure:
            name = f"tag {self.tag.to_int():#04x}"
        kind = "reply" if self.is_reply else "command"
        return f"Pdu({name} {kind}, {len(self.data)} data octets)"


# --------------------------------------------------------------------------- space packet carriage
#: Space Packet types (133.0-B-2 §4.1.3.3.2)
PACKET_TYPE_TM: Final = 0
PACKET_TYPE_TC: Final = 1
_UNSEGMENTED: Final = 0b11
_SP_HEADER: Final = 6


@dataclass(frozen=True, slots=True)
class EpPacketConfig:
    """How EP PDUs ride in Space Packets (sdls-ep.md §6 option (a)): managed parameters.

    Commands travel in TC packets on ``command_apid``, replies in TM packets on ``reply_apid``.
    ``secondary_header_length`` is 0 (none, the default) or the fixed length of a mission
    secondary header (CryptoLib: a 4-octet ECSS PUS header, echoed in the reply).
    """

    command_apid: int = 128
    reply_apid: int = 128
    secondary_header_length: int = 0

    def __post_init__(self) -> None:
        for name in ("command_apid", "reply_apid"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 0x7FF:
                raise InvalidConfiguration(f"{name} must be 0..2046 (2047 is idle), not {value!r}",
                                           field=name)
        if not 0 <= self.secondary_header_length <= 64:
            raise InvalidConfiguration("secondary_header_length must be 0..64 octets",
                                       field="secondary_header_length")

    @classmethod
    def cryptolib(cls) -> EpPacketConfig:
        """CryptoLib 1.5 unit-test set-up: commands on APID 0x180 (first octets ``19 80``),
        replies on APID 128 (``08 80``), 4-octet PUS secondary header."""
        return cls(command_apid=0x180, reply_apid=0x080, secondary_header_length=4)


@dataclass(frozen=True, slots=True)
class EpPacket:
    """A Space Packet carrying one EP PDU (the PDU kept as raw octets)."""

    packet_type: int
    apid: int
    sequence_count: int
    pdu: bytes
    secondary_header: bytes = b""
    sequence_flags: int = _UNSEGMENTED

    def pack(self) -> bytes:
        """Primary header (133.0-B-2 §4.1.3, via :mod:`sdls_qkd.framing.space_packet`),
        secondary header, PDU."""
        body = self.secondary_header + self.pdu
        if not 1 <= len(body) <= 0x10000:
            raise InvalidConfiguration(f"packet data field must be 1..65536 octets, not {len(body)}")
        header = SpacePacketHeader(PacketType(self.packet_type), self.apid, self.sequence_count,
                                   len(body) - 1, bool(self.secondary_header),
                                   SequenceFlags(self.sequence_flags))
        return header.pack() + body

    @classmethod
    def unpack(cls, buf: bytes | bytearray | memoryview, *, packet_type: int, apid: int,
               secondary_header_length: int = 0) -> EpPacket:
        """Strict parse of one packet that must fill ``buf`` exactly and hold one whole PDU.

        Every fault raises :class:`InvalidProcedure` (the packet is EP carriage), naming the
        field and octet.
        """
        view = memoryview(buf)
        try:
            hdr = SpacePacketHeader.unpack(view)
        except FrameError as exc:
            field = f"packet_{exc.field}" if exc.field else "packet_header"
            raise InvalidProcedure(f"EP packet: {exc.message}", field=field,
                                   offset=exc.offset) from None
        if hdr.packet_type != packet_type:
            raise InvalidProcedure(f"packet type must be {packet_type}, got {hdr.packet_type}",
                                   field="packet_type", offset=0)
        if hdr.apid != apid:
            raise InvalidProcedure(f"APID {hdr.apid} is not the EP APID {apid}",
                                   field="apid", offset=0)
        if hdr.sec_hdr_flag != bool(secondary_header_length):
            raise InvalidProcedure(f"secondary header flag must be "
                                   f"{1 if secondary_header_length else 0}, got "
                                   f"{int(hdr.sec_hdr_flag)}", field="secondary_header_flag",
                                   offset=0)
        if hdr.sequence_flags != _UNSEGMENTED:
            raise InvalidProcedure(f"EP packets are unsegmented (flags 11), got "
                                   f"{hdr.sequence_flags:02b}", field="sequence_flags", offset=2)
        if hdr.packet_length != len(view):
            raise InvalidProcedure(f"space packet length field says {hdr.packet_length} octets, "
                                   f"got {len(view)}", field="packet_data_length", offset=4)
        pdu_start = _SP_HEADER + secondary_header_length
        if len(view) < pdu_start + PDU_HEADER_LENGTH:
            raise InvalidProcedure(f"packet of {len(view)} octets cannot hold an EP PDU after a "
                                   f"{secondary_header_length}-octet secondary header",
                                   field="pdu", offset=pdu_start)
        pdu = bytes(view[pdu_start:])
        Pdu.unpack(pdu)  # the PDU must fill the packet exactly (raises InvalidProcedure)
        return cls(packet_type, apid, hdr.sequence_count, pdu,
                   bytes(view[_SP_HEADER:pdu_start]), int(hdr.sequence_flags))


def wrap_command(pdu: Pdu, config: EpPacketConfig, sequence_count: int,
                 secondary_header: bytes | None = None) -> bytes:
    """A TC Space Packet on the command APID carrying ``pdu``."""
    sh = _secondary(config, secondary_header)
    return EpPacket(PACKET_TYPE_TC, config.command_apid, sequence_count, pdu.pack(), sh).pack()


def wrap_reply(pdu: Pdu, config: EpPacketConfig, sequence_count: int,
               secondary_header: bytes | None = None) -> bytes:
    """A TM Space Packet on the reply APID carrying ``pdu``."""
    sh = _secondary(config, secondary_header)
    return EpPacket(PACKET_TYPE_TM, config.reply_apid, sequence_count, pdu.pack(), sh).pack()


def unwrap_command(packet: bytes | bytearray | memoryview, config: EpPacketConfig) -> EpPacket:
    return EpPacket.unpack(packet, packet_type=PACKET_TYPE_TC, apid=config.command_apid,
                           secondary_header_length=config.secondary_header_length)


def unwrap_reply(packet: bytes | bytearray | memoryview, config: EpPacketConfig) -> EpPacket:
    return EpPacket.unpack(packet, packet_type=PACKET_TYPE_TM, apid=config.reply_apid,
                           secondary_header_length=config.secondary_header_length)


def _secondary(config: EpPacketConfig, given: bytes | None) -> bytes:
    sh = bytes(config.secondary_header_length) if given is None else bytes(given)
    if len(sh) != config.secondary_header_length:
        raise InvalidConfiguration(f"secondary header must be {config.secondary_header_length} "
                                   f"octets, got {len(sh)}", field="secondary_header")
    return sh
