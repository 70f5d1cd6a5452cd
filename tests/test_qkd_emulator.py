"""End-to-end pass emulation: presets against published totals, correctness, determinism."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.cascade import binary_entropy
from sdls_qkd.keys.qkd.emulator import PassOutput, PostProcessingConfig, emulate_pass
from sdls_qkd.keys.qkd.passes import PassProfile, jinan1_2025, micius_2017, no_qkd

MICIUS_SIFTED = 3_551_136  # Liao et al. 2017, the 273 s pass
MICIUS_FINAL = 300_939
JINAN1_RANGE = (0.59e6, 1.07e6)  # Li et al. 2025, secure key per pass


def small_micius(rate_hz: float = 10e6) -> PassProfile:
    """Micius with a 10x slower source: same physics, a tenth of the bits (fast tests)."""
    p = micius_2017()
    return dataclasses.replace(
        p, name="micius_small", source=dataclasses.replace(p.source, rep_rate_hz=rate_hz)
    )


@pytest.fixture(scope="module")
def micius() -> PassOutput:
    return emulate_pass(micius_2017(), seed=2017)


def test_micius_pass_reproduces_published_totals(micius: PassOutput) -> None:
    r = micius.result
    print(
        f"\nMicius: sifted {r.sifted_bits}, raw {r.raw_key_bits}, QBER {r.qber_x:.4f}, f {r.ec_efficiency:.3f}, "
        f"leaked {r.ec_leaked_bits}, l {r.secret_bits}, auth {r.auth_bits}, final {r.final_key_bits} "
        f"(published {MICIUS_FINAL})"
    )
    assert r.aborted is None
    assert r.sifted_bits == pytest.approx(MICIUS_SIFTED, rel=0.05)
    assert 0.009 < r.qber_x < 0.013
    assert MICIUS_FINAL / 2 <= r.final_key_bits <= MICIUS_FINAL * 2
    assert micius.key.size == r.final_key_bits


def test_micius_post_processing_is_real(micius: PassOutput) -> None:
    r = micius.result
    assert r.residual_error_bits == 0
    assert r.frames >= 6 and r.frames_discarded == 0
    # Cascade leak measured on the real arrays, within the target efficiency
    assert 1.0 < r.ec_efficiency <= 1.2
    assert r.ec_leaked_bits == pytest.approx(
        r.ec_efficiency * r.raw_key_bits * binary_entropy(r.qber_x)
    )
    # tags sized for eps_cor = 1e-15 over all frames together
    assert r.verification_bits == r.frames * math.ceil(math.log2(r.frames / 1e-15))
    # authentication consumed key: delivered = l - tag cost
    assert r.auth_bits == 8 * 64
    assert r.final_key_bits == r.secret_bits - r.auth_bits
    # the key looks uniformly random
    assert abs(float(micius.key.mean()) - 0.5) < 0.005


def test_micius_key_length_uses_measured_leak(micius: PassOutput) -> None:
    """Eq. (1) of Lim et al. with lambda_EC = the parities Cascade disclosed + the tag bits."""
    r = micius.result
    fk = r.finite_key
    assert fk is not None and r.secret_bits == fk.length > 0
    expect = (
        fk.s_x0
        + fk.s_x1 * (1.0 - binary_entropy(fk.phi_x))
        - r.ec_leaked_bits
        - r.verification_bits
        - 6 * math.log2(21 / 1e-10)
        - math.log2(2 / 1e-15)
    )
    assert fk.raw_length == pytest.approx(expect)


def test_jinan1_pass_in_published_range() -> None:
    r = emulate_pass(jinan1_2025(), seed=2025).result
    print(
        f"\nJinan-1: sifted {r.sifted_bits}, QBER {r.qber_x:.4f}, f {r.ec_efficiency:.3f}, final {r.final_key_bits}"
    )
    assert JINAN1_RANGE[0] <= r.final_key_bits <= JINAN1_RANGE[1]
    assert r.residual_error_bits == 0 and r.ec_efficiency <= 1.2


def test_no_qkd_gives_zero_key() -> None:
    out = emulate_pass(no_qkd(), seed=1)
    assert out.result.final_key_bits == 0 and out.key.size == 0
    assert out.result.aborted is not None
    assert out.result.qber_z == pytest.approx(0.5, abs=0.05)  # only dark counts


def test_deterministic_per_seed() -> None:
    a = emulate_pass(small_micius(), seed=5)
    b = emulate_pass(small_micius(), seed=5)
    c = emulate_pass(small_micius(), seed=6)
    assert a.result.final_key_bits > 0
    assert np.array_equal(a.key, b.key)
    assert dataclasses.replace(a.result, timings_s={}) == dataclasses.replace(
        b.result, timings_s={}
    )
    assert not np.array_equal(a.key[:1000], c.key[:1000])


def test_per_message_authentication_costs_more() -> None:
    cheap = emulate_pass(small_micius(), seed=5).result
    naive = emulate_pass(
        small_micius(), seed=5, config=PostProcessingConfig(auth_per_message=True)
    ).result
    assert naive.secret_bits == cheap.secret_bits
    assert naive.auth_bits == (2 * 3 + 2 * naive.ec_round_trips) * 64
    assert (
        naive.final_key_bits == max(0, cheap.secret_bits - naive.auth_bits) < cheap.final_key_bits
    )


def test_small_source_falls_to_zero() -> None:
    r = emulate_pass(small_micius(rate_hz=0.2e6), seed=1).result
    assert r.final_key_bits == 0 and r.aborted is not None


def test_config_validation() -> None:
    with pytest.raises(UsageError):
        PostProcessingConfig(frame_bits=10)
    with pytest.raises(UsageError):
        PostProcessingConfig(auth_tag_bits=0)
