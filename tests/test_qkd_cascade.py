"""Cascade: leakage-counted, block-parallel error correction, checked by error verification."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.cascade import (
    BlockSchedule,
    ParityOracle,
    binary_entropy,
    block_sizes,
    cascade_correct,
)
from sdls_qkd.keys.qkd.verification import tag_bits_for, verify_keys

N = 100_000
SEEDS = range(20)


def _pair(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Alice's random key and Bob's copy with exactly round(qber * n) errors at random places."""
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    err = np.zeros(n, dtype=np.uint8)
    err[rng.choice(n, round(qber * n), replace=False)] = 1
    return alice, alice ^ err, rng


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.05, 0.11])
def test_cascade_20_seeds_zero_residual_after_verification(qber: float) -> None:
    efficiencies = []
    discarded = 0
    for seed in SEEDS:
        alice, bob, rng = _pair(N, qber, seed)
        res = cascade_correct(alice, bob, qber, rng)
        assert res.n == N
        efficiencies.append(res.efficiency(qber))
        ver = verify_keys(alice, res.corrected, rng, eps_cor=1e-15)
        residual = int(np.count_nonzero(res.corrected != alice))
        if ver.passed:
            # a block that passes verification is passed on: it must be error-free
            assert residual == 0
        else:
            discarded += 1
            assert residual > 0  # never a false alarm: identical keys always pass
    mean_f = float(np.mean(efficiencies))
    print(
        f"QBER {qber:.2%}: mean f = {mean_f:.4f}, max f = {max(efficiencies):.4f}, "
        f"discarded {discarded}/20"
    )
    # f can never beat the Shannon limit: the leak is a real count of disclosed parities
    assert min(efficiencies) > 1.0
    if qber <= 0.05:
        assert mean_f <= 1.2
    else:
        assert mean_f <= 1.3
    # 4 passes of the original schedule leave nothing to discard at these sizes
    assert discarded == 0


def test_leak_counts_every_disclosed_parity() -> None:
    """Identical keys: only the top-level block parities are disclosed (no bisection)."""
    rng = np.random.default_rng(7)
    alice = rng.integers(0, 2, 10_000, dtype=np.uint8)
    res = cascade_correct(alice, alice.copy(), 0.02, rng)
    expected = sum(math.ceil(10_000 / k) for k in res.block_sizes)
    assert res.leaked_bits == expected
    assert res.round_trips == len(res.block_sizes)


def test_single_error_costs_block_parities_plus_log2_bisection() -> None:
    rng = np.random.default_rng(3)
    n = 4096
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice.copy()
    bob[1234] ^= 1
    res = cascade_correct(alice, bob, 0.01, rng, passes=1)
    (k,) = res.block_sizes
    assert np.array_equal(res.corrected, alice)
    assert res.leaked_bits == math.ceil(n / k) + math.ceil(math.log2(k))


def test_oracle_counts_disclosures() -> None:
    oracle = ParityOracle(np.array([1, 0, 1, 1, 0], dtype=np.uint8))
    par = oracle.block_parities(np.arange(5), 2)
    assert par.tolist() == [1, 0, 0]
    assert oracle.leaked_bits == 3
    oracle.disclose(4)
    assert oracle.leaked_bits == 7 and oracle.round_trips == 2


def test_block_sizes_original_schedule() -> None:
    assert block_sizes(100_000, 0.01, 4, BlockSchedule.ORIGINAL) == (73, 146, 292, 584)
    assert block_sizes(100_000, 0.05, 4, BlockSchedule.ORIGINAL) == (15, 30, 60, 120)
    # capped at half the key
    assert block_sizes(100, 0.001, 2, BlockSchedule.ORIGINAL) == (50, 50)
    assert block_sizes(1 << 16, 0.02, 5, BlockSchedule.OPTIMISED) == (64, 256, 32768, 32768, 32768)


def test_optimised_schedule_corrects_with_enough_passes() -> None:
    alice, bob, rng = _pair(20_000, 0.03, 11)
    res = cascade_correct(alice, bob, 0.03, rng, passes=8, schedule=BlockSchedule.OPTIMISED)
    assert res.efficiency(0.03) < 1.25


def test_binary_entropy() -> None:
    assert binary_entropy(0.0) == 0.0 and binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-3)


def test_bad_input_is_usage_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(UsageError, match="equal length"):
        cascade_correct(np.zeros(10, np.uint8), np.zeros(11, np.uint8), 0.01, rng)
    with pytest.raises(UsageError, match="at least 2 bits"):
        cascade_correct(np.zeros(1, np.uint8), np.zeros(1, np.uint8), 0.01, rng)
    with pytest.raises(UsageError, match="at least 1 pass"):
        block_sizes(100, 0.01, 0, BlockSchedule.ORIGINAL)


def test_verification_rejects_any_difference() -> None:
    rng = np.random.default_rng(5)
    assert tag_bits_for(1e-15) == 50
    for trial in range(50):
        a = rng.integers(0, 2, 5000, dtype=np.uint8)
        b = a.copy()
        flips = rng.choice(5000, 1 + trial % 4, replace=False)
        b[flips] ^= 1
        assert not verify_keys(a, b, rng, 1e-15).passed
        assert verify_keys(a, a.copy(), rng, 1e-15).passed
    with pytest.raises(UsageError):
        tag_bits_for(0.0)
    with pytest.raises(UsageError):
        verify_keys(np.zeros(3, np.uint8), np.zeros(4, np.uint8), rng, 1e-15)


def test_verification_discards_what_a_weak_cascade_leaves() -> None:
    """One pass at a too-large block size leaves even error counts; verification catches them."""
    caught = 0
    for seed in range(10):
        alice, bob, rng = _pair(20_000, 0.05, 100 + seed)
        res = cascade_correct(alice, bob, 0.005, rng, passes=1)
        residual = int(np.count_nonzero(res.corrected != alice))
        passed = verify_keys(alice, res.corrected, rng, 1e-15).passed
        assert passed == (residual == 0)
        caught += residual > 0
    assert caught > 0


@pytest.mark.parametrize(
    "bad",
    [
        np.array([0, 1, 2], dtype=np.uint8),
        np.array([0.5, 1.0, 0.0]),
        np.zeros((2, 2), dtype=np.uint8),
        np.array([-1, 0, 1]),
    ],
)
def test_non_bit_input_is_usage_error(bad: np.ndarray) -> None:
    from sdls_qkd.keys.qkd.amplification import toeplitz_hash

    rng = np.random.default_rng(0)
    good = np.zeros(bad.size, dtype=np.uint8)
    with pytest.raises(UsageError, match="bit"):
        cascade_correct(bad, good.reshape(bad.shape), 0.01, rng)
    with pytest.raises(UsageError, match="bit"):
        verify_keys(good.reshape(-1), bad, rng, 1e-15)
    with pytest.raises(UsageError, match="bit"):
        toeplitz_hash(bad, np.zeros(bad.size, dtype=np.uint8), 1)
