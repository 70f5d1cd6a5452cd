"""OCF words: CLCW (232.0-B §4.2.1) and SDLS FSR (355.0-B-2) bit layouts, round trips, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidConfiguration, InvalidFrameLength, InvalidHeader, SdlsQkdError
from sdls_qkd.framing.ocf import Clcw, CopInEffect, FrameSecurityReport, ocf_unpack
from sdls_qkd.fuzz.ocf import clcws, frame_security_reports, mutated_ocf_bytes


def bits(first: int, last: int) -> int:
    """Mask of CCSDS bits first..last (bit 0 = MSB) of a 32-bit word, from the spec tables."""
    return sum(1 << (31 - b) for b in range(first, last + 1))


# (field, value that sets every bit of it, CCSDS bit range) from tc-frame.md section 6
CLCW_FIELDS = [
    ("status_field", 7, 3, 5),
    ("cop_in_effect", 3, 6, 7),
    ("vcid", 63, 8, 13),
    ("reserved_spare_1", 3, 14, 15),
    ("no_rf_available", True, 16, 16),
    ("no_bit_lock", True, 17, 17),
    ("lockout", True, 18, 18),
    ("wait", True, 19, 19),
    ("retransmit", True, 20, 20),
    ("farm_b_counter", 3, 21, 22),
    ("reserved_spare_2", 1, 23, 23),
    ("report_value", 255, 24, 31),
]


@pytest.mark.parametrize(("name", "value", "first", "last"), CLCW_FIELDS)
def test_clcw_field_positions(name: str, value: int, first: int, last: int) -> None:
    base = Clcw(cop_in_effect=CopInEffect.RESERVED_0)  # all-zero word
    assert base.pack() == b"\x00\x00\x00\x00"
    word = Clcw(**{"cop_in_effect": CopInEffect.RESERVED_0, name: value})  # type: ignore[arg-type]
    assert int.from_bytes(word.pack(), "big") == bits(first, last)
    assert Clcw.unpack(word.pack()) == word


def test_clcw_yamcs_extraction_formulae() -> None:
    # tc-frame.md: yamcs reads VCID = (clcw >> 18) & 0x3F, lockout >> 13, wait >> 12,
    # retransmit >> 11 -- apply them to our packed word
    word = int.from_bytes(Clcw(vcid=42, lockout=True, retransmit=True, report_value=9).pack(),
                          "big")
    assert (word >> 18) & 0x3F == 42
    assert (word >> 13) & 1 == 1 and (word >> 12) & 1 == 0 and (word >> 11) & 1 == 1
    assert word & 0xFF == 9


def test_clcw_from_yamcs_tm_frame() -> None:
    # OCF 01000000 of the Yamcs TM frame (vectors/frames_yamcs_tm.json): COP-1, VC 0, V(R) 0
    clcw = ocf_unpack(bytes.fromhex("01000000"))
    assert clcw == Clcw(vcid=0, cop_in_effect=CopInEffect.COP_1, report_value=0)


FSR_FIELDS = [
    ("alarm_flag", True, 4, 4),
    ("bad_sn", True, 5, 5),
    ("bad_mac", True, 6, 6),
    ("bad_sa", True, 7, 7),
    ("spi", 0xFFFF, 8, 23),
    ("last_sn_lsb", 0xFF, 24, 31),
]


@pytest.mark.parametrize(("name", "value", "first", "last"), FSR_FIELDS)
def test_fsr_field_positions(name: str, value: int, first: int, last: int) -> None:
    # sdls.md section 10: type bit 0 = 1 and version bits 1-3 = 100 always present
    fixed = bits(0, 0) | bits(1, 1)
    assert int.from_bytes(FrameSecurityReport().pack(), "big") == fixed
    word = FrameSecurityReport(**{name: value})  # type: ignore[arg-type]
    assert int.from_bytes(word.pack(), "big") == fixed | bits(first, last)
    assert FrameSecurityReport.unpack(word.pack()) == word


def test_fsr_worked_value() -> None:
    fsr = FrameSecurityReport(alarm_flag=True, bad_mac=True, spi=0x1234, last_sn_lsb=0x56)
    # 1 100 1 0 1 0 = 0xCA, then SPI 12 34, then 56
    assert fsr.pack() == bytes.fromhex("CA123456")
    assert ocf_unpack(bytes.fromhex("CA123456")) == fsr


def test_dispatch_and_errors() -> None:
    assert isinstance(ocf_unpack(b"\x00\x00\x00\x00"), Clcw)
    assert isinstance(ocf_unpack(b"\xc0\x00\x00\x00"), FrameSecurityReport)
    with pytest.raises(InvalidHeader):
        ocf_unpack(b"\x80\x00\x00\x00")  # type 1, version 000
    with pytest.raises(InvalidHeader) as e:
        ocf_unpack(b"\xb0\x00\x00\x00")  # type 1, version 011
    assert e.value.field == "version"
    with pytest.raises(InvalidHeader):
        ocf_unpack(b"\x20\x00\x00\x00")  # CLCW version 01
    with pytest.raises(InvalidHeader):
        Clcw.unpack(b"\x80\x00\x00\x00")
    with pytest.raises(InvalidHeader):
        FrameSecurityReport.unpack(b"\x00\x00\x00\x00")
    with pytest.raises(InvalidFrameLength, match="needs 4 octets, got 3"):
        ocf_unpack(b"\x00\x00\x00")
    with pytest.raises(InvalidConfiguration):
        Clcw(vcid=64)
    with pytest.raises(InvalidConfiguration):
        FrameSecurityReport(spi=0x10000)


@settings(max_examples=100, deadline=None)
@given(clcws())
def test_clcw_round_trip(clcw: Clcw) -> None:
    assert Clcw.unpack(clcw.pack()) == clcw
    assert ocf_unpack(clcw.pack()) == clcw


@settings(max_examples=100, deadline=None)
@given(frame_security_reports())
def test_fsr_round_trip(fsr: FrameSecurityReport) -> None:
    assert ocf_unpack(fsr.pack()) == fsr


@settings(max_examples=150, deadline=None)
@given(st.one_of(mutated_ocf_bytes(), st.binary(max_size=6)))
def test_ocf_parser_raises_only_library_errors(data: bytes) -> None:
    try:
        word = ocf_unpack(data)
    except SdlsQkdError:
        return
    assert word.pack() == data  # every accepted word round-trips bit-exactly
