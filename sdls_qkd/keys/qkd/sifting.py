"""Detection counts per time slice, basis sifting, and the sifted X-basis key arrays.

No photon is simulated one by one: in each slice the pulses of each intensity fall into
"click with matching bases X", "click with matching bases Z", "click with mismatched bases" and
"no click" by one multinomial draw, and the wrong-bit clicks among the sifted Z ones by a binomial
draw.  Then the X-basis sifted key is materialised as real bit arrays (Alice's random bits,
Bob's with errors drawn bit by bit at each slice's error probability) because error correction and privacy amplification run
on them for real.  Z-basis bits are disclosed for parameter estimation; only their counts matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdls_qkd.keys.qkd.passes import PassProfile, TimeSlices

__all__ = ["SiftedCounts", "SiftedKey", "build_x_key", "sample_counts"]

Bits = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.int64]

X, Z = 0, 1


@dataclass(frozen=True)
class SiftedCounts:
    """Counts per slice: ``n[s, k, b]`` sifted clicks (b: 0=X, 1=Z), ``m[s, k, Z]`` wrong bits in Z.

    ``x_error_prob[s, k]`` is the wrong-bit probability of an X click; the X-basis errors are
    drawn bit by bit when the key is built (``m[:, :, X]`` stays 0: nobody counts them before
    error correction).
    """

    pulses: Ints
    n: Ints
    m: Ints
    mismatched: Ints
    x_error_prob: npt.NDArray[np.float64]

    def total_n(self, basis: int) -> tuple[int, int, int]:
        t = self.n[:, :, basis].sum(axis=0)
        return int(t[0]), int(t[1]), int(t[2])

    def total_m(self, basis: int) -> tuple[int, int, int]:
        t = self.m[:, :, basis].sum(axis=0)
        return int(t[0]), int(t[1]), int(t[2])

    @property
    def sifted_bits(self) -> int:
        return int(self.n.sum())

    @property
    def detections(self) -> int:
        return int(self.n.sum() + self.mismatched.sum())


def sample_counts(
    profile: PassProfile, slices: TimeSlices, rng: np.random.Generator
) -> SiftedCounts:
    """Draw the clicks and errors of every slice of a pass."""
    src, det = profile.source, profile.detectors
    pulses = np.rint(src.rep_rate_hz * slices.width_s).astype(np.int64)
    ns = pulses.size
    qx, qz = src.q_x, 1.0 - src.q_x
    basis_p = (qx * qx, qz * qz, 2.0 * qx * qz)  # XX, ZZ, mismatched
    probs = np.zeros((ns, 10), dtype=np.float64)
    err_frac = np.zeros((ns, 3), dtype=np.float64)
    for k, (mu, pk) in enumerate(zip(src.mu, src.p, strict=True)):
        clicks, errors = det.click_and_error(slices.transmittance, mu)
        clicks = np.minimum(clicks, 1.0)
        for b in range(3):
            probs[:, 3 * k + b] = pk * basis_p[b] * clicks
        err_frac[:, k] = np.where(
            clicks > 0, np.minimum(errors / np.maximum(clicks, 1e-300), 1.0), 0.0
        )
    probs[:, 9] = np.maximum(0.0, 1.0 - probs[:, :9].sum(axis=1))
    probs /= probs.sum(axis=1, keepdims=True)
    draws = rng.multinomial(pulses, probs) if ns else np.zeros((0, 10), dtype=np.int64)
    n = np.zeros((ns, 3, 2), dtype=np.int64)
    mism = np.zeros(ns, dtype=np.int64)
    for k in range(3):
        n[:, k, X] = draws[:, 3 * k]
        n[:, k, Z] = draws[:, 3 * k + 1]
        mism += draws[:, 3 * k + 2]
    m = np.zeros_like(n)
    m[:, :, Z] = rng.binomial(n[:, :, Z], err_frac)
    return SiftedCounts(pulses=pulses, n=n, m=m, mismatched=mism, x_error_prob=err_frac)


@dataclass(frozen=True)
class SiftedKey:
    """The sifted X-basis key: Alice's bits, Bob's bits, and each bit's intensity index."""

    alice: Bits
    bob: Bits
    intensity: Bits

    @property
    def errors(self) -> int:
        return int(np.count_nonzero(self.alice != self.bob))


def build_x_key(counts: SiftedCounts, rng: np.random.Generator) -> SiftedKey:
    """Materialise the X-basis sifted key in time order, each bit wrong with its slice's probability."""
    nk = counts.n[:, :, X].reshape(-1)
    total = int(nk.sum())
    labels = np.repeat(np.tile(np.arange(3, dtype=np.uint8), counts.n.shape[0]), nk)
    wrong = (rng.random(total) < np.repeat(counts.x_error_prob.reshape(-1), nk)).astype(np.uint8)
    alice = rng.integers(0, 2, total, dtype=np.uint8)
    return SiftedKey(alice=alice, bob=alice ^ wrong, intensity=labels)
