"""Pass geometry, channel loss, count sampling, estimation, schedules."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.channel import EARTH_RADIUS_M, air_mass, elevation_for_range, slant_range
from sdls_qkd.keys.qkd.estimation import decoy_counts, estimate_parameters
from sdls_qkd.keys.qkd.passes import (
    PRESETS,
    PassGeometry,
    PassSchedule,
    jinan1_2025,
    micius_2017,
    no_qkd,
)
from sdls_qkd.keys.qkd.sifting import X, Z, build_x_key, sample_counts
from sdls_qkd.keys.qkd.source import DecoySource, Detectors


def test_slant_range_geometry() -> None:
    assert float(slant_range(math.pi / 2, 500e3)) == pytest.approx(500e3)
    horizon = math.sqrt((EARTH_RADIUS_M + 500e3) ** 2 - EARTH_RADIUS_M**2)
    assert float(slant_range(0.0, 500e3)) == pytest.approx(horizon)
    for d in (600e3, 900e3, 1200e3):
        assert float(slant_range(elevation_for_range(d, 500e3), 500e3)) == pytest.approx(d)
    with pytest.raises(UsageError):
        elevation_for_range(100e3, 500e3)


def test_air_mass() -> None:
    assert float(air_mass(math.pi / 2)) == pytest.approx(1.0, abs=1e-3)
    assert float(air_mass(math.radians(30))) == pytest.approx(2.0, rel=0.01)
    assert 30 < float(air_mass(0.0)) < 40


def test_micius_pass_matches_published_geometry() -> None:
    """Liao et al. 2017: 273 s, closest ~645 km, farthest ~1200 km."""
    p = micius_2017()
    s = p.slices(1.0)
    assert s.t_s.size == 273 and s.width_s.sum() == pytest.approx(273.0)
    assert s.range_m.min() == pytest.approx(645e3, rel=0.01)
    assert s.range_m.max() == pytest.approx(1200e3, rel=0.02)
    # symmetric, culminating mid-pass at the configured elevation
    assert np.degrees(s.elevation_rad.max()) == pytest.approx(49.5, abs=0.1)
    assert np.allclose(s.elevation_rad, s.elevation_rad[::-1], atol=1e-3)
    loss = -10 * np.log10(s.transmittance)
    assert loss.argmin() in (135, 136, 137)
    assert 20 < loss.min() < 30 and 30 < loss.max() < 40
    assert np.all(np.diff(loss[:136]) < 0)  # loss falls as the satellite rises


def test_geometry_validation() -> None:
    with pytest.raises(UsageError, match="below the horizon"):
        PassGeometry(altitude_m=500e3, max_elevation_deg=20.0, duration_s=900.0)
    with pytest.raises(UsageError, match="altitude"):
        PassGeometry(altitude_m=10e3, max_elevation_deg=20.0, duration_s=100.0)
    with pytest.raises(UsageError):
        micius_2017().slices(0.0)


def test_source_and_detector_validation() -> None:
    with pytest.raises(UsageError, match="mu1 > mu2"):
        DecoySource(rep_rate_hz=1e8, mu=(0.1, 0.1, 0.0), p=(0.5, 0.25, 0.25))
    with pytest.raises(UsageError, match="sum to 1"):
        DecoySource(rep_rate_hz=1e8, mu=(0.8, 0.1, 0.0), p=(0.5, 0.5, 0.25))
    with pytest.raises(UsageError, match="q_x"):
        DecoySource(rep_rate_hz=1e8, mu=(0.8, 0.1, 0.0), p=(0.5, 0.25, 0.25), q_x=1.0)
    with pytest.raises(UsageError, match="efficiency"):
        Detectors(efficiency=1.5, dark_count_prob=0.0, misalignment=0.0)


def test_detector_model_limits() -> None:
    det = Detectors(efficiency=0.5, dark_count_prob=1e-6, misalignment=0.01)
    clicks, errors = det.click_and_error(np.array([0.0, 1e-3]), 0.8)
    assert clicks[0] == pytest.approx(2e-6) and errors[0] == pytest.approx(1e-6)  # dark: 50 % QBER
    signal = 1 - math.exp(-0.5e-3 * 0.8)
    assert errors[1] / clicks[1] == pytest.approx(
        (1e-6 + 0.01 * signal) / (signal + 2e-6), rel=1e-3
    )


def test_sampled_counts_follow_the_model() -> None:
    p = micius_2017()
    s = p.slices()
    counts = sample_counts(p, s, np.random.default_rng(1))
    assert counts.pulses.sum() == 27_300_000_000
    n_x, n_z = sum(counts.total_n(X)), sum(counts.total_n(Z))
    # bases chosen 50/50 on both sides: X and Z sifted alike, as many mismatched as sifted
    assert n_x == pytest.approx(n_z, rel=0.01)
    assert counts.mismatched.sum() == pytest.approx(n_x + n_z, rel=0.01)
    # the published pass: about 3.55 Mbit sifted at about 1.1 % QBER
    assert counts.sifted_bits == pytest.approx(3.55e6, rel=0.10)
    qber_z = sum(counts.total_m(Z)) / n_z
    assert 0.009 < qber_z < 0.013
    key = build_x_key(counts, np.random.default_rng(2))
    assert key.alice.size == n_x and key.errors / n_x == pytest.approx(qber_z, rel=0.1)
    assert np.bincount(key.intensity, minlength=3).tolist() == list(counts.total_n(X))


def test_estimation_bounds() -> None:
    p = micius_2017()
    counts = sample_counts(p, p.slices(), np.random.default_rng(3))
    obs = decoy_counts(p.source, counts.total_n(X), counts.total_n(Z), counts.total_m(Z))
    est = estimate_parameters(p.source, obs, int(counts.pulses.sum()), eps_sec=1e-10, eps_cor=1e-15)
    # single-photon error rate bound: at least the misalignment, a few % at most
    assert p.detectors.misalignment < est.single_photon_error_upper < 0.05
    assert est.single_photon_error_upper < est.phase_error_upper < 0.1
    # single-photon yield bound below the mean transmittance x detector efficiency
    eta = float(np.mean(p.slices().transmittance)) * p.detectors.efficiency
    assert 0.3 * eta < est.single_photon_yield_lower < 1.05 * eta
    assert est.bounds.length > 0


def test_no_qkd_link_down() -> None:
    p = no_qkd()
    assert not p.slices().transmittance.any()
    assert set(PRESETS) == {"micius_2017", "jinan1_2025", "no_qkd"}
    assert jinan1_2025().source.rep_rate_hz > micius_2017().source.rep_rate_hz


def test_schedule_weather_and_daylight_are_seeded() -> None:
    prof = micius_2017()
    starts = [0.5 * 3600, 2.0 * 3600, 12 * 3600, 21 * 3600, 23 * 3600]
    a = PassSchedule.build(prof, starts, seed=4, clear_sky_probability=0.5)
    b = PassSchedule.build(prof, starts, seed=4, clear_sky_probability=0.5)
    assert a == b
    assert a.passes[2].available is False and a.passes[2].reason == "daylight"
    clear = PassSchedule.build(prof, starts, seed=4)
    assert [sp.available for sp in clear.passes] == [True, True, False, True, True]
    day_ok = dataclasses.replace(prof, night_only=False)
    assert all(sp.available for sp in PassSchedule.build(day_ok, starts, seed=4).passes)
    cloudy = PassSchedule.build(prof, starts, seed=4, clear_sky_probability=0.0)
    assert not any(sp.available for sp in cloudy.passes)
    with pytest.raises(UsageError, match="overlap"):
        PassSchedule.build(prof, [0.0, 100.0], seed=1)
