"""Cascade error correction (Brassard & Salvail 1993), block-parallel with numpy.

Bob corrects his sifted key against Alice's by comparing parities over the public channel.
Every parity Alice discloses is one leaked bit and is counted by :class:`ParityOracle`, the only
object that reads Alice's bits; Bob's side never looks at them.

Speed comes from doing the work of one *batch* at once: all blocks of a pass whose parities
differ are bisected together, level by level (one public-channel round trip per level), with
parities read from per-block prefix-XOR rows.  Blocks of one pass are disjoint, so a batch gives
exactly what the sequential algorithm gives when it processes those blocks one after another.
After a batch, the corrected bits flip the parity of their blocks in every other pass run so
far (the *cascade effect*); passes with odd blocks are then searched again, smallest blocks
first, until every block of every pass has even error parity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.bits import as_bits

__all__ = [
    "BlockSchedule",
    "CascadeResult",
    "ParityOracle",
    "binary_entropy",
    "block_sizes",
    "cascade_correct",
]

Bits = npt.NDArray[np.uint8]
Index = npt.NDArray[np.intp]


def binary_entropy(p: float) -> float:
    """h(p) = -p log2 p - (1-p) log2 (1-p), with h(0) = h(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


class BlockSchedule(Enum):
    """How block sizes grow from pass to pass.

    ``ORIGINAL``: k1 = 0.73/QBER, then doubled each pass (Brassard & Salvail 1993).
    ``OPTIMISED``: k1 = 2^ceil(log2(1/QBER)), k2 = 4 k1, later passes n/2 ("option 7" of
    Martinez-Mateo, Pacher, Peev, Ciurana, Martin 2015): fewer parities for the same passes.
    """

    ORIGINAL = "original"
    OPTIMISED = "optimised"


def block_sizes(n: int, qber: float, passes: int, schedule: BlockSchedule) -> tuple[int, ...]:
    """Block size of each pass for an ``n``-bit key at the expected ``qber``."""
    if n < 2:
        raise UsageError(f"Cascade needs at least 2 bits, got {n}")
    if passes < 1:
        raise UsageError(f"Cascade needs at least 1 pass, got {passes}")
    q = min(max(qber, 1e-6), 0.25)
    half = max(2, (n + 1) // 2)
    sizes: list[int] = []
    if schedule is BlockSchedule.ORIGINAL:
        k = max(2, math.ceil(0.73 / q))
        for _ in range(passes):
            sizes.append(min(k, half))
            k *= 2
    else:
        k1 = 2 ** max(1, math.ceil(math.log2(1.0 / q)))
        for i in range(passes):
            k = k1 if i == 0 else 4 * k1 if i == 1 else half
            sizes.append(min(k, half))
    return tuple(sizes)


class ParityOracle:
    """Alice's side of Cascade: answers parity queries and counts every disclosed bit."""

    def __init__(self, alice: Bits) -> None:
        self._alice = alice
        #: parity bits disclosed so far
        self.leaked_bits = 0
        #: public-channel round trips (one per batch of queries)
        self.round_trips = 0

    def block_parities(self, perm: Index, k: int) -> Bits:
        """Parities of consecutive ``k``-bit blocks of Alice's key in ``perm`` order."""
        n = perm.size
        nb = -(-n // k)
        padded = np.zeros(nb * k, dtype=np.uint8)
        padded[:n] = self._alice[perm]
        par = np.bitwise_xor.reduce(padded.reshape(nb, k), axis=1).astype(np.uint8)
        self.leaked_bits += nb
        self.round_trips += 1
        return par

    def prefix_rows(self, rows: Index) -> Bits:
        """Prefix-XOR rows over Alice's bits at ``rows`` (gathered positions; answers later)."""
        return _prefix_rows(self._alice, rows)

    def disclose(self, count: int) -> None:
        """Account for ``count`` sub-block parities sent in one round trip."""
        self.leaked_bits += count
        self.round_trips += 1


def _prefix_rows(bits: Bits, rows: Index) -> Bits:
    """Row-wise prefix XOR with a leading zero column: out[r, j] = XOR(bits[rows[r, :j]])."""
    out = np.zeros((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    np.bitwise_xor.accumulate(bits[rows], axis=1, out=out[:, 1:])
    return out


@dataclass(frozen=True)
class CascadeResult:
    """Outcome of Cascade on one block: Bob's corrected key and what it cost."""

    corrected: Bits
    leaked_bits: int
    round_trips: int
    block_sizes: tuple[int, ...]
    n: int

    def efficiency(self, qber: float) -> float:
        """f = leaked / (n h(qber)): 1.0 is the Shannon limit."""
        h = binary_entropy(qber)
        return math.inf if h == 0.0 else self.leaked_bits / (self.n * h)


@dataclass
class _Pass:
    perm: Index  # position -> key index
    pos: Index  # key index -> position
    k: int
    odd: Bits  # per-block error parity (Alice XOR Bob) as Bob knows it


def _bisect(oracle: ParityOracle, bob: Bits, ps: _Pass, blocks: Index) -> Index:
    """Binary search in all ``blocks`` of one pass at once; returns the key indices found wrong."""
    n = ps.perm.size
    k = ps.k
    starts = blocks * k
    lengths = np.minimum(starts + k, n) - starts
    cols = np.arange(k, dtype=np.intp)
    positions = np.minimum(starts[:, None] + cols[None, :], n - 1)
    rows = ps.perm[positions]
    pa = oracle.prefix_rows(rows)
    pb = _prefix_rows(bob, rows)
    r = np.arange(blocks.size)
    lo = np.zeros(blocks.size, dtype=np.intp)
    hi = lengths.astype(np.intp)
    while True:
        active = (hi - lo) > 1
        count = int(active.sum())
        if count == 0:
            break
        mid = (lo + hi) // 2
        # Alice discloses parity of [lo, mid) for each active search: one bit each.
        oracle.disclose(count)
        left_odd = (pa[r, mid] ^ pa[r, lo]) != (pb[r, mid] ^ pb[r, lo])
        go_left = active & left_odd
        go_right = active & ~left_odd
        hi = np.where(go_left, mid, hi)
        lo = np.where(go_right, mid, lo)
    return rows[r, lo]


def cascade_correct(
    alice: Bits,
    bob: Bits,
    qber: float,
    rng: np.random.Generator,
    *,
    passes: int = 4,
    schedule: BlockSchedule = BlockSchedule.ORIGINAL,
) -> CascadeResult:
    """Correct ``bob`` towards ``alice`` with Cascade; ``qber`` is the expected error rate.

    ``rng`` draws the public random permutations of passes 2 and later.  The leaked count covers
    every block parity and every bisection parity Alice disclosed.
    """
    a = as_bits("Alice's key", alice)
    b = as_bits("Bob's key", bob).copy()
    if a.shape != b.shape:
        raise UsageError(f"Alice and Bob keys must be equal length, got {a.size} and {b.size} bits")
    n = int(a.size)
    sizes = block_sizes(n, qber, passes, schedule)
    oracle = ParityOracle(a)
    done: list[_Pass] = []
    for i, k in enumerate(sizes):
        perm = np.arange(n, dtype=np.intp) if i == 0 else rng.permutation(n).astype(np.intp)
        pos = np.empty(n, dtype=np.intp)
        pos[perm] = np.arange(n, dtype=np.intp)
        nb = -(-n // k)
        pad = np.zeros(nb * k, dtype=np.uint8)
        pad[:n] = b[perm]
        bob_par = np.bitwise_xor.reduce(pad.reshape(nb, k), axis=1).astype(np.uint8)
        ps = _Pass(perm=perm, pos=pos, k=k, odd=oracle.block_parities(perm, k) ^ bob_par)
        done.append(ps)
        while True:
            target = next((p for p in done if p.odd.any()), None)
            if target is None:
                break
            wrong = _bisect(oracle, b, target, np.flatnonzero(target.odd))
            b[wrong] ^= 1
            for p in done:
                hits = np.bincount(p.pos[wrong] // p.k, minlength=p.odd.size)
                p.odd ^= (hits & 1).astype(np.uint8)
    return CascadeResult(
        corrected=b,
        leaked_bits=oracle.leaked_bits,
        round_trips=oracle.round_trips,
        block_sizes=sizes,
        n=n,
    )
