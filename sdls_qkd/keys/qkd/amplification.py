"""Toeplitz hashing over GF(2), computed as an FFT convolution (numpy).

A random m x n Toeplitz matrix T (T[i, j] = s[i - j + n - 1], seed s of n + m - 1 bits) is a
2-universal hash: for x != x', Pr_s[T x = T x'] = 2^-m.  It serves privacy amplification
(m = the secret length, Leftover Hash Lemma) and error verification (m = the tag length).

T x is the slice [n-1, n+m-1) of the linear convolution s * x, so a circular convolution of any
length >= n + m - 1 gives it without wrap-around.  The FFT length is chosen 5-smooth
(2^a 3^b 5^c): an unlucky length with a large prime factor makes FFTs several times slower.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.bits import as_bits

__all__ = ["fast_fft_length", "privacy_amplification", "toeplitz_hash", "toeplitz_matrix"]

Bits = npt.NDArray[np.uint8]

#: largest input handled in one FFT; float64 convolution sums stay exact well beyond this
_MAX_DIRECT = 1 << 22


def fast_fft_length(n: int) -> int:
    """Smallest 5-smooth integer (only prime factors 2, 3, 5) that is >= ``n``."""
    if n <= 1:
        return 1
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            # smallest power-of-two multiple of p35 that reaches n
            q = p35
            while q < n:
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    return best


def toeplitz_matrix(seed: Bits, n: int, m: int) -> Bits:
    """The explicit m x n matrix T[i, j] = seed[i - j + n - 1] (for tests and small inputs)."""
    s = np.asarray(seed, dtype=np.uint8)
    if s.size != n + m - 1:
        raise UsageError(f"Toeplitz seed must have n + m - 1 = {n + m - 1} bits, got {s.size}")
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    return s[i - j + n - 1]


def _conv_slice(seed: Bits, x: Bits, m: int) -> Bits:
    n = x.size
    length = fast_fft_length(n + m - 1)
    fs = np.fft.rfft(seed.astype(np.float64), length)
    fx = np.fft.rfft(x.astype(np.float64), length)
    v = np.fft.irfft(fs * fx, length)[n - 1 : n - 1 + m]
    r = np.rint(v)
    if v.size and float(np.max(np.abs(v - r))) > 0.25:  # pragma: no cover - guarded by _MAX_DIRECT
        raise UsageError("Toeplitz FFT lost integer precision; input too long")
    return (r.astype(np.int64) & 1).astype(np.uint8)


def toeplitz_hash(bits: Bits, seed: Bits, m: int) -> Bits:
    """T x over GF(2) for the Toeplitz matrix of ``seed`` (n + m - 1 bits): ``m`` output bits."""
    x = as_bits("input", bits)
    s = as_bits("seed", seed)
    n = int(x.size)
    if m < 0:
        raise UsageError(f"output length must be >= 0, got {m}")
    if n == 0 or m == 0:
        return np.zeros(m, dtype=np.uint8)
    if s.size != n + m - 1:
        raise UsageError(f"Toeplitz seed must have n + m - 1 = {n + m - 1} bits, got {s.size}")
    if n <= _MAX_DIRECT:
        return _conv_slice(s, x, m)
    # Split the input: T x = XOR over chunks x[j0:j1] of their own Toeplitz windows.
    out = np.zeros(m, dtype=np.uint8)
    for j0 in range(0, n, _MAX_DIRECT):
        j1 = min(n, j0 + _MAX_DIRECT)
        out ^= toeplitz_hash(x[j0:j1], s[n - j1 : n - j0 + m - 1], m)
    return out


def privacy_amplification(key: Bits, m: int, rng: np.random.Generator) -> tuple[Bits, Bits]:
    """Compress ``key`` to ``m`` bits with a fresh random Toeplitz seed; returns (key, seed).

    The seed is public (sent over the authenticated channel); only its randomness matters.
    """
    x = as_bits("key", key)
    if not 0 <= m <= x.size:
        raise UsageError(f"privacy amplification output must be 0..{x.size} bits, got {m}")
    if m == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.uint8)
    seed = rng.integers(0, 2, x.size + m - 1, dtype=np.uint8)
    return toeplitz_hash(x, seed, m), seed
