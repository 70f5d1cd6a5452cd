"""FECF CRCs against the check values of their catalogued definitions and the spec digest."""

from hypothesis import given
from hypothesis import strategies as st

from sdls_qkd.errors import InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing import crc


def test_crc16_check_value() -> None:
    # CRC-16/CCITT-FALSE catalogue check value (spec digest, tc-frame.md)
    assert crc.crc16(b"123456789") == 0x29B1
    assert crc.crc16_reference(b"123456789") == 0x29B1


def test_crc16_empty_is_init() -> None:
    assert crc.crc16(b"") == 0xFFFF


def test_crc32_uslp_reference_matches_hand_division() -> None:
    # one octet 0x80 is x^31: after 8 shifts the register holds x^39 mod P, computed by hand below
    poly = (1 << 32) | crc.CRC32_USLP_POLY
    value = 1 << 39
    for bit in range(39, 31, -1):
        if value >> bit & 1:
            value ^= poly << (bit - 32)
    assert crc.crc32_uslp(b"\x80") == value
    assert crc.crc32_uslp_reference(b"\x80") == value


@given(st.binary(max_size=300))
def test_fast_paths_equal_reference(data: bytes) -> None:
    assert crc.crc16(data) == crc.crc16_reference(data)
    assert crc.crc32_uslp(data) == crc.crc32_uslp_reference(data)
    assert crc.crc16(memoryview(data)) == crc.crc16_reference(data)


def test_bad_fecf_length_is_library_error() -> None:
    try:
        crc.fecf(b"abc", 3)
    except InvalidConfiguration as exc:
        assert isinstance(exc, SdlsQkdError)
    else:  # pragma: no cover
        raise AssertionError("expected InvalidConfiguration")


def test_crc32_uslp_check_value_from_the_spec_digest() -> None:
    # uslp-frame.md: poly 0x00A00805, preset 0, no reflection, no final XOR; check 0x51693C0C
    assert crc.crc32_uslp(b"123456789") == 0x51693C0C
    assert crc.crc32_uslp_reference(b"123456789") == 0x51693C0C
