"""Operational Control Field words (the 32-bit OCF of TM / AOS / USLP frames) as typed values.

Bit 0 of the word (MSB of the first octet) is the *Control Word Type*:

* ``0`` -> :class:`Clcw`, the Communications Link Control Word of COP-1 (CCSDS 232.0-B §4.2.1);
* ``1`` -> :class:`FrameSecurityReport`, the SDLS Frame Security Report (CCSDS 355.0-B-2 §4.2.4),
  recognised by its version number ``100``.

Both words are frozen dataclasses with ``pack() -> bytes`` (4 octets) and ``unpack(data)``;
:func:`ocf_unpack` dispatches on the type bit.  Values are checked on construction
(:class:`~sdls_qkd.errors.InvalidConfiguration`, the caller's fault); ``unpack`` raises
:class:`~sdls_qkd.errors.FrameError` subclasses only (the link's fault).  Reserved spare bits of
the CLCW are kept as fields so that any received word round-trips bit-exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from sdls_qkd.errors import InvalidConfiguration, InvalidFrameLength, InvalidHeader

#: octets of an OCF word
OCF_LENGTH: Final = 4
#: Control Word Type values (bit 0)
CONTROL_WORD_TYPE_CLCW: Final = 0
CONTROL_WORD_TYPE_REPORT: Final = 1
#: CLCW version number (bits 1-2)
CLCW_VERSION: Final = 0b00
#: SDLS FSR version number (bits 1-3)
FSR_VERSION: Final = 0b100


class CopInEffect(IntEnum):
    """CLCW "COP in Effect" (bits 6-7): only COP-1 is defined; the other codes are reserved."""

    RESERVED_0 = 0
    COP_1 = 1
    RESERVED_2 = 2
    RESERVED_3 = 3


def _check(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise InvalidConfiguration(f"{name} must be an integer in 0..{(1 << bits) - 1}, "
                                   f"not {value!r}", field=name)


def _word(data: bytes | bytearray | memoryview, what: str) -> int:
    """The 32-bit big-endian value of a 4-octet OCF, with a length check."""
    if len(data) != OCF_LENGTH:
        raise InvalidFrameLength(f"{what} needs {OCF_LENGTH} octets, got {len(data)}")
    return int.from_bytes(data, "big")


@dataclass(frozen=True, slots=True)
class Clcw:
    """Communications Link Control Word (control word type 0), CCSDS 232.0-B §4.2.1.

    Layout (bits): type 0 | version 1-2 | status 3-5 | COP 6-7 | VCID 8-13 | spare 14-15 |
    no RF 16 | no bit lock 17 | lockout 18 | wait 19 | retransmit 20 | FARM-B counter 21-22 |
    spare 23 | report value V(R) 24-31.
    """

    vcid: int = 0
    report_value: int = 0
    status_field: int = 0
    cop_in_effect: CopInEffect = CopInEffect.COP_1
    no_rf_available: bool = False
    no_bit_lock: bool = False
    lockout: bool = False
    wait: bool = False
    retransmit: bool = False
    farm_b_counter: int = 0
    #: bits 14-15, set to 0 by senders; kept so received words round-trip
    reserved_spare_1: int = 0
    #: bit 23, set to 0 by senders
    reserved_spare_2: int = 0

    control_word_type: int = CONTROL_WORD_TYPE_CLCW
    version: int = CLCW_VERSION

    def __post_init__(self) -> None:
        if self.control_word_type != CONTROL_WORD_TYPE_CLCW:
            raise InvalidConfiguration("a CLCW has control word type 0", field="control_word_type")
        if self.version != CLCW_VERSION:
            raise InvalidConfiguration("CLCW version must be 0", field="version")
        _check("status_field", self.status_field, 3)
        _check("cop_in_effect", self.cop_in_effect, 2)
        _check("vcid", self.vcid, 6)
        _check("reserved_spare_1", self.reserved_spare_1, 2)
        _check("farm_b_counter", self.farm_b_counter, 2)
        _check("reserved_spare_2", self.reserved_spare_2, 1)
        _check("report_value", self.report_value, 8)
        if not isinstance(self.cop_in_effect, CopInEffect):
            object.__setattr__(self, "cop_in_effect", CopInEffect(self.cop_in_effect))

    def to_int(self) -> int:
        """The word as a 32-bit unsigned integer."""
        return (
            (self.control_word_type << 31)
            | (self.version << 29)
            | (self.status_field << 26)
            | (int(self.cop_in_effect) << 24)
            | (self.vcid << 18)
            | (self.reserved_spare_1 << 16)
            | (int(self.no_rf_available) << 15)
            | (int(self.no_bit_lock) << 14)
            | (int(self.lockout) << 13)
            | (int(self.wait) << 12)
            | (int(self.retransmit) << 11)
            | (self.farm_b_counter << 9)
            | (self.reserved_spare_2 << 8)
            | self.report_value
        )

    def pack(self) -> bytes:
        """The 4 OCF octets."""
        return self.to_int().to_bytes(OCF_LENGTH, "big")

    @classmethod
    def from_int(cls, word: int) -> Clcw:
        """Decode a 32-bit word; type must be 0 and version 00."""
        if word >> 31 != CONTROL_WORD_TYPE_CLCW:
            raise InvalidHeader("control word type is 1, not a CLCW", field="control_word_type",
                                offset=0)
        version = (word >> 29) & 0b11
        if version != CLCW_VERSION:
            raise InvalidHeader(f"CLCW version must be 0, got {version}", field="version",
                                offset=0)
        return cls(
            vcid=(word >> 18) & 0x3F,
            report_value=word & 0xFF,
            status_field=(word >> 26) & 0b111,
            cop_in_effect=CopInEffect((word >> 24) & 0b11),
            no_rf_available=bool((word >> 15) & 1),
            no_bit_lock=bool((word >> 14) & 1),
            lockout=bool((word >> 13) & 1),
            wait=bool((word >> 12) & 1),
            retransmit=bool((word >> 11) & 1),
            farm_b_counter=(word >> 9) & 0b11,
            reserved_spare_1=(word >> 16) & 0b11,
            reserved_spare_2=(word >> 8) & 1,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> Clcw:
        """Decode 4 OCF octets."""
        return cls.from_int(_word(data, "CLCW"))


@dataclass(frozen=True, slots=True)
class FrameSecurityReport:
    """SDLS Frame Security Report (control word type 1, version ``100``), CCSDS 355.0-B-2.

    Layout (bits): type 1 | version 1-3 = 100 | alarm 4 | bad SN 5 | bad MAC 6 | bad SA 7 |
    last SPI 8-23 | 8 LSBs of the last received ARSN 24-31.
    """

    alarm_flag: bool = False
    bad_sn: bool = False
    bad_mac: bool = False
    bad_sa: bool = False
    spi: int = 0
    last_sn_lsb: int = 0

    control_word_type: int = CONTROL_WORD_TYPE_REPORT
    version: int = FSR_VERSION

    def __post_init__(self) -> None:
        if self.control_word_type != CONTROL_WORD_TYPE_REPORT:
            raise InvalidConfiguration("an FSR has control word type 1", field="control_word_type")
        if self.version != FSR_VERSION:
            raise InvalidConfiguration("FSR version must be 0b100", field="version")
        _check("spi", self.spi, 16)
        _check("last_sn_lsb", self.last_sn_lsb, 8)

    def to_int(self) -> int:
        """The word as a 32-bit unsigned integer."""
        return (
            (self.control_word_type << 31)
            | (self.version << 28)
            | (int(self.alarm_flag) << 27)
            | (int(self.bad_sn) << 26)
            | (int(self.bad_mac) << 25)
            | (int(self.bad_sa) << 24)
            | (self.spi << 8)
            | self.last_sn_lsb
        )

    def pack(self) -> bytes:
        """The 4 OCF octets."""
        return self.to_int().to_bytes(OCF_LENGTH, "big")

    @classmethod
    def from_int(cls, word: int) -> FrameSecurityReport:
        """Decode a 32-bit word; type must be 1 and version 100."""
        if word >> 31 != CONTROL_WORD_TYPE_REPORT:
            raise InvalidHeader("control word type is 0 (a CLCW), not an FSR",
                                field="control_word_type", offset=0)
        version = (word >> 28) & 0b111
        if version != FSR_VERSION:
            raise InvalidHeader(f"FSR version must be 0b100, got {version:#05b}", field="version",
                                offset=0)
        return cls(
            alarm_flag=bool((word >> 27) & 1),
            bad_sn=bool((word >> 26) & 1),
            bad_mac=bool((word >> 25) & 1),
            bad_sa=bool((word >> 24) & 1),
            spi=(word >> 8) & 0xFFFF,
            last_sn_lsb=word & 0xFF,
        )

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview) -> FrameSecurityReport:
        """Decode 4 OCF octets."""
        return cls.from_int(_word(data, "FSR"))


OcfWord = Clcw | FrameSecurityReport


def ocf_unpack(data: bytes | bytearray | memoryview) -> OcfWord:
    """Decode an OCF, choosing CLCW or FSR by the Control Word Type bit.

    A type-1 word whose version is not ``100`` is a report this library does not know:
    :class:`~sdls_qkd.errors.InvalidHeader`.
    """
    word = _word(data, "OCF")
    if word >> 31 == CONTROL_WORD_TYPE_CLCW:
        return Clcw.from_int(word)
    return FrameSecurityReport.from_int(word)
