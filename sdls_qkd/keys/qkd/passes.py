"""Satellite pass profiles, presets (Micius 2017, Jinan-1 2025, no QKD) and a pass schedule.

Pass geometry: a circular orbit over a non-rotating Earth (good to a few seconds for a 5-minute
LEO pass).  With orbital rate omega and the central angle gamma_min between station and
satellite at closest approach (set by the maximum elevation), the central angle at time tau
from culmination follows cos gamma = cos gamma_min cos(omega tau); elevation and slant range
follow from the triangle Earth centre - station - satellite.

Presets (facts from the papers; parameters marked "assumed" were chosen so that the emulated
pass lands on the published totals):

* ``micius_2017`` - Liao et al., Nature 549, 43 (2017): 100 MHz decoy BB84 at 850 nm, intensities
  0.8 / 0.1 / 0 with probabilities 0.5 / 0.25 / 0.25, ~500 km orbit, ~645 km closest range, a
  273 s QKD window at Xinglong (1 m telescope); published ~3.55 Mbit sifted at ~1.1 % QBER and
  ~300 kbit final key.  Divergence, pointing, optics and detector figures: assumed.
* ``jinan1_2025`` - Li et al., Nature 640, 47 (2025): ~23 kg microsatellite, ~500 km orbit,
  portable ground stations, 0.59-1.07 Mbit secure key per pass.  Repetition rate, intensities,
  apertures: assumed (a higher-rate source into a small telescope).
* ``no_qkd`` - a pass of the same length that delivers nothing (link down): zero key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sdls_qkd.errors import UsageError
from sdls_qkd.keys.qkd.channel import EARTH_RADIUS_M, OpticalLink
from sdls_qkd.keys.qkd.source import DecoySource, Detectors

__all__ = [
    "PRESETS",
    "PassGeometry",
    "PassProfile",
    "PassSchedule",
    "ScheduledPass",
    "TimeSlices",
    "jinan1_2025",
    "micius_2017",
    "no_qkd",
]

GM_EARTH = 3.986004418e14  # m^3 / s^2
DAY_S = 86_400.0

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TimeSlices:
    """The pass cut into slices: start time, width, elevation, slant range, transmittance."""

    t_s: Floats
    width_s: Floats
    elevation_rad: Floats
    range_m: Floats
    transmittance: Floats


@dataclass(frozen=True)
class PassGeometry:
    """A circular-orbit pass: altitude, culmination elevation, usable (tracked) duration."""

    altitude_m: float
    max_elevation_deg: float
    duration_s: float

    def __post_init__(self) -> None:
        if not 100e3 <= self.altitude_m <= 40_000e3:
            raise UsageError(f"altitude must be 100 km..40000 km, got {self.altitude_m:.0f} m")
        if not 0.0 < self.max_elevation_deg <= 90.0:
            raise UsageError(f"max elevation must be in (0, 90] deg, got {self.max_elevation_deg}")
        if self.duration_s < 0.0:
            raise UsageError(f"duration must be >= 0 s, got {self.duration_s}")
        if self.min_elevation_deg() <= 0.0:
            raise UsageError(
                f"a {self.duration_s:.0f} s pass culminating at {self.max_elevation_deg} deg "
                "would go below the horizon"
            )

    @property
    def _r(self) -> float:
        return EARTH_RADIUS_M + self.altitude_m

    @property
    def orbital_rate(self) -> float:
        """Mean motion (rad/s) of the circular orbit."""
        return math.sqrt(GM_EARTH / self._r**3)

    def elevation(self, t_s: Floats | float) -> Floats:
        """Elevation (rad) at time ``t_s`` from the start of the usable window."""
        el_max = math.radians(self.max_elevation_deg)
        gamma_min = math.acos(EARTH_RADIUS_M * math.cos(el_max) / self._r) - el_max
        tau = np.asarray(t_s, dtype=np.float64) - self.duration_s / 2.0
        cos_g = math.cos(gamma_min) * np.cos(self.orbital_rate * tau)
        sin_g = np.sqrt(np.maximum(0.0, 1.0 - cos_g**2))
        return np.arctan2(cos_g - EARTH_RADIUS_M / self._r, sin_g)

    def min_elevation_deg(self) -> float:
        """Elevation at the start and end of the usable window."""
        return float(np.degrees(self.elevation(0.0)))


@dataclass(frozen=True)
class PassProfile:
    """Everything that decides how much key one pass yields."""

    name: str
    geometry: PassGeometry
    link: OpticalLink
    source: DecoySource
    detectors: Detectors
    night_only: bool = True
    link_up: bool = True

    def slices(self, slice_s: float = 1.0) -> TimeSlices:
        """Cut the pass into slices of ``slice_s`` seconds (the last one may be shorter)."""
        if slice_s <= 0.0:
            raise UsageError(f"slice length must be positive, got {slice_s}")
        dur = self.geometry.duration_s
        count = max(0, math.ceil(dur / slice_s - 1e-9))
        t0 = np.arange(count, dtype=np.float64) * slice_s
        width = np.minimum(slice_s, dur - t0)
        mid = t0 + width / 2.0
        el = self.geometry.elevation(mid)
        r = EARTH_RADIUS_M + self.geometry.altitude_m
        rng_m = np.sqrt(r**2 - (EARTH_RADIUS_M * np.cos(el)) ** 2) - EARTH_RADIUS_M * np.sin(el)
        eta = self.link.transmittance(rng_m, el) if self.link_up else np.zeros_like(el)
        return TimeSlices(t0, width, el, rng_m, eta)


def micius_2017() -> PassProfile:
    """Micius to Xinglong, Liao et al. 2017 (see the module docstring)."""
    return PassProfile(
        name="micius_2017",
        # 645 km closest range at 500 km altitude is a 49.5 deg culmination.
        geometry=PassGeometry(altitude_m=500e3, max_elevation_deg=49.5, duration_s=273.0),
        link=OpticalLink(
            divergence_rad=10e-6,
            tx_aperture_m=0.3,
            rx_aperture_m=1.0,
            zenith_atmospheric_loss_db=3.0,
            pointing_loss_db=2.8,
            receiver_optics_loss_db=3.0,
        ),
        source=DecoySource(rep_rate_hz=100e6, mu=(0.8, 0.1, 0.0), p=(0.5, 0.25, 0.25), q_x=0.5),
        detectors=Detectors(efficiency=0.5, dark_count_prob=2e-7, misalignment=0.0102),
    )


def jinan1_2025() -> PassProfile:
    """Jinan-1 microsatellite to a portable ground station, Li et al. 2025 (see module docstring)."""
    return PassProfile(
        name="jinan1_2025",
        geometry=PassGeometry(altitude_m=500e3, max_elevation_deg=60.0, duration_s=300.0),
        link=OpticalLink(
            divergence_rad=14.5e-6,
            tx_aperture_m=0.15,
            rx_aperture_m=0.6,
            zenith_atmospheric_loss_db=3.0,
            pointing_loss_db=2.0,
            receiver_optics_loss_db=3.0,
        ),
        source=DecoySource(rep_rate_hz=625e6, mu=(0.8, 0.1, 0.0), p=(0.5, 0.25, 0.25), q_x=0.5),
        detectors=Detectors(efficiency=0.5, dark_count_prob=2e-7, misalignment=0.01),
    )


def no_qkd() -> PassProfile:
    """A Micius-like pass with the quantum link down: the schedule runs, no key comes."""
    base = micius_2017()
    return PassProfile(
        name="no_qkd",
        geometry=base.geometry,
        link=base.link,
        source=base.source,
        detectors=base.detectors,
        link_up=False,
    )


PRESETS = {"micius_2017": micius_2017, "jinan1_2025": jinan1_2025, "no_qkd": no_qkd}


@dataclass(frozen=True)
class ScheduledPass:
    """One pass in a schedule: when it starts, its profile, its seed, and whether it can run."""

    start_s: float
    profile: PassProfile
    seed: int
    available: bool = True
    reason: str = ""

    @property
    def end_s(self) -> float:
        return self.start_s + self.profile.geometry.duration_s


def _is_night(t_s: float, night: tuple[float, float]) -> bool:
    tod = t_s % DAY_S
    start, end = night
    return start <= tod or tod < end if start > end else start <= tod < end


@dataclass(frozen=True)
class PassSchedule:
    """Passes sorted by start time (they must not overlap: one station, one telescope)."""

    passes: tuple[ScheduledPass, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for a, b in zip(self.passes, self.passes[1:], strict=False):
            if b.start_s < a.end_s:
                raise UsageError(
                    f"passes overlap: one ends at {a.end_s:.0f} s, next starts at {b.start_s:.0f} s"
                )

    @classmethod
    def build(
        cls,
        profile: PassProfile,
        start_times_s: Sequence[float],
        *,
        seed: int,
        clear_sky_probability: float = 1.0,
        night: tuple[float, float] = (19 * 3600.0, 5 * 3600.0),
    ) -> PassSchedule:
        """A schedule of ``profile`` passes; cloud and daylight make some unavailable.

        The weather of each pass is drawn from ``seed`` (deterministic); a ``night_only`` profile
        is unavailable outside ``night`` (seconds of day, may wrap past midnight).
        """
        if not 0.0 <= clear_sky_probability <= 1.0:
            raise UsageError(
                f"clear-sky probability must be in [0, 1], got {clear_sky_probability}"
            )
        rng = np.random.default_rng(seed)
        out = []
        for i, start in enumerate(sorted(start_times_s)):
            clear = bool(rng.random() < clear_sky_probability)
            dark = _is_night(start, night) and _is_night(start + profile.geometry.duration_s, night)
            reason = "" if clear else "cloud"
            if profile.night_only and not dark:
                reason = "daylight"
            out.append(
                ScheduledPass(
                    start_s=float(start),
                    profile=profile,
                    seed=seed * 1_000_003 + i,
                    available=reason == "",
                    reason=reason,
                )
            )
        return cls(tuple(out))
