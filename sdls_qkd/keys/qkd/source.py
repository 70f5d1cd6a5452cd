"""Decoy-state BB84 source and single-photon detectors (count model, no per-photon simulation).

Alice sends phase-randomised weak coherent pulses with intensity mu_k (signal, weak decoy,
vacuum-like decoy) chosen with probability p_k, in basis X with probability q_x.  Bob measures
in X with probability q_x (an active or passive choice).  With overall transmittance eta
(channel x detector efficiency), dark-count/background probability p_dc per detector per pulse,
after-pulse probability p_ap and misalignment e_mis, per pulse of intensity k (the model of
Lim et al. 2014, Sec. IV):

    D_k = 1 - (1 - 2 p_dc) exp(-eta mu_k)                (a click; double clicks get a random bit)
    R_k = D_k (1 + p_ap)                                 (with after-pulses)
    E_k = p_dc + e_mis (1 - exp(-eta mu_k)) + p_ap D_k / 2   (a click with the wrong bit)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError

__all__ = ["DecoySource", "Detectors"]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DecoySource:
    """Decoy-state BB84 transmitter: repetition rate, intensities, their probabilities, basis bias."""

    rep_rate_hz: float
    mu: tuple[float, float, float]  # signal > decoy + vacuum-decoy, decoy > vacuum-decoy >= 0
    p: tuple[float, float, float]
    q_x: float = 0.5

    def __post_init__(self) -> None:
        mu1, mu2, mu3 = self.mu
        if self.rep_rate_hz < 0:
            raise UsageError(f"repetition rate must be >= 0, got {self.rep_rate_hz}")
        if not (mu1 > mu2 + mu3 and mu2 > mu3 >= 0.0):
            raise UsageError(
                f"intensities must satisfy mu1 > mu2 + mu3, mu2 > mu3 >= 0, got {self.mu}"
            )
        if any(p <= 0 for p in self.p) or abs(sum(self.p) - 1.0) > 1e-9:
            raise UsageError(f"intensity probabilities must be > 0 and sum to 1, got {self.p}")
        if not 0.0 < self.q_x < 1.0:
            raise UsageError(f"q_x must be in (0, 1), got {self.q_x}")


@dataclass(frozen=True)
class Detectors:
    """Bob's detection: efficiency, dark/background probability per pulse, after-pulses, misalignment."""

    efficiency: float
    dark_count_prob: float
    misalignment: float
    afterpulse_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in ("efficiency", "dark_count_prob", "misalignment", "afterpulse_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {v}")

    def click_and_error(self, eta_channel: Floats, mu: float) -> tuple[Floats, Floats]:
        """Per-pulse click probability R_k and wrong-bit-click probability E_k at each transmittance."""
        eta = np.asarray(eta_channel, dtype=np.float64) * self.efficiency
        signal = 1.0 - np.exp(-eta * mu)
        d = 1.0 - (1.0 - 2.0 * self.dark_count_prob) * np.exp(-eta * mu)
        clicks = d * (1.0 + self.afterpulse_prob)
        errors = self.dark_count_prob + self.misalignment * signal + self.afterpulse_prob * d / 2.0
        return clicks, errors
