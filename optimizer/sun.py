"""The sun over a hall, from pvlib: one model for the forecaster and the hall simulator.

Angles in degrees; azimuths are measured from north, clockwise (90 = east,
180 = south), as in the fleet file's ``PVSpec``.  Irradiance in W/m², power
in W, times as UTC epoch seconds or timezone-aware datetimes.

Models:

* sun position: NREL SPA (``pvlib.solarposition``, ``nrel_numpy``);
* clear sky: Ineichen–Perez (``pvlib.clearsky.ineichen``) with pvlib's
  monthly Linke turbidity climatology of the site, interpolated to the day;
* plane of array: ``pvlib.irradiance.get_total_irradiance``, isotropic sky,
  ground albedo 0.2;
* PV: ``pvlib.pvsystem.pvwatts_dc`` at the 25 °C reference cell temperature
  and PVWatts' default system losses (``pvwatts_losses``), capped at the
  nameplate.

The forecaster (:mod:`optimizer.forecast`) and the simulator
(:mod:`devices.simulator.solar`) both call this module, so they share the
clear sky exactly.  Where the simulator's "true" sky deliberately differs
from what the forecaster assumes: clouds (the simulator's seeded per-minute
series, :class:`devices.simulator.solar.CloudSeries`; the forecaster knows
only the weather factor it is given per slot).

Clear-sky POA is computed by pvlib once per site, panel and local day at a
1-minute step and interpolated linearly (the sun moves 0.25° a minute), so
a forecast or a physics sub-step costs a table look-up, not a pvlib call.
The tables are a memo, not state: any call gives the same values cold or
warm.  The one file read is pvlib's bundled turbidity table, once per site
and process.  Pure computation otherwise: no clocks, no I/O.
"""

from __future__ import annotations

import calendar
import threading
from collections import OrderedDict
from datetime import date
from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd
import pvlib

#: Halls are taken to stand at sea level [m]: the fleet file gives no altitude (300 m would add up to 1 % GHI).
ALTITUDE_M = 0.0
#: Ground reflectance [0..1] for the isotropic transposition.
GROUND_ALBEDO = 0.2
#: PVWatts' default system losses [0..1] (soiling, shading, mismatch, wiring, LID, availability ...): 0.1408.
PV_LOSSES = float(pvlib.pvsystem.pvwatts_losses()) / 100.0
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


def clear_sky_poa_w_m2(epoch_s: np.ndarray, lat_deg: float, lon_deg: float, tilt_deg: float,
                       azimuth_deg: float) -> np.ndarray:
    """Clear-sky irradiance on the panel plane [W/m²] at UTC epoch seconds [s]; 0 at night.

    lat/lon [°]; tilt_deg [°]; azimuth_deg [°, from north, 180 = south].  The
    shared sun model (module docstring), from the day tables.
    """
    x = (np.asarray(epoch_s, dtype=float) + _day_shift_s(lon_deg)) / TABLE_STEP_S
    if x.size == 0:
        return np.zeros(0)
    day = np.floor(x / _TABLE_STEPS).astype(np.int64)
    days, row = np.unique(day, return_inverse=True)
    tables = np.stack(_day_tables(lat_deg, lon_deg, tilt_deg, azimuth_deg, days))
    pos = x - day * _TABLE_STEPS
    i = np.minimum(pos.astype(np.int64), _TABLE_STEPS - 1)
    f = pos - i
    return tables[row, i] * (1.0 - f) + tables[row, i + 1] * f


def clear_sky_poa_at(epoch_s: float, lat_deg: float, lon_deg: float, tilt_deg: float, azimuth_deg: float) -> float:
    """Clear-sky irradiance on the panel plane [W/m²] at one UTC epoch second [s]; 0 at night.

    The scalar form of :func:`clear_sky_poa_w_m2` (the same tables and
    interpolation) for the simulator's physics sub-steps: about 3 µs
    against 20 µs for a one-element array.
    """
    x = (epoch_s + _day_shift_s(lon_deg)) / TABLE_STEP_S
    day = int(x // _TABLE_STEPS)
    table = _day_tables(lat_deg, lon_deg, tilt_deg, azimuth_deg, (day,))[0]
    pos = x - day * _TABLE_STEPS
    i = min(int(pos), _TABLE_STEPS - 1)
    f = pos - i
    return float(table[i] * (1.0 - f) + table[i + 1] * f)


def pv_ac_w(poa_w_m2: np.ndarray | float, capacity_w: float, losses: float = PV_LOSSES) -> np.ndarray:
    """PV output [W] in [0, capacity_w] for plane-of-array irradiance [W/m²]: pvwatts_dc at the 25 °C
    reference cell temperature × (1 − losses [0..1]); capacity_w [W DC peak]."""
    dc = pvlib.pvsystem.pvwatts_dc(np.asarray(poa_w_m2, dtype=float), CELL_TEMPERATURE_C, capacity_w, GAMMA_PDC)
    return np.clip(np.asarray(dc, dtype=float) * (1.0 - losses), 0.0, capacity_w)
