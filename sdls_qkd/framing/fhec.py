"""AOS Frame Header Error Control (CCSDS 732.0-B-4 §4.1.2.6): Reed-Solomon (10,6) over GF(16).

The FHEC protects six 4-bit symbols: the 16 bits TFVN + SCID + VCID (header octets 0-1) followed
by the 8-bit Signaling Field (header octet 5); the VC Frame Count is not protected.  The code is
RS(15,11) shortened by 5 symbols:

* field GF(2^4) with primitive polynomial x^4 + x + 1 (0x13), alpha = 0b0010;
* generator g(x) = (x + a^6)(x + a^7)(x + a^8)(x + a^9) = x^4 + a^3 x^3 + a x^2 + a^3 x + 1;
* systematic: parity = d(x) * x^4 mod g(x), first data nibble = highest-order coefficient;
* the 16-bit FHEC field holds the 4 parity symbols, first one in the most significant nibble.

With 4 check symbols (distance 5) the decoder corrects any pattern of up to 2 symbol errors in the
10-symbol codeword.  Patterns of 3 or more symbol errors are either detected (:class:`FhecError`)
or, unavoidably for a distance-5 code, miscorrected to another codeword.

Decoding is the textbook chain: syndromes, Berlekamp-Massey for the error locator, Chien search
restricted to the 10 transmitted positions (a root in the 5 shortened positions means the pattern
is uncorrectable), Forney for the magnitudes, and a final syndrome re-check.

The hot path (no error) is table driven: the code is linear, so the parity of a header is the XOR of
six per-nibble table entries, and a received header is accepted when its recomputed parity equals
the received FHEC.
"""

from __future__ import annotations

from typing import NamedTuple

from sdls_qkd.errors import FhecError, InvalidConfiguration

__all__ = [
    "FHEC_GENERATOR",
    "FhecResult",
    "fhec_decode",
    "fhec_encode",
    "fhec_encode_reference",
    "fhec_encode_unchecked",
    "fhec_syndromes",
    "gf_mul",
]

#: GF(16) primitive polynomial x^4 + x + 1
GF_POLY = 0x13
#: first consecutive root of the generator is alpha^FCR
FCR = 6
#: number of check symbols
NROOTS = 4
#: symbols in the shortened codeword (6 data + 4 parity)
N_SYMBOLS = 10
#: symbols of the full-length code (2^4 - 1)
N_FULL = 15
#: generator coefficients, highest order first (as in the digest and the standard)
FHEC_GENERATOR: tuple[int, ...] = (1, 8, 2, 8, 1)


def _build_tables() -> tuple[list[int], list[int]]:
    exp = [0] * 30
    log = [0] * 16
    x = 1
    for i in range(15):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x10:
            x ^= GF_POLY
    for i in range(15, 30):
        exp[i] = exp[i - 15]
    return exp, log


_EXP, _LOG = _build_tables()


def gf_mul(a: int, b: int) -> int:
    """Product of two GF(16) elements."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def _gf_inv(a: int) -> int:
    return _EXP[(15 - _LOG[a]) % 15]


def _gf_pow(a: int, n: int) -> int:
    """alpha-power a^n, n any integer (a != 0)."""
    return _EXP[(_LOG[a] * n) % 15]


def _poly_generator() -> list[int]:
    """prod (x + a^(FCR+i)), highest order first; recomputed to check FHEC_GENERATOR."""
    g = [1]
    for i in range(NROOTS):
        root = _EXP[FCR + i]
        nxt = [0] * (len(g) + 1)
        for j, c in enumerate(g):
            nxt[j] ^= c
            nxt[j + 1] ^= gf_mul(c, root)
        g = nxt
    return g


if tuple(_poly_generator()) != FHEC_GENERATOR:  # pragma: no cover - a build-time self check
    raise RuntimeError("FHEC generator polynomial does not match the standard's [1, 8, 2, 8, 1]")


def _parity_of_symbols(data: list[int]) -> int:
    """Remainder of d(x) x^4 mod g(x), by LFSR long division; 4 nibbles packed MSB first."""
    reg = [0, 0, 0, 0]
    for sym in data:
        feedback = sym ^ reg[0]
        reg = [
            reg[1] ^ gf_mul(feedback, FHEC_GENERATOR[1]),
            reg[2] ^ gf_mul(feedback, FHEC_GENERATOR[2]),
            reg[3] ^ gf_mul(feedback, FHEC_GENERATOR[3]),
            gf_mul(feedback, FHEC_GENERATOR[4]),
        ]
    return (reg[0] << 12) | (reg[1] << 8) | (reg[2] << 4) | reg[3]


def _symbols(gvcid: int, signaling: int) -> list[int]:
    word = (gvcid << 8) | signaling
    return [(word >> (20 - 4 * i)) & 0xF for i in range(6)]


# Linear code: parity(word) = XOR over the six nibble positions of parity(nibble at position).
_TABLES: tuple[tuple[int, ...], ...] = tuple(
    tuple(_parity_of_symbols([v if i == pos else 0 for i in range(6)]) for v in range(16))
    for pos in range(6)
)


# Per-octet tables for the hot path: parity = _OCT0[octet 0] ^ _OCT1[octet 1] ^ _OCT5[signaling].
_OCT0: tuple[int, ...] = tuple(_TABLES[0][v >> 4] ^ _TABLES[1][v & 0xF] for v in range(256))
_OCT1: tuple[int, ...] = tuple(_TABLES[2][v >> 4] ^ _TABLES[3][v & 0xF] for v in range(256))
_OCT5: tuple[int, ...] = tuple(_TABLES[4][v >> 4] ^ _TABLES[5][v & 0xF] for v in range(256))


def fhec_encode_unchecked(gvcid: int, signaling: int) -> int:
    """:func:`fhec_encode` without argument checks, for callers that read the values from bits."""
    return _OCT0[gvcid >> 8] ^ _OCT1[gvcid & 0xFF] ^ _OCT5[signaling]


def _check_args(gvcid: int, signaling: int) -> None:
    if not 0 <= gvcid <= 0xFFFF:
        raise InvalidConfiguration(f"FHEC gvcid word must be 16 bits, not {gvcid!r}")
    if not 0 <= signaling <= 0xFF:
        raise InvalidConfiguration(f"FHEC signaling field must be 8 bits, not {signaling!r}")


def fhec_encode(gvcid: int, signaling: int) -> int:
    """FHEC (16 bits) of the header word ``gvcid`` (octets 0-1) and the ``signaling`` octet."""
    _check_args(gvcid, signaling)
    return _OCT0[gvcid >> 8] ^ _OCT1[gvcid & 0xFF] ^ _OCT5[signaling]


def fhec_encode_reference(gvcid: int, signaling: int) -> int:
    """Same value as :func:`fhec_encode` by polynomial long division (the readable definition)."""
    _check_args(gvcid, signaling)
    return _parity_of_symbols(_symbols(gvcid, signaling))


def _codeword(gvcid: int, signaling: int, fhec: int) -> list[int]:
    """The 10 symbols, index 0 = coefficient of x^9 (first transmitted)."""
    return _symbols(gvcid, signaling) + [(fhec >> (12 - 4 * i)) & 0xF for i in range(4)]


def fhec_syndromes(gvcid: int, signaling: int, fhec: int) -> tuple[int, int, int, int]:
    """S_j = r(alpha^(FCR + j)), j = 0..3; all zero iff the received word is a codeword."""
    cw = _codeword(gvcid, signaling, fhec)
    out = []
    for j in range(NROOTS):
        root = _EXP[FCR + j]
        acc = 0
        for sym in cw:  # Horner, highest degree first
            acc = gf_mul(acc, root) ^ sym
        out.append(acc)
    return out[0], out[1], out[2], out[3]


class FhecResult(NamedTuple):
    """A decoded (possibly corrected) header: the protected fields and how many symbols changed."""

    gvcid: int
    signaling: int
    fhec: int
    corrected_symbols: int


def _berlekamp_massey(s: tuple[int, ...]) -> list[int]:
    """Error locator Lambda(x) = 1 + l1 x + ..., lowest order first."""
    lam = [1, 0, 0, 0, 0]
    prev = [1, 0, 0, 0, 0]
    length = 0
    shift = 1
    b = 1
    for n in range(NROOTS):
        d = s[n]
        for i in range(1, length + 1):
            d ^= gf_mul(lam[i], s[n - i])
        if d == 0:
            shift += 1
            continue
        coef = gf_mul(d, _gf_inv(b))
        new = lam[:]
        for i in range(len(prev) - shift):
            new[i + shift] ^= gf_mul(coef, prev[i])
        if 2 * length <= n:
            prev = lam
            length = n + 1 - length
            b = d
            shift = 1
        else:
            shift += 1
        lam = new
    return lam[: length + 1]


def _poly_eval_low(poly: list[int], x: int) -> int:
    acc = 0
    for c in reversed(poly):
        acc = gf_mul(acc, x) ^ c
    return acc


def fhec_decode(gvcid: int, signaling: int, fhec: int) -> FhecResult:
    """Check and correct a received (gvcid, signaling, fhec) triple.

    Returns the corrected fields.  Raises :class:`FhecError` when the errors cannot be corrected
    (more than 2 symbol errors detected).
    """
    _check_args(gvcid, signaling)
    if not 0 <= fhec <= 0xFFFF:
        raise InvalidConfiguration(f"FHEC must be 16 bits, not {fhec!r}")
    if fhec_encode(gvcid, signaling) == fhec:
        return FhecResult(gvcid, signaling, fhec, 0)
    synd = fhec_syndromes(gvcid, signaling, fhec)
    lam = _berlekamp_massey(synd)
    n_err = len(lam) - 1
    if n_err == 0 or n_err > NROOTS // 2:
        raise FhecError(
            f"AOS FHEC: uncorrectable header (syndromes {synd}, locator degree {n_err} > 2)",
            field="fhec",
            offset=6,
        )
    # Chien search over the transmitted positions only: degree p <-> codeword index 9 - p.
    positions = [p for p in range(N_SYMBOLS) if _poly_eval_low(lam, _EXP[(15 - p) % 15]) == 0]
    if len(positions) != n_err:
        raise FhecError(
            f"AOS FHEC: uncorrectable header ({len(positions)} error positions found in the "
            f"10 transmitted symbols for a locator of degree {n_err})",
            field="fhec",
            offset=6,
        )
    # Omega(x) = S(x) Lambda(x) mod x^4, lowest order first
    omega = [0] * NROOTS
    for i in range(NROOTS):
        acc = 0
        for j in range(min(i, n_err) + 1):
            acc ^= gf_mul(lam[j], synd[i - j])
        omega[i] = acc
    # formal derivative of Lambda: odd-degree terms only (characteristic 2)
    dlam = [lam[i] if i % 2 == 1 else 0 for i in range(1, len(lam))]
    cw = _codeword(gvcid, signaling, fhec)
    for p in positions:
        x_k = _EXP[p]
        x_inv = _EXP[(15 - p) % 15]
        num = gf_mul(_gf_pow(x_k, 1 - FCR), _poly_eval_low(omega, x_inv))
        den = _poly_eval_low(dlam, x_inv)
        if den == 0 or num == 0:  # cannot happen for a genuine <=2-error pattern
            raise FhecError("AOS FHEC: uncorrectable header (degenerate Forney step)",
                            field="fhec", offset=6)
        cw[N_SYMBOLS - 1 - p] ^= gf_mul(num, _gf_inv(den))
    new_gvcid = (cw[0] << 12) | (cw[1] << 8) | (cw[2] << 4) | cw[3]
    new_sig = (cw[4] << 4) | cw[5]
    new_fhec = (cw[6] << 12) | (cw[7] << 8) | (cw[8] << 4) | cw[9]
    if fhec_encode(new_gvcid, new_sig) != new_fhec:  # pragma: no cover - defensive re-check
        raise FhecError("AOS FHEC: correction did not yield a codeword", field="fhec", offset=6)
    return FhecResult(new_gvcid, new_sig, new_fhec, n_err)
