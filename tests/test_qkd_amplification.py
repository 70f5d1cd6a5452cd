"""Toeplitz hashing by FFT equals the explicit GF(2) matrix product; FFT lengths are 5-smooth."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sdls_qkd.keys.qkd.amplification as amp
from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.amplification import (
    fast_fft_length,
    privacy_amplification,
    toeplitz_hash,
    toeplitz_matrix,
)


def _naive(seed: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """T x mod 2 with T built entry by entry from the definition T[i, j] = s[i - j + n - 1]."""
    n = x.size
    t = np.array([[seed[i - j + n - 1] for j in range(n)] for i in range(m)], dtype=np.int64)
    return ((t @ x.astype(np.int64)) % 2).astype(np.uint8)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 160), st.integers(1, 160), st.integers(0, 2**32 - 1))
def test_fft_toeplitz_equals_naive_matmul(n: int, m: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    expected = _naive(s, x, m)
    assert np.array_equal(toeplitz_hash(x, s, m), expected)
    assert np.array_equal((toeplitz_matrix(s, n, m).astype(np.int64) @ x) % 2, expected)


def test_matrix_is_toeplitz() -> None:
    s = np.arange(7, dtype=np.uint8) % 2
    t = toeplitz_matrix(s, 4, 4)
    for i in range(1, 4):
        assert np.array_equal(t[i, 1:], t[i - 1, :-1])  # constant along diagonals


def test_chunked_path_equals_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n, m = 5000, 700
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    direct = toeplitz_hash(x, s, m)
    monkeypatch.setattr(amp, "_MAX_DIRECT", 1024)
    assert np.array_equal(toeplitz_hash(x, s, m), direct)
    assert np.array_equal(
        direct, (toeplitz_matrix(s, n, m).astype(np.int64) @ x % 2).astype(np.uint8)
    )


def _smooth(v: int) -> bool:
    for p in (2, 3, 5):
        while v % p == 0:
            v //= p
    return v == 1


def test_fast_fft_length_is_smallest_5_smooth() -> None:
    for n in range(1, 3000):
        got = fast_fft_length(n)
        assert got >= n and _smooth(got)
        assert not any(_smooth(v) for v in range(n, got))
    big = fast_fft_length(2_176_000)
    assert _smooth(big) and big >= 2_176_000 and big < 2_176_000 * 1.05


def test_linearity_and_universality_smoke() -> None:
    """T(x ^ y) = T x ^ T y; a random seed maps a fixed nonzero difference to 0 about 2^-m often."""
    rng = np.random.default_rng(2)
    n, m = 64, 4
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    assert np.array_equal(
        toeplitz_hash(x ^ y, s, m), toeplitz_hash(x, s, m) ^ toeplitz_hash(y, s, m)
    )
    d = np.zeros(n, dtype=np.uint8)
    d[[3, 40]] = 1
    hits = sum(
        not toeplitz_hash(d, rng.integers(0, 2, n + m - 1, dtype=np.uint8), m).any()
        for _ in range(4000)
    )
    assert abs(hits / 4000 - 1 / 16) < 0.02


def test_privacy_amplification_lengths_and_determinism() -> None:
    key = np.random.default_rng(3).integers(0, 2, 10_000, dtype=np.uint8)
    out1, seed1 = privacy_amplification(key, 3000, np.random.default_rng(9))
    out2, seed2 = privacy_amplification(key, 3000, np.random.default_rng(9))
    assert out1.size == 3000 and seed1.size == 10_000 + 3000 - 1
    assert np.array_equal(out1, out2) and np.array_equal(seed1, seed2)
    assert 0.45 < out1.mean() < 0.55
    empty, _ = privacy_amplification(key, 0, np.random.default_rng(9))
    assert empty.size == 0


def test_bad_sizes_are_usage_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match="n \\+ m - 1"):
        toeplitz_hash(np.zeros(10, np.uint8), np.zeros(10, np.uint8), 3)
    with pytest.raises(UsageError, match="0..10"):
        privacy_amplification(np.zeros(10, np.uint8), 11, rng)
    with pytest.raises(UsageError):
        toeplitz_matrix(np.zeros(3, np.uint8), 3, 3)
