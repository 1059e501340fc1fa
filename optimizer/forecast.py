"""Forecasts for a hall: clear-sky PV and load profiles learnt from history (pure, vectorised).

PV: the clear-sky power of the hall's array [W] from the sun model the
simulator uses too (:mod:`optimizer.sun`, pvlib), times a weather factor
[0..1].  What the forecaster deliberately does not know: the simulator's
clouds (a seeded series per minute); it has only the weather factor it is
given (per slot) and averages the clear sky over each slot.

Load: a same-weekday (or workday/weekend), same-time-of-day mean learnt
from history, falling back slot by slot to the configured profile where
history has no sample (:mod:`optimizer.forecaster` picks the grouping).
Local time is JST (Japan has no daylight saving time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np

from optimizer.sun import clear_sky_poa_w_m2, pv_ac_w

JST = timezone(timedelta(hours=9), "JST")
#: Sub-samples per slot when averaging PV over the slot.
PV_SAMPLES_PER_SLOT = 6

# The sun model lives in optimizer.sun, shared with the hall simulator.
def _epoch_s(times: Sequence[datetime]) -> np.ndarray:
    """UTC seconds since the epoch for aware times."""
    out = np.empty(len(times))
    for i, t in enumerate(times):
        if t.tzinfo is None:
            raise ValueError(f"a timezone-aware time is required, got naive {t.isoformat()}")
        out[i] = t.timestamp()
    return out


def clear_sky_pv_w(times: Sequence[datetime], lat_deg: float, lon_deg: float, capacity_w: float,
                   tilt_deg: float = 20.0, azimuth_deg: float = 180.0,
                   weather_factor: float | Sequence[float] = 1.0, slot: timedelta | None = None) -> np.ndarray:
    """Forecast PV output [W] per slot: mean over the slot of clear-sky power × weather factor.

    times: slot starts (aware); lat/lon [°]; capacity_w [W DC peak];
    tilt_deg [°]; azimuth_deg [°, 180 = south]; slot: slot length (default:
    the series' step, or 30 min); weather_factor [0..1]: scalar or one per
    slot (1 = clear sky), applied to the slot mean.  Power at an instant is
    the simulator's clear-sky power (:func:`optimizer.sun.pv_ac_w`); the slot mean is taken over
    ``PV_SAMPLES_PER_SLOT`` evenly spaced instants.
    """
    if capacity_w < 0:
        raise ValueError("capacity_w must be >= 0")
    if not times:
        return np.zeros(0)
    step = slot or (times[1] - times[0] if len(times) > 1 else timedelta(minutes=30))
    start = _epoch_s(times)
    offsets = (np.arange(PV_SAMPLES_PER_SLOT) + 0.5) / PV_SAMPLES_PER_SLOT * step.total_seconds()
    samples = (start[:, None] + offsets[None, :]).ravel()
    poa = clear_sky_poa_w_m2(samples, lat_deg, lon_deg, tilt_deg, azimuth_deg)
    power = pv_ac_w(poa, capacity_w).reshape(len(times), -1).mean(axis=1)
    factor = np.clip(np.broadcast_to(np.asarray(weather_factor, dtype=float), (len(times),)), 0.0, 1.0)
    return power * factor


#: community_hall shape, share of (peak − base) by local hour; weekdays: office, evening meetings.
WEEKDAY_SHAPE = ((0, 0.0), (6, 0.0), (8, 0.25), (9, 0.45), (12, 0.45), (13, 0.35), (16, 0.4),
                 (17, 0.55), (18.5, 1.0), (21, 1.0), (22, 0.2), (23, 0.0), (24, 0.0))
#: Weekends: long daytime events, a shorter evening.
WEEKEND_SHAPE = ((0, 0.0), (7, 0.0), (9, 0.5), (10, 0.85), (15, 0.85), (17, 0.5), (19, 0.6),
                 (21, 0.3), (22, 0.0), (24, 0.0))
#: Shelter lighting by local hour (night 1.5, day 0.5); the rest (radio, router, fridge) is constant.
LIGHTING_SHAPE = ((0, 1.5), (5, 1.5), (7, 0.5), (16, 0.5), (18, 1.5), (24, 1.5))
CRITICAL_CONSTANT_SHARE = 0.4


def _local(times: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray]:
    """(local hour [h] at the slot start, weekday 0=Mon) in JST."""
    hours = np.empty(len(times))
    wd = np.empty(len(times), dtype=int)
    for i, t in enumerate(times):
        lt = t.astimezone(JST)
        hours[i] = lt.hour + lt.minute / 60
        wd[i] = lt.weekday()
    return hours, wd


def _shape(points, hours: np.ndarray) -> np.ndarray:
    xs, ys = zip(*points)
    return np.interp(hours, xs, ys)


def configured_load_w(times: Sequence[datetime], base_w: float, peak_w: float,
                      profile: str = "community_hall", slot: timedelta | None = None) -> np.ndarray:
    """Configured hall load [W] per slot (value at the slot's middle): base + shape × (peak − base)."""
    if profile not in ("community_hall", "flat"):
        raise ValueError(f"unknown load profile {profile!r} (community_hall, flat)")
    if profile == "flat" or not times:
        return np.full(len(times), float(base_w))
    step = slot or (times[1] - times[0] if len(times) > 1 else timedelta(minutes=30))
    hours, wd = _local([t + step / 2 for t in times])
    shape = np.where(wd >= 5, _shape(WEEKEND_SHAPE, hours), _shape(WEEKDAY_SHAPE, hours))
    return base_w + shape * (peak_w - base_w)


def configured_critical_w(times: Sequence[datetime], critical_w: float, slot: timedelta | None = None) -> np.ndarray:
    """Configured shelter critical load [W]: constant part plus lighting, daily mean ≈ ``critical_w``."""
    if not times:
        return np.zeros(0)
    step = slot or (times[1] - times[0] if len(times) > 1 else timedelta(minutes=30))
    hours, _ = _local([t + step / 2 for t in times])
    grid = np.linspace(0, 24, 24 * 12, endpoint=False)
    mean_light = _shape(LIGHTING_SHAPE, grid).mean()
    light = _shape(LIGHTING_SHAPE, hours) / mean_light
    return critical_w * (CRITICAL_CONSTANT_SHARE + (1 - CRITICAL_CONSTANT_SHARE) * light)


@dataclass(frozen=True)
class WeeklyProfile:
    """Mean power [W] per (weekday, slot of the day) learnt from history; NaN where no sample."""

    slot_minutes: int
    mean_w: np.ndarray  # shape (7, slots per day)

    def at(self, times: Sequence[datetime]) -> np.ndarray:
        """Profile value [W] for each time (NaN where the history had no sample)."""
        hours, wd = _local(times)
        idx = (np.round(hours * 60) // self.slot_minutes).astype(int) % self.mean_w.shape[1]
        return self.mean_w[wd, idx]


#: How days are pooled when learning a profile: each weekday alone, or workdays vs weekends.
DAY_GROUPS = {"weekday": (0, 1, 2, 3, 4, 5, 6), "daytype": (0, 0, 0, 0, 0, 1, 1)}


def learn_profile(times: Sequence[datetime], power_w: Sequence[float], slot_minutes: int = 30,
                  days: str = "weekday") -> WeeklyProfile:
    """Mean of ``power_w`` [W] per slot of the day and day group, sampled at ``times`` (NaN samples ignored).

    days: "weekday" (same weekday only) or "daytype" (Mon–Fri pooled, Sat–Sun
    pooled: five times the samples, for halls whose weekdays look alike).
    """
    if len(times) != len(power_w):
        raise ValueError("times and power_w differ in length")
    if slot_minutes <= 0 or (24 * 60) % slot_minutes:
        raise ValueError("slot_minutes must divide a day")
    if days not in DAY_GROUPS:
        raise ValueError(f"unknown day grouping {days!r} ({', '.join(DAY_GROUPS)})")
    if len(times):
        hours, wd = _local(times)
        idx = (np.floor(hours * 60 + 1e-9) // slot_minutes).astype(int) % (24 * 60 // slot_minutes)
    else:
        wd = idx = np.zeros(0, dtype=int)
    return profile_from_samples(wd, idx, np.asarray(power_w, dtype=float), slot_minutes, days)


def profile_from_samples(weekday: np.ndarray, slot_of_day: np.ndarray, power_w: np.ndarray, slot_minutes: int,
                         days: str = "weekday") -> WeeklyProfile:
    """:func:`learn_profile` on samples already placed: local weekday (0 = Mon), slot of the local day, power [W]."""
    group = np.array(DAY_GROUPS[days])
    per_day = 24 * 60 // slot_minutes
    total = np.zeros((7, per_day))
    count = np.zeros((7, per_day))
    ok = np.isfinite(power_w)
    np.add.at(total, (group[weekday[ok]], slot_of_day[ok]), power_w[ok])
    np.add.at(count, (group[weekday[ok]], slot_of_day[ok]), 1)
    total, count = total[group], count[group]  # each weekday row shows its group's sums
    with np.errstate(invalid="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return WeeklyProfile(slot_minutes, mean)


def forecast_load_w(times: Sequence[datetime], fallback_w: np.ndarray, history: WeeklyProfile | None = None) -> np.ndarray:
    """Load forecast [W]: the learnt profile where it has data, else ``fallback_w`` (the configured profile)."""
    fallback_w = np.asarray(fallback_w, dtype=float)
    if len(fallback_w) != len(times):
        raise ValueError("fallback_w must have one value per time")
    if history is None:
        return fallback_w.copy()
    learnt = history.at(times)
    return np.where(np.isfinite(learnt), learnt, fallback_w)


@dataclass(frozen=True)
class HallProfile:
    """What the forecaster knows of a hall (plain values; the daemon fills it from ems.config.SiteConfig).

    lat/lon [°]; pv_capacity_w [W]; tilt_deg / azimuth_deg [°, 180 = south];
    base_w / peak_w / critical_w [W]; profile: 'community_hall' or 'flat'.
    """

    lat: float
    lon: float
    pv_capacity_w: float
    base_w: float
    peak_w: float
    critical_w: float
    tilt_deg: float = 20.0
    azimuth_deg: float = 180.0
    profile: str = "community_hall"
