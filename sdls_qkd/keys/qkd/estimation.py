"""Parameter estimation: QBERs and decoy-state bounds on single-photon yield and error rate.

The Z basis is disclosed in full; with the vacuum(-like) and weak decoys, Lim et al. 2014
Eqs. (2)-(4) bound the number of single-photon detections s_Z1 from below and their errors v_Z1
from above.  The single-photon yield Y1 >= s_Z1 / (tau_1 N_ZZ) and error rate e1 <= v_Z1 / s_Z1
follow, and Eq. (5) turns e1 into the bound on the X-basis phase error rate phi_X.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdls_qkd.keys.qkd.cascade import binary_entropy
from sdls_qkd.keys.qkd.finite_key import DecoyCounts, FiniteKeyResult, lim2014_key_length
from sdls_qkd.keys.qkd.source import DecoySource

__all__ = ["ParameterEstimate", "decoy_counts", "estimate_parameters"]


def decoy_counts(
    source: DecoySource,
    n_x: tuple[float, float, float],
    n_z: tuple[float, float, float],
    m_z: tuple[float, float, float],
) -> DecoyCounts:
    """Bundle observed counts with the source's intensities and probabilities."""
    return DecoyCounts(mu=source.mu, p=source.p, n_x=n_x, n_z=n_z, m_z=m_z)


@dataclass(frozen=True)
class ParameterEstimate:
    """What Alice and Bob know before error correction."""

    counts: DecoyCounts
    qber_z: float  # all intensities
    qber_z_signal: float  # signal intensity only
    single_photon_yield_lower: float
    single_photon_error_upper: float
    phase_error_upper: float
    bounds: FiniteKeyResult  # with lambda_EC = n_X h(qber_z): the Shannon-limit pre-check


def _tau1(source: DecoySource) -> float:
    return sum(p * math.exp(-mu) * mu for mu, p in zip(source.mu, source.p, strict=True))


def estimate_parameters(
    source: DecoySource,
    counts: DecoyCounts,
    pulses_sent: int,
    *,
    eps_sec: float,
    eps_cor: float,
) -> ParameterEstimate:
    """QBERs, decoy-state bounds, and a pre-check of the key length at the Shannon limit."""
    n_z = sum(counts.n_z)
    n_x = sum(counts.n_x)
    qber_z = sum(counts.m_z) / n_z if n_z else 0.5
    qber_sig = counts.m_z[0] / counts.n_z[0] if counts.n_z[0] else 0.5
    shannon = n_x * binary_entropy(min(qber_z, 0.5))
    bounds = lim2014_key_length(counts, shannon, eps_sec=eps_sec, eps_cor=eps_cor)
    zz_pulses = pulses_sent * (1.0 - source.q_x) ** 2
    tau1 = _tau1(source)
    y1 = bounds.s_z1 / (tau1 * zz_pulses) if zz_pulses > 0 and tau1 > 0 else 0.0
    e1 = min(0.5, bounds.v_z1 / bounds.s_z1) if bounds.s_z1 > 0 else 0.5
    return ParameterEstimate(
        counts=counts,
        qber_z=qber_z,
        qber_z_signal=qber_sig,
        single_photon_yield_lower=y1,
        single_photon_error_upper=e1,
        phase_error_upper=bounds.phi_x,
        bounds=bounds,
    )
