"""AOS FHEC, RS(10,6) over GF(16): vectors from Yamcs and the digest, exhaustive error patterns."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdls_qkd.errors import FhecError, InvalidConfiguration, SdlsQkdError
from sdls_qkd.framing.fhec import (
    FHEC_GENERATOR,
    fhec_decode,
    fhec_encode,
    fhec_encode_reference,
    fhec_encode_unchecked,
    fhec_syndromes,
    gf_mul,
)

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "fhec_yamcs.json").read_text())


def _word(gvcid: int, sig: int, fhec: int) -> int:
    """The 40-bit codeword, first symbol in the top nibble."""
    return (gvcid << 24) | (sig << 16) | fhec


def _split(word: int) -> tuple[int, int, int]:
    return word >> 24, (word >> 16) & 0xFF, word & 0xFFFF


def _symbol_distance(a: int, b: int) -> int:
    return sum(1 for i in range(10) if ((a ^ b) >> (36 - 4 * i)) & 0xF)


def test_vector_file_format() -> None:
    assert VECTORS["format"] == "sdls-qkd-fhec/1"
    assert "yamcs" in VECTORS["provenance"]["source"]
    assert len(VECTORS["encode"]) >= 3 and len(VECTORS["decode"]) >= 4


@pytest.mark.parametrize("case", VECTORS["encode"], ids=lambda c: c["id"])
def test_encode_vectors(case: dict[str, str]) -> None:
    g, s = int(case["gvcid_hex"], 16), int(case["signaling_hex"], 16)
    expected = int(case["fhec_hex"], 16)
    assert fhec_encode(g, s) == expected
    assert fhec_encode_reference(g, s) == expected
    assert fhec_syndromes(g, s, expected) == (0, 0, 0, 0)


def test_digest_worked_example_is_in_the_vectors() -> None:
    ids = {c["id"] for c in VECTORS["encode"]}
    assert "digest-aos-fhec-worked-example" in ids


@pytest.mark.parametrize("case", VECTORS["decode"], ids=lambda c: c["id"])
def test_decode_vectors(case: dict[str, object]) -> None:
    g = int(str(case["gvcid_hex"]), 16)
    s = int(str(case["signaling_hex"]), 16)
    f = int(str(case["fhec_hex"]), 16)
    if case["expected_error"] is not None:
        assert case["expected_error"] == "FhecError"
        with pytest.raises(FhecError) as info:
            fhec_decode(g, s, f)
        assert info.value.field == "fhec"
        assert "uncorrectable" in str(info.value)
    else:
        exp = case["expected"]
        assert isinstance(exp, dict)
        res = fhec_decode(g, s, f)
        assert (res.gvcid, res.signaling) == (int(exp["gvcid_hex"], 16), int(exp["signaling_hex"], 16))
        assert res.fhec == fhec_encode(res.gvcid, res.signaling)
        assert res.corrected_symbols == _symbol_distance(_word(g, s, f), _word(*res[:3]))


def test_generator_polynomial_matches_the_standard() -> None:
    # g(x) = (x + a^6)(x + a^7)(x + a^8)(x + a^9) with a = 2 in GF(16)/x^4+x+1
    assert FHEC_GENERATOR == (1, 8, 2, 8, 1)
    alpha = [1]
    for _ in range(14):
        alpha.append(gf_mul(alpha[-1], 2))
    assert len(set(alpha)) == 15  # alpha is primitive
    for k in range(6, 10):
        root = alpha[k]
        acc = 0
        for c in FHEC_GENERATOR:
            acc = gf_mul(acc, root) ^ c
        assert acc == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF))
def test_table_encoder_equals_long_division(g: int, s: int) -> None:
    assert fhec_encode(g, s) == fhec_encode_reference(g, s) == fhec_encode_unchecked(g, s)
    assert fhec_decode(g, s, fhec_encode(g, s)).corrected_symbols == 0


def _all_patterns(max_weight: int) -> list[int]:
    """Every error pattern of 1..max_weight nonzero symbols over the 10-symbol codeword."""
    out = []
    for w in range(1, max_weight + 1):
        for pos in itertools.combinations(range(10), w):
            for vals in itertools.product(range(1, 16), repeat=w):
                e = 0
                for p, v in zip(pos, vals, strict=True):
                    e |= v << (36 - 4 * p)
                out.append(e)
    return out


PATTERNS_1_2 = _all_patterns(2)


def test_pattern_count() -> None:
    assert len(PATTERNS_1_2) == 10 * 15 + 45 * 15 * 15


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF))
def test_every_single_and_double_symbol_error_is_corrected(g: int, s: int) -> None:
    good = _word(g, s, fhec_encode(g, s))
    for e in PATTERNS_1_2:
        res = fhec_decode(*_split(good ^ e))
        assert (res.gvcid, res.signaling, res.fhec) == (g, s, fhec_encode(g, s)), hex(e)
        assert res.corrected_symbols == _symbol_distance(e, 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF),
       st.lists(st.integers(0, 9), min_size=3, max_size=10, unique=True),
       st.data())
def test_three_or_more_errors_never_crash(g: int, s: int, positions: list[int],
                                          data: st.DataObject) -> None:
    """Beyond the correction radius the decoder refuses or lands on a codeword within 2 symbols
    of what it received (a distance-5 code cannot do better), never anything else."""
    good = _word(g, s, fhec_encode(g, s))
    e = 0
    for p in positions:
        e |= data.draw(st.integers(1, 15)) << (36 - 4 * p)
    received = good ^ e
    try:
        res = fhec_decode(*_split(received))
    except FhecError:
        return
    out = _word(res.gvcid, res.signaling, res.fhec)
    assert fhec_encode(res.gvcid, res.signaling) == res.fhec
    assert _symbol_distance(out, received) <= 2
    assert out != good  # >= 3 errors cannot decode back to the sent word


def test_uncorrectable_rate_is_sane() -> None:
    """Weight-3 patterns are mostly detected (a 2-error decoder leaves many syndromes unused)."""
    g, s = 0x6AC5, 0x00
    good = _word(g, s, fhec_encode(g, s))
    detected = total = 0
    for pos in itertools.combinations(range(10), 3):
        e = sum(((p * 7 + 3) % 15 + 1) << (36 - 4 * p) for p in pos)
        total += 1
        try:
            fhec_decode(*_split(good ^ e))
        except FhecError:
            detected += 1
    assert detected > total // 2


@pytest.mark.parametrize("args", [(-1, 0, 0), (0x10000, 0, 0), (0, 0x100, 0), (0, 0, 0x10000),
                                  (0, -1, 0)])
def test_out_of_range_arguments(args: tuple[int, int, int]) -> None:
    with pytest.raises(InvalidConfiguration):
        fhec_decode(*args)
    if args[2] == 0:
        with pytest.raises(InvalidConfiguration):
            fhec_encode(args[0], args[1])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0xFFFF))
def test_random_triples_raise_only_library_errors(g: int, s: int, f: int) -> None:
    try:
        res = fhec_decode(g, s, f)
    except SdlsQkdError as exc:
        assert isinstance(exc, FhecError)
        return
    assert fhec_encode(res.gvcid, res.signaling) == res.fhec
    assert _symbol_distance(_word(*res[:3]), _word(g, s, f)) <= 2
