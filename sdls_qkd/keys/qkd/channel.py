"""Satellite-to-ground optical channel: elevation -> slant range -> loss.

The downlink loss is the sum (in dB) of

* geometric (diffraction) loss: the fraction of a beam of full divergence ``divergence_rad``
  that falls into the receiving telescope, (D_rx / (D_tx + R * theta))^2, at slant range R;
* atmospheric loss: the zenith extinction times the air mass (plane-parallel, 1/sin(elevation),
  with Kasten & Young's correction near the horizon);
* pointing loss (mean, from tracking jitter) and receiver optics loss, in dB.

Detector efficiency belongs to :class:`~sdls_qkd.keys.qkd.source.Detectors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError

__all__ = ["EARTH_RADIUS_M", "OpticalLink", "air_mass", "elevation_for_range", "slant_range"]

EARTH_RADIUS_M = 6_371_000.0

Floats = npt.NDArray[np.float64]


def slant_range(elevation_rad: Floats | float, altitude_m: float) -> Floats:
    """Distance from a ground station to a satellite at ``altitude_m`` seen at an elevation."""
    el = np.asarray(elevation_rad, dtype=np.float64)
    r = EARTH_RADIUS_M + altitude_m
    return np.sqrt(r**2 - (EARTH_RADIUS_M * np.cos(el)) ** 2) - EARTH_RADIUS_M * np.sin(el)


def elevation_for_range(range_m: float, altitude_m: float) -> float:
    """Elevation (rad) at which a satellite at ``altitude_m`` is ``range_m`` away."""
    r = EARTH_RADIUS_M + altitude_m
    if not altitude_m <= range_m <= math.sqrt(r**2 - EARTH_RADIUS_M**2):
        raise UsageError(f"slant range {range_m:.0f} m impossible at altitude {altitude_m:.0f} m")
    return math.asin((r**2 - EARTH_RADIUS_M**2 - range_m**2) / (2.0 * EARTH_RADIUS_M * range_m))


def air_mass(elevation_rad: Floats | float) -> Floats:
    """Relative air mass (Kasten & Young 1989); 1 at zenith, about 38 at the horizon."""
    el_deg = np.degrees(np.asarray(elevation_rad, dtype=np.float64))
    zen = 90.0 - el_deg
    return 1.0 / (
        np.cos(np.radians(zen)) + 0.50572 * np.power(np.maximum(96.07995 - zen, 1e-6), -1.6364)
    )


@dataclass(frozen=True)
class OpticalLink:
    """A downlink optical channel from a satellite telescope to a ground telescope."""

    divergence_rad: float  # full-angle beam divergence
    tx_aperture_m: float
    rx_aperture_m: float
    zenith_atmospheric_loss_db: float
    pointing_loss_db: float
    receiver_optics_loss_db: float

    def __post_init__(self) -> None:
        if self.divergence_rad <= 0 or self.rx_aperture_m <= 0 or self.tx_aperture_m < 0:
            raise UsageError("link divergence and apertures must be positive")

    def loss_db(self, range_m: Floats | float, elevation_rad: Floats | float) -> Floats:
        """Total channel loss in dB (detectors excluded) at each (range, elevation)."""
        rng_m = np.asarray(range_m, dtype=np.float64)
        spot = self.tx_aperture_m + rng_m * self.divergence_rad
        geometric = np.minimum(1.0, (self.rx_aperture_m / spot) ** 2)
        return (
            -10.0 * np.log10(geometric)
            + self.zenith_atmospheric_loss_db * air_mass(elevation_rad)
            + self.pointing_loss_db
            + self.receiver_optics_loss_db
        )

    def transmittance(self, range_m: Floats | float, elevation_rad: Floats | float) -> Floats:
        """Channel transmittance (0..1) at each (range, elevation)."""
        return np.power(10.0, -self.loss_db(range_m, elevation_rad) / 10.0)
