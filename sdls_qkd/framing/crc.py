"""Frame Error Control Field CRCs.

* CRC-16 (TC, TM, AOS, USLP 16-bit FECF): CRC-16/CCITT-FALSE (catalogued as "IBM-3740"):
  poly 0x1021, init 0xFFFF, no reflection, no final XOR; ``crc16(b"123456789") == 0x29B1``.
  Served by ``fastcrc`` >= 0.5 (a Rust SIMD implementation, ~12x faster than ``crcmod``'s C
  extension or ``binascii.crc_hqx`` on 1786-octet frames), because the CRC dominates frame
  processing.  ``binascii.crc_hqx`` is the fallback when fastcrc is unavailable.
* CRC-32 (USLP 32-bit FECF): poly 0x00A00805, init 0, no reflection, no final XOR (the one
  definition seen, in Yamcs; see README).  fastcrc has no preset for it, so ``crcmod`` builds it
  from the generic definition.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

import crcmod

try:  # fast path
    from fastcrc import crc16 as _fastcrc16

    _crc16_impl: Callable[[bytes | bytearray | memoryview], int] = _fastcrc16.ibm_3740
    CRC16_BACKEND = "fastcrc"
except ImportError:  # pragma: no cover - exercised only without fastcrc

    def _crc16_impl(data: bytes | bytearray | memoryview) -> int:
        return binascii.crc_hqx(data, 0xFFFF)

    CRC16_BACKEND = "binascii"

#: USLP CRC-32 generator polynomial (without the x^32 term)
CRC32_USLP_POLY = 0x00A00805

_crc32_impl: Callable[[bytes | bytearray | memoryview], int] = crcmod.mkCrcFun(
    (1 << 32) | CRC32_USLP_POLY, initCrc=0, rev=False, xorOut=0
)


#: CRC-16/CCITT-FALSE of a bytes-like object (the 16-bit FECF value).  Bound directly to the
#: backend function: one Python call level less on the hot path of every frame.
crc16: Callable[[bytes | bytearray | memoryview], int] = _crc16_impl


def crc16_reference(data: bytes | bytearray | memoryview) -> int:
    """Bit-at-a-time CRC-16/CCITT-FALSE, the readable definition the fast path is tested against."""
    crc = 0xFFFF
    for octet in bytes(data):
        crc ^= octet << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc32_uslp(data: bytes | bytearray | memoryview) -> int:
    """USLP 32-bit FECF value."""
    return _crc32_impl(bytes(data) if isinstance(data, memoryview) else data)


def crc32_uslp_reference(data: bytes | bytearray | memoryview) -> int:
    """Bit-at-a-time USLP CRC-32, the readable definition."""
    crc = 0
    for octet in bytes(data):
        crc ^= octet << 24
        for _ in range(8):
            if crc & 0x8000_0000:
                crc = ((crc << 1) ^ CRC32_USLP_POLY) & 0xFFFF_FFFF
            else:
                crc = (crc << 1) & 0xFFFF_FFFF
    return crc


def fecf(data: bytes | bytearray | memoryview, length: int = 2) -> int:
    """FECF of ``length`` octets (2 -> CRC-16, 4 -> USLP CRC-32) over ``data``."""
    if length == 2:
        return _crc16_impl(data)
    if length == 4:
        return crc32_uslp(data)
    from sdls_qkd.errors import InvalidConfiguration

    raise InvalidConfiguration(f"FECF length must be 2 or 4 octets, not {length}")
