"""The simulated hall's sun: position, clear-sky irradiance and PV power from pvlib, plus clouds.

Angles in degrees; azimuths are measured from north, clockwise (90 = east,
180 = south), as in the fleet file's ``PVSpec``.  Irradiance in W/m², power
in W, times timezone-aware UTC.

The clear sky is the forecaster's own (:mod:`optimizer.sun`, pvlib: SPA
sun position, Ineichen–Perez clear sky, isotropic transposition, PVWatts),
so a clear simulated day is exactly what the forecaster expects.

Where the simulator's "true" sky deliberately differs from what the
forecaster assumes: clouds.  The simulator multiplies the clear sky by a
seeded AR(1) weather factor per minute (:class:`CloudSeries`); the
forecaster knows only the weather factor it is given per slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pvlib

from optimizer.sun import ALTITUDE_M, clear_sky_poa_at, pv_ac_w
from optimizer.sun import PV_LOSSES as DEFAULT_PV_LOSSES


@dataclass(frozen=True, slots=True)
class SolarPosition:
    """Where the sun is: elevation_deg [°] (negative at night), zenith_deg [°], azimuth_deg [°, from north].

    Geometric angles (no refraction); the clear-sky model uses SPA's refracted
    (apparent) zenith, as pvlib's ``Location.get_clearsky`` does.
    """

    elevation_deg: float
    zenith_deg: float
    azimuth_deg: float


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"a timezone-aware time is required, got naive {t.isoformat()}")
    return t.astimezone(timezone.utc)


def solar_position(t: datetime, lat_deg: float, lon_deg: float) -> SolarPosition:
    """Sun elevation, zenith and azimuth [°] seen from lat/lon [°] at aware time ``t`` (NREL SPA via pvlib).

    A pvlib call per time (~ms): for inspection and tests; the clear sky uses the day tables.
    """
    site = pvlib.location.Location(lat_deg, lon_deg, altitude=ALTITUDE_M)
    sun = site.get_solarposition(pd.DatetimeIndex([_utc(t)])).iloc[0]
    return SolarPosition(elevation_deg=float(sun["elevation"]), zenith_deg=float(sun["zenith"]),
                         azimuth_deg=float(sun["azimuth"]))


def clear_sky_poa_w_m2(t: datetime, lat_deg: float, lon_deg: float, tilt_deg: float,
                       surface_azimuth_deg: float) -> float:
    """Clear-sky plane-of-array irradiance [W/m²] for a panel at lat/lon [°] and aware time ``t``; 0 at night.

    tilt_deg [°]; surface_azimuth_deg [°, from north, 180 = south].  The
    shared sun model (module docstring), from the day tables.
    """
    return clear_sky_poa_at(_utc(t).timestamp(), lat_deg, lon_deg, tilt_deg, surface_azimuth_deg)


def pv_power_w(capacity_w: float, poa_w_m2: float, losses: float = DEFAULT_PV_LOSSES,
               weather_factor: float = 1.0) -> float:
    """PV AC power [W] in [0, capacity_w]: pvwatts_dc(POA [W/m²] × weather_factor) × (1 − losses).

    capacity_w [W DC peak]; losses [0..1]; weather_factor [0..1] (1 = clear
    sky).  The cell is at the 25 °C reference, so this is capacity_w ×
    POA/1000 × weather_factor × (1 − losses).
    """
    return float(pv_ac_w(poa_w_m2 * weather_factor, capacity_w, losses))


class CloudSeries:
    """Seeded, slowly varying weather factor [0..1] (1 = clear sky) for a site.

    Cloudiness c is an AR(1) process sampled once a minute,
    c[k+1] = μ + φ·(c[k] − μ) + σ·ε, around μ = ``cloud_factor`` (the mean
    share of clear-sky irradiance lost to clouds), with a correlation time of
    ``correlation_min`` minutes, clipped to [0, 1]; the weather factor is
    1 − c, linearly interpolated between minutes.  cloud_factor 0 is always
    clear, 1 always dark.

    The value at a time depends only on (seed, cloud_factor, time), never on
    which times were asked before: the process is generated per local solar
    day, seeded with (seed, day number), so simulations are reproducible
    whatever their step sizes.  Each day's block starts an hour before solar
    midnight and the last hour of a day fades into the next day's block, so
    the series has no jump at the seams.
    """

    def __init__(self, seed: int, cloud_factor: float, lon_deg: float = 135.0,
                 correlation_min: float = 30.0, cache_days: int = 4):
        if not 0.0 <= cloud_factor <= 1.0:
            raise ValueError(f"cloud_factor must be in [0, 1], got {cloud_factor}")
        self.seed = int(seed)
        self.cloud_factor = float(cloud_factor)
        self._offset = timedelta(hours=lon_deg / 15.0)  # UTC → local mean solar time
        self._phi = math.exp(-1.0 / correlation_min)
        # Spread shrinks to zero at both ends so 0 stays clear and 1 stays dark.
        self._spread = 0.5 * math.sqrt(self.cloud_factor * (1 - self.cloud_factor))
        self._cache: dict[int, np.ndarray] = {}
        self._cache_days = cache_days

    #: Minutes over which one day's block fades into the next one's.
    FADE_MIN = 60

    def _day(self, day: int) -> np.ndarray:
        """Weather factor per minute from FADE_MIN minutes before the day's solar midnight to its end."""
        block = self._cache.get(day)
        if block is None:
            n = self.FADE_MIN + 1441
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, day & 0xFFFFFFFF, 0xC10D])
            eps = rng.standard_normal(n)
            mu, phi, s = self.cloud_factor, self._phi, self._spread
            sigma = s * math.sqrt(1 - phi * phi)
            c = np.empty(n)
            c[0] = mu + s * eps[0]  # start from the stationary distribution
            for k in range(1, n):
                c[k] = mu + phi * (c[k - 1] - mu) + sigma * eps[k]
            block = 1.0 - np.clip(c, 0.0, 1.0)
            if len(self._cache) >= self._cache_days:
                self._cache.pop(next(iter(self._cache)))
            self._cache[day] = block
        return block

    def _at(self, day: int, minute: float) -> float:
        """Block value of ``day`` at ``minute`` (−FADE_MIN … 1440) after its solar midnight."""
        block = self._day(day)
        x = minute + self.FADE_MIN
        k = min(int(x), len(block) - 2)
        frac = x - k
        return float(block[k] * (1 - frac) + block[k + 1] * frac)

    def factor(self, t: datetime) -> float:
        """Weather factor [0..1] at UTC time ``t`` (1 = clear-sky irradiance reaches the panel)."""
        local = _utc(t) + self._offset
        day = local.toordinal()
        minute = (local.hour * 60 + local.minute) + (local.second + local.microsecond / 1e6) / 60
        value = self._at(day, minute)
        fade_from = 1440 - self.FADE_MIN
        if minute > fade_from:  # fade into tomorrow's block, which is already running
            w = (minute - fade_from) / self.FADE_MIN
            value = (1 - w) * value + w * self._at(day + 1, minute - 1440)
        return value
