"""Sun position, clear-sky irradiance and PV power: pure functions (pvlib style).

Angles in degrees unless a name says otherwise; azimuths are measured from
north, clockwise (90 = east, 180 = south), as in :class:`ems.config.PVSpec`.
Irradiance in W/m², power in W, times timezone-aware UTC.

Models (all standard, chosen to be small rather than bankable):

* declination and equation of time: Spencer (1971) Fourier series;
* clear-sky GHI: Haurwitz (1945), as in ``pvlib.clearsky.haurwitz``;
* GHI → DNI/DHI: Erbs et al. (1982) diffuse fraction;
* plane of array: isotropic sky diffuse plus ground reflection (albedo 0.2);
* clouds: an AR(1) process sampled per minute, seeded, see :class:`CloudSeries`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

SOLAR_CONSTANT_W_M2 = 1367.0
#: PVWatts' default system losses (soiling, wiring, mismatch, inverter, ...).
DEFAULT_PV_LOSSES = 0.14
#: Below this cos(zenith) (sun under ~3.7°) DNI from the decomposition is unreliable.
_MIN_COS_ZENITH = 0.065


@dataclass(frozen=True, slots=True)
class SolarPosition:
    """Where the sun is: elevation_deg [°] (negative at night), zenith_deg [°], azimuth_deg [°, from north]."""

    elevation_deg: float
    zenith_deg: float
    azimuth_deg: float


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"a timezone-aware time is required, got naive {t.isoformat()}")
    return t.astimezone(timezone.utc)


def fractional_year_rad(t: datetime) -> float:
    """Spencer's day angle Γ = 2π/365 · (day_of_year − 1 + (hour − 12)/24) [rad] for UTC time ``t``."""
    t = _utc(t)
    hour = t.hour + t.minute / 60 + t.second / 3600 + t.microsecond / 3.6e9
    return 2 * math.pi / 365 * (t.timetuple().tm_yday - 1 + (hour - 12) / 24)


def declination_deg(t: datetime) -> float:
    """Solar declination δ [°] at UTC time ``t`` (Spencer 1971, error < 0.05°)."""
    g = fractional_year_rad(t)
    rad = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
           - 0.006758 * math.cos(2 * g) + 0.000907 * math.sin(2 * g)
           - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    return math.degrees(rad)


def equation_of_time_min(t: datetime) -> float:
    """Equation of time [min]: true solar time minus mean solar time (Spencer 1971)."""
    g = fractional_year_rad(t)
    return 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                     - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))


def hour_angle_deg(t: datetime, lon_deg: float) -> float:
    """Hour angle H [°] at longitude ``lon_deg`` [°E]: 0 at solar noon, negative before, 15°/h."""
    t = _utc(t)
    minutes = t.hour * 60 + t.minute + t.second / 60 + t.microsecond / 6e7
    true_solar_min = minutes + 4 * lon_deg + equation_of_time_min(t)
    h = true_solar_min / 4 - 180
    return (h + 180) % 360 - 180


def solar_position(t: datetime, lat_deg: float, lon_deg: float) -> SolarPosition:
    """Sun elevation, zenith and azimuth [°] seen from lat/lon [°] at UTC time ``t`` (no refraction)."""
    phi = math.radians(lat_deg)
    delta = math.radians(declination_deg(t))
    h = math.radians(hour_angle_deg(t, lon_deg))
    cos_z = math.sin(phi) * math.sin(delta) + math.cos(phi) * math.cos(delta) * math.cos(h)
    cos_z = max(-1.0, min(1.0, cos_z))
    zenith = math.degrees(math.acos(cos_z))
    # Azimuth from south (positive west), then turned to "from north".
    az_south = math.atan2(math.sin(h), math.cos(h) * math.sin(phi) - math.tan(delta) * math.cos(phi))
    azimuth = (math.degrees(az_south) + 180.0) % 360.0
    return SolarPosition(elevation_deg=90.0 - zenith, zenith_deg=zenith, azimuth_deg=azimuth)


def extraterrestrial_w_m2(t: datetime) -> float:
    """Normal irradiance above the atmosphere [W/m²], varying ±3.3 % with the Earth–Sun distance."""
    return SOLAR_CONSTANT_W_M2 * (1 + 0.033 * math.cos(2 * math.pi * _utc(t).timetuple().tm_yday / 365))


def haurwitz_ghi_w_m2(zenith_deg: float) -> float:
    """Clear-sky global horizontal irradiance [W/m²]: 1098 · cos z · exp(−0.057 / cos z); 0 at night."""
    cos_z = math.cos(math.radians(zenith_deg))
    if cos_z <= 0:
        return 0.0
    return 1098.0 * cos_z * math.exp(-0.057 / cos_z)


def erbs_dni_dhi_w_m2(ghi_w_m2: float, zenith_deg: float, extra_w_m2: float) -> tuple[float, float]:
    """Split GHI [W/m²] into (DNI, DHI) [W/m²] with the Erbs diffuse fraction."""
    cos_z = math.cos(math.radians(zenith_deg))
    if ghi_w_m2 <= 0 or cos_z <= 0:
        return 0.0, 0.0
    kt = min(1.0, max(0.0, ghi_w_m2 / (extra_w_m2 * max(cos_z, _MIN_COS_ZENITH))))
    if kt <= 0.22:
        df = 1 - 0.09 * kt
    elif kt <= 0.80:
        df = 0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4
    else:
        df = 0.165
    dhi = df * ghi_w_m2
    dni = (ghi_w_m2 - dhi) / max(cos_z, _MIN_COS_ZENITH)
    return min(dni, extra_w_m2), dhi


def angle_of_incidence_cos(zenith_deg: float, azimuth_deg: float, tilt_deg: float,
                           surface_azimuth_deg: float) -> float:
    """cos of the angle between the sun and the panel normal (can be negative: sun behind)."""
    z, a = math.radians(zenith_deg), math.radians(azimuth_deg)
    b, g = math.radians(tilt_deg), math.radians(surface_azimuth_deg)
    return math.cos(z) * math.cos(b) + math.sin(z) * math.sin(b) * math.cos(a - g)


def poa_irradiance_w_m2(ghi: float, dni: float, dhi: float, zenith_deg: float, azimuth_deg: float,
                        tilt_deg: float, surface_azimuth_deg: float, albedo: float = 0.2) -> float:
    """Plane-of-array irradiance [W/m²]: beam·cos(AOI) + isotropic sky diffuse + ground reflection."""
    if ghi <= 0:
        return 0.0
    cos_aoi = angle_of_incidence_cos(zenith_deg, azimuth_deg, tilt_deg, surface_azimuth_deg)
    tilt = math.radians(tilt_deg)
    beam = dni * max(0.0, cos_aoi)
    sky = dhi * (1 + math.cos(tilt)) / 2
    ground = ghi * albedo * (1 - math.cos(tilt)) / 2
    return max(0.0, beam + sky + ground)


def clear_sky_poa_w_m2(t: datetime, lat_deg: float, lon_deg: float, tilt_deg: float,
                       surface_azimuth_deg: float) -> float:
    """Clear-sky plane-of-array irradiance [W/m²] for a panel at lat/lon [°] and UTC time ``t``."""
    pos = solar_position(t, lat_deg, lon_deg)
    ghi = haurwitz_ghi_w_m2(pos.zenith_deg)
    if ghi <= 0:
        return 0.0
    dni, dhi = erbs_dni_dhi_w_m2(ghi, pos.zenith_deg, extraterrestrial_w_m2(t))
    return poa_irradiance_w_m2(ghi, dni, dhi, pos.zenith_deg, pos.azimuth_deg, tilt_deg, surface_azimuth_deg)


def pv_power_w(capacity_w: float, poa_w_m2: float, losses: float = DEFAULT_PV_LOSSES,
               weather_factor: float = 1.0) -> float:
    """PV AC power [W] = capacity_w [W] × POA/1000 × (1 − losses) × weather_factor, in [0, capacity_w]."""
    p = capacity_w * poa_w_m2 / 1000.0 * (1.0 - losses) * weather_factor
    return min(capacity_w, max(0.0, p))


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
