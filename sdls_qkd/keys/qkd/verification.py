"""Error verification after Cascade: compare 2-universal (Toeplitz) hash tags of both keys.

Alice draws a fresh random Toeplitz seed, sends it with her t-bit tag; Bob compares with his own
tag.  Keys that differ pass with probability 2^-t = eps_cor at most, so t = ceil(log2(1/eps_cor))
(50 bits for eps_cor = 1e-15).  A block that fails is discarded, never passed on.  The t tag bits
are public: they count as leaked (Lim et al. 2014 subtract log2(2/eps_cor) for them).
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.amplification import toeplitz_hash
from sdls_qkd.keys.qkd.bits import as_bits

__all__ = ["VerificationResult", "tag_bits_for", "verify_keys"]

Bits = npt.NDArray[np.uint8]


def tag_bits_for(eps_cor: float) -> int:
    """Tag length t so that differing keys collide with probability 2^-t <= eps_cor."""
    if not 0.0 < eps_cor < 1.0:
        raise UsageError(f"eps_cor must be in (0, 1), got {eps_cor}")
    return math.ceil(math.log2(1.0 / eps_cor))


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of error verification of one block."""

    passed: bool
    tag_bits: int


def verify_keys(
    alice: Bits, bob: Bits, rng: np.random.Generator, eps_cor: float
) -> VerificationResult:
    """Compare Toeplitz tags of Alice's and Bob's keys under one fresh public seed."""
    a = as_bits("Alice's key", alice)
    b = as_bits("Bob's key", bob)
    if a.shape != b.shape:
        raise UsageError(f"keys must be equal length, got {a.size} and {b.size} bits")
    t = tag_bits_for(eps_cor)
    if a.size == 0:
        return VerificationResult(passed=True, tag_bits=0)
    seed = rng.integers(0, 2, a.size + t - 1, dtype=np.uint8)
    tag_a = np.packbits(toeplitz_hash(a, seed, t)).tobytes()
    tag_b = np.packbits(toeplitz_hash(b, seed, t)).tobytes()
    return VerificationResult(passed=hmac.compare_digest(tag_a, tag_b), tag_bits=t)
