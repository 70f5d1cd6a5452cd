"""Finite-key bound of Lim et al., PRA 89, 022307 (2014), checked against the paper's own figures.

Numbers quoted in the paper's text (Sec. IV, about its Fig. 1, dedicated fibre, optimised
parameters, eta_Bob = 10 %, p_dc = 6e-7, p_ap = 4e-2, e_mis = 5e-3, f_EC = 1.16, mu3 = 2e-4,
eps_cor = 1e-15, eps_sec = 1e-15 * l):

* "even if we use a block size of 10^4, cryptographic keys can still be distributed over a fiber
  length of 135 km";
* "at a fiber length of 100 km, the secret key rate obtained with n_X = 10^9 is about 1.75 times
  the one based on n_X = 10^7".
"""

from __future__ import annotations

import math

import pytest

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.finite_key import (
    DecoyCounts,
    FiberSystem,
    gamma_sampling,
    lim2014_key_length,
    max_distance_km,
    nelder_mead,
    optimise_fiber_rate,
)

PAPER_MAX_KM_1E4 = 135.0
PAPER_RATIO_1E9_1E7_AT_100KM = 1.75


def test_max_distance_for_block_1e4_matches_paper() -> None:
    km = max_distance_km(1e4, hi=200.0)
    print(f"n_X = 1e4: key up to {km:.1f} km (paper: {PAPER_MAX_KM_1E4} km)")
    assert abs(km - PAPER_MAX_KM_1E4) / PAPER_MAX_KM_1E4 <= 0.10


def test_rate_ratio_1e9_over_1e7_at_100km_matches_paper() -> None:
    r7 = optimise_fiber_rate(100.0, 1e7).rate
    r9 = optimise_fiber_rate(100.0, 1e9).rate
    ratio = r9 / r7
    print(f"R(1e9)/R(1e7) at 100 km = {ratio:.3f} (paper: about {PAPER_RATIO_1E9_1E7_AT_100KM})")
    assert r7 > 0 and r9 > 0
    assert abs(ratio - PAPER_RATIO_1E9_1E7_AT_100KM) / PAPER_RATIO_1E9_1E7_AT_100KM <= 0.10


def test_small_blocks_give_no_key() -> None:
    # 10^3 detections cannot beat the finite-size terms even with no fibre at all
    assert optimise_fiber_rate(0.0, 1e3).length <= 0
    assert optimise_fiber_rate(50.0, 1e4).length > 0


def test_rate_grows_with_block_size() -> None:
    rates = [optimise_fiber_rate(50.0, n).rate for n in (1e5, 1e6, 1e8)]
    assert rates[0] < rates[1] < rates[2]


def _counts() -> DecoyCounts:
    # expected counts of 2e9 pulses per basis pair at 30 dB, e_mis 1 %, 4e-7 dark clicks per pulse
    return DecoyCounts(
        mu=(0.8, 0.1, 0.0),
        p=(0.5, 0.25, 0.25),
        n_x=(800_000, 50_000, 200),
        n_z=(800_000, 50_000, 200),
        m_z=(8_000, 500, 100),
    )


def test_every_leaked_bit_costs_one_key_bit() -> None:
    a = lim2014_key_length(_counts(), 100_000.0)
    b = lim2014_key_length(_counts(), 100_500.0)
    assert a.length > 0
    assert a.raw_length - b.raw_length == pytest.approx(500.0)


def test_equation_1_constant_terms() -> None:
    """l = s0 + s1 - s1 h(phi) - lambda - 6 log2(21/eps_sec) - log2(2/eps_cor), recomputed here."""
    res = lim2014_key_length(_counts(), 123_456.0, eps_sec=1e-10, eps_cor=1e-15)
    h = -res.phi_x * math.log2(res.phi_x) - (1 - res.phi_x) * math.log2(1 - res.phi_x)
    expect = (
        res.s_x0
        + res.s_x1
        - res.s_x1 * h
        - 123_456.0
        - 6 * math.log2(21 / 1e-10)
        - math.log2(2 / 1e-15)
    )
    assert res.raw_length == pytest.approx(expect)
    assert res.length == math.floor(expect)


def test_decoy_bounds_are_physical() -> None:
    res = lim2014_key_length(_counts(), 0.0)
    n_x = sum(_counts().n_x)
    # single-photon detections: a positive fraction of the key, below the signal share e^-mu mu
    assert 0 < res.s_x1 < n_x
    # single-photon error rate: the 1 % misalignment plus finite-size slack, well below 50 %
    assert 0.01 <= res.v_z1 / res.s_z1 < 0.05
    assert res.v_z1 / res.s_z1 < res.phi_x < 0.5


def test_more_errors_less_key() -> None:
    base = _counts()
    worse = DecoyCounts(base.mu, base.p, base.n_x, base.n_z, (16_000, 1_000, 100))
    assert lim2014_key_length(worse, 0.0).length < lim2014_key_length(base, 0.0).length


def test_gamma_sampling_shrinks_with_samples() -> None:
    g1 = gamma_sampling(1e-10, 0.02, 1e4, 1e4)
    g2 = gamma_sampling(1e-10, 0.02, 1e6, 1e6)
    assert g1 > g2 > 0
    assert gamma_sampling(1e-10, 0.02, 0.0, 1e4) == math.inf


def test_fiber_model_qber() -> None:
    """At short distance the error rate is e_mis + p_ap / 2 (after-pulses give random bits)."""
    system = FiberSystem()
    det, err = system.rates(0.0, (0.5, 0.1, 2e-4))
    qber = err[0] / det[0]
    assert qber == pytest.approx(
        (0.005 * (1 - math.exp(-0.05)) + 0.02 * det[0] / 1.04) / det[0], rel=1e-2
    )


def test_nelder_mead_finds_quadratic_minimum() -> None:
    import numpy as np

    x, fx = nelder_mead(lambda v: float(((v - np.array([1.0, -2.0])) ** 2).sum()), np.zeros(2))
    assert np.allclose(x, [1.0, -2.0], atol=1e-4) and fx < 1e-8


def test_bad_parameters_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="mu1 > mu2"):
        DecoyCounts((0.1, 0.2, 0.0), (0.5, 0.25, 0.25), (1, 1, 1), (1, 1, 1), (0, 0, 0))
    with pytest.raises(UsageError, match="sum to 1"):
        DecoyCounts((0.8, 0.1, 0.0), (0.5, 0.5, 0.25), (1, 1, 1), (1, 1, 1), (0, 0, 0))
    with pytest.raises(UsageError, match="eps_sec"):
        lim2014_key_length(_counts(), 0.0, eps_sec=0.0)
