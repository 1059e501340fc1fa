"""The simulated hall's sun: position, clear-sky irradiance and PV power from pvlib, plus clouds.

Angles in degrees; azimuths are measured from north, clockwise (90 = east,
180 = south), as in the fleet file's ``PVSpec``.  Irradiance in W/m², power
in W, times timezone-aware UTC.

The clear sky is a convention shared with the forecaster
(``optimizer/forecast.py``): devices/ and optimizer/ may not import each
other, so both call pvlib with the same models and parameters (the constants
below) and the same day tables, and ``tests/optimizer/test_sun_agreement.py``
holds the two equal.  Models:

* sun position: NREL SPA (``pvlib.solarposition``, ``nrel_numpy``);
* clear sky: Ineichen–Perez (``pvlib.clearsky.ineichen``) with pvlib's
  monthly Linke turbidity climatology of the site, interpolated to the day;
* plane of array: ``pvlib.irradiance.get_total_irradiance``, isotropic sky,
  ground albedo 0.2;
* PV: ``pvlib.pvsystem.pvwatts_dc`` at the 25 °C reference cell temperature
  and PVWatts' default system losses (``pvwatts_losses``), capped at the
  nameplate.

Where the simulator's "true" sky deliberately differs from what the
forecaster assumes: clouds.  The simulator multiplies the clear sky by a
seeded AR(1) weather factor per minute (:class:`CloudSeries`); the
forecaster knows only the weather factor it is given per slot.

Clear-sky POA is computed by pvlib once per site, panel and local day at a
1-minute step and interpolated linearly (the sun moves 0.25° a minute): a
physics sub-step costs a table look-up, not a pvlib call.
"""

from __future__ import annotations

import calendar
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd
import pvlib

# -- the sun model: the same constants and code as optimizer/forecast.py -----------------------------
#: Halls are taken to stand at sea level [m]: the fleet file gives no altitude (300 m would add up to 1 % GHI).
ALTITUDE_M = 0.0
#: Ground reflectance [0..1] for the isotropic transposition.
GROUND_ALBEDO = 0.2
#: PVWatts' default system losses [0..1] (soiling, shading, mismatch, wiring, LID, availability ...): 0.1408.
DEFAULT_PV_LOSSES = float(pvlib.pvsystem.pvwatts_losses()) / 100.0
#: Cell temperature [°C] given to pvwatts_dc: the 25 °C reference (no weather input, so no derating).
CELL_TEMPERATURE_C = 25.0
#: PVWatts' temperature coefficient of power [1/°C] (idle at the reference temperature).
GAMMA_PDC = -0.004
#: Step [s] of the clear-sky day tables; values in between are interpolated linearly.
TABLE_STEP_S = 60
_TABLE_STEPS = 86400 // TABLE_STEP_S  # per day; a table holds one more value (both midnights)
_TABLE_CACHE_SIZE = 512  # tables kept (11.5 kB each)
_TABLE_BATCH_DAYS = 31  # days computed in one pvlib call at most (bounds its memory)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_tables_lock = threading.Lock()
_tables: OrderedDict[tuple[float, float, float, float, int], np.ndarray] = OrderedDict()


def _day_shift_s(lon_deg: float) -> int:
    """Offset [s] from UTC to the site's whole-hour zone: tables run from local midnight to midnight."""
    return round(lon_deg / 15.0) * 3600


@lru_cache(maxsize=256)
def _monthly_linke_turbidity(lat_deg: float, lon_deg: float) -> np.ndarray:
    """pvlib's Linke turbidity climatology [-] at lat/lon [°], January … December (one file read per site)."""
    mid_months = pd.DatetimeIndex([pd.Timestamp(2001, m, 15, tz="UTC") for m in range(1, 13)])
    return pvlib.clearsky.lookup_linke_turbidity(mid_months, lat_deg, lon_deg, interp_turbidity=False).to_numpy()


def _linke_turbidity(lat_deg: float, lon_deg: float, day: date) -> float:
    """Linke turbidity [-] of ``day``, interpolated between mid-month values as pvlib's lookup does.

    Held for the whole local day (pvlib's own interpolation steps at UTC midnight, 09:00 in Japan).
    """
    lts = _monthly_linke_turbidity(lat_deg, lon_deg)
    mdays = np.array(calendar.mdays[1:], dtype=float)
    mdays[1] += calendar.isleap(day.year)
    middles = np.cumsum(mdays) - mdays / 2
    xp = np.concatenate([[middles[0] - 31.0], middles, [middles[-1] + 31.0]])  # last December, next January
    return float(np.interp(day.timetuple().tm_yday, xp, np.concatenate([lts[-1:], lts, lts[:1]])))


def _compute_tables(lat_deg: float, lon_deg: float, tilt_deg: float, azimuth_deg: float,
                    days: Sequence[int]) -> np.ndarray:
    """Clear-sky POA [W/m²] from pvlib, one row per local day (days since 1970-01-01), TABLE_STEP_S apart."""
    n = _TABLE_STEPS + 1
    offsets = np.arange(n, dtype=np.int64) * TABLE_STEP_S
    epoch = (np.asarray(days, dtype=np.int64)[:, None] * 86400 - _day_shift_s(lon_deg) + offsets).ravel()
    times = pd.to_datetime(epoch, unit="s", utc=True)
    local = [date.fromordinal(_EPOCH_ORDINAL + int(d)) for d in days]
    doy = np.array([d.timetuple().tm_yday for d in local], dtype=float)
    site = pvlib.location.Location(lat_deg, lon_deg, altitude=ALTITUDE_M)
    sun = site.get_solarposition(times)  # NREL SPA
    sky = site.get_clearsky(times, model="ineichen", solar_position=sun,
                            linke_turbidity=np.repeat([_linke_turbidity(lat_deg, lon_deg, d) for d in local], n),
                            dni_extra=np.repeat(pvlib.irradiance.get_extra_radiation(doy), n))
    poa = pvlib.irradiance.get_total_irradiance(tilt_deg, azimuth_deg, sun["apparent_zenith"], sun["azimuth"],
                                                sky["dni"], sky["ghi"], sky["dhi"], albedo=GROUND_ALBEDO,
                                                model="isotropic")["poa_global"]
    return np.clip(np.nan_to_num(poa.to_numpy(dtype=float)), 0.0, None).reshape(len(days), n)


def _day_tables(lat_deg: float, lon_deg: float, tilt_deg: float, azimuth_deg: float,
                days: Sequence[int]) -> list[np.ndarray]:
    """The day tables of ``days`` (cached; missing ones computed together, outside the lock)."""
    site = (float(lat_deg), float(lon_deg), float(tilt_deg), float(azimuth_deg))
    with _tables_lock:
        found = {int(d): _tables.get((*site, int(d))) for d in days}
    missing = [d for d, table in found.items() if table is None]
    for i in range(0, len(missing), _TABLE_BATCH_DAYS):
        chunk = missing[i:i + _TABLE_BATCH_DAYS]
        rows = _compute_tables(*site, chunk)
        with _tables_lock:
            for d, row in zip(chunk, rows):
                found[d] = _tables[(*site, d)] = row
                while len(_tables) > _TABLE_CACHE_SIZE:
                    _tables.popitem(last=False)
    return [found[int(d)] for d in days]


# -- the simulator's use of it ------------------------------------------------------------------------
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
    x = (_utc(t).timestamp() + _day_shift_s(lon_deg)) / TABLE_STEP_S
    day = math.floor(x / _TABLE_STEPS)
    table = _day_tables(lat_deg, lon_deg, tilt_deg, surface_azimuth_deg, (day,))[0]
    pos = x - day * _TABLE_STEPS
    i = min(int(pos), _TABLE_STEPS - 1)
    f = pos - i
    return float(table[i] * (1.0 - f) + table[i + 1] * f)


def pv_power_w(capacity_w: float, poa_w_m2: float, losses: float = DEFAULT_PV_LOSSES,
               weather_factor: float = 1.0) -> float:
    """PV AC power [W] in [0, capacity_w]: pvwatts_dc(POA [W/m²] × weather_factor) × (1 − losses).

    capacity_w [W DC peak]; losses [0..1]; weather_factor [0..1] (1 = clear
    sky).  The cell is at the 25 °C reference, so this is capacity_w ×
    POA/1000 × weather_factor × (1 − losses).
    """
    dc = pvlib.pvsystem.pvwatts_dc(poa_w_m2 * weather_factor, CELL_TEMPERATURE_C, capacity_w, GAMMA_PDC)
    return min(capacity_w, max(0.0, float(dc) * (1.0 - losses)))


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
