"""Load profiles of a community hall: the whole hall and its critical (shelter) circuit.

Pure functions of time plus seeded noise; the value at a time never depends
on which times were asked before (noise is drawn per local day from a
generator seeded with (seed, day)), so simulations are reproducible.

* Hall load [W] between ``base_w`` and ``peak_w`` (:class:`devices.simulator.hallspec.LoadSpec`):
  ``community_hall``: low at night, morning cleaning/office, daytime events
  (more at weekends), an evening peak of meetings and classes; ``flat``: the
  base load all day.
* Critical load [W] around ``critical_w``: what the backup panel carries when
  the hall is a shelter (lights, radio/router, phone charging, medicine
  fridge, fans).  Communications and the fridge are constant; lighting is
  higher at night.  Its daily mean is ``critical_w``.  It is the shelter's
  load, so it is not a share of the (empty) hall's normal night load.

Local time is Asia/Tokyo (JST, no daylight saving); weekends are Saturday
and Sunday.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np

from devices.simulator.hallspec import LoadSpec

JST = timezone(timedelta(hours=9), "JST")

#: community_hall shape: (local hour, share of peak − base) on weekdays; linear in between.
WEEKDAY_SHAPE: tuple[tuple[float, float], ...] = (
    (0, 0.0), (6, 0.0), (8, 0.25), (9, 0.45), (12, 0.45), (13, 0.35), (16, 0.4),
    (17, 0.55), (18.5, 1.0), (21, 1.0), (22, 0.2), (23, 0.0), (24, 0.0),
)
#: Weekends: long daytime events (festivals, classes), a shorter evening.
WEEKEND_SHAPE: tuple[tuple[float, float], ...] = (
    (0, 0.0), (7, 0.0), (9, 0.5), (10, 0.85), (15, 0.85), (17, 0.5), (19, 0.6),
    (21, 0.3), (22, 0.0), (24, 0.0),
)
#: Critical circuit: share that is constant (router, radio, fridge) vs lighting.
CRITICAL_CONSTANT_SHARE = 0.4
#: Lighting factor by local hour (night 1.5, day 0.5, ramps at dusk/dawn); mean over a day ≈ 1.
_LIGHTING = ((0, 1.5), (5, 1.5), (7, 0.5), (16, 0.5), (18, 1.5), (24, 1.5))


def _interp(shape: tuple[tuple[float, float], ...], hour: float) -> float:
    """Piecewise-linear value of ``shape`` at local ``hour`` [h]."""
    for (h0, v0), (h1, v1) in zip(shape, shape[1:]):
        if h0 <= hour <= h1:
            return v0 + (v1 - v0) * (hour - h0) / (h1 - h0) if h1 > h0 else v1
    return shape[-1][1]


def _mean_of(shape: tuple[tuple[float, float], ...]) -> float:
    """Daily mean of a piecewise-linear shape (trapezoids)."""
    area = sum((h1 - h0) * (v0 + v1) / 2 for (h0, v0), (h1, v1) in zip(shape, shape[1:]))
    return area / (shape[-1][0] - shape[0][0])


_LIGHTING_MEAN = _mean_of(_LIGHTING)


def local_hour(t: datetime) -> float:
    """Hour of the day [h] in Japan (JST) for aware time ``t``."""
    if t.tzinfo is None:
        raise ValueError(f"a timezone-aware time is required, got naive {t.isoformat()}")
    lt = t.astimezone(JST)
    return lt.hour + lt.minute / 60 + (lt.second + lt.microsecond / 1e6) / 3600


def is_weekend(t: datetime) -> bool:
    """True on Saturday and Sunday in Japan."""
    return t.astimezone(JST).weekday() >= 5


def hall_shape(t: datetime, profile: str) -> float:
    """Share [0..1] of (peak − base) the hall draws at ``t`` without noise."""
    if profile == "flat":
        return 0.0
    if profile != "community_hall":
        raise ValueError(f"unknown load profile {profile!r} (community_hall, flat)")
    return _interp(WEEKEND_SHAPE if is_weekend(t) else WEEKDAY_SHAPE, local_hour(t))


def critical_shape(t: datetime) -> float:
    """Critical load relative to its daily mean [-] at ``t`` without noise (mean over a day = 1)."""
    light = _interp(_LIGHTING, local_hour(t)) / _LIGHTING_MEAN
    return CRITICAL_CONSTANT_SHARE + (1 - CRITICAL_CONSTANT_SHARE) * light


class MinuteNoise:
    """Seeded standard-normal noise, one value per local minute, smoothed and interpolated.

    ``value(t)`` depends only on (seed, stream, t): each JST day is drawn
    from its own generator.  Values are an AR(1) with a few minutes of
    memory, scaled back to unit variance, so loads wander instead of jumping
    (except once a day at JST midnight, where two days' draws meet).
    """

    def __init__(self, seed: int, stream: int, memory_min: float = 5.0, cache_days: int = 4):
        self.seed = int(seed)
        self.stream = int(stream)
        self._phi = math.exp(-1.0 / memory_min)
        self._cache: dict[int, np.ndarray] = {}
        self._cache_days = cache_days

    def _day(self, day: int) -> np.ndarray:
        block = self._cache.get(day)
        if block is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, day & 0xFFFFFFFF, self.stream])
            eps = rng.standard_normal(1441)
            phi = self._phi
            scale = math.sqrt(1 - phi * phi)
            block = np.empty(1441)
            block[0] = eps[0]
            for k in range(1, 1441):
                block[k] = phi * block[k - 1] + scale * eps[k]
            if len(self._cache) >= self._cache_days:
                self._cache.pop(next(iter(self._cache)))
            self._cache[day] = block
        return block

    def value(self, t: datetime) -> float:
        """Noise [-] (about N(0, 1)) at ``t``."""
        lt = t.astimezone(JST)
        minute = lt.hour * 60 + lt.minute + (lt.second + lt.microsecond / 1e6) / 60
        block = self._day(lt.toordinal())
        k = int(minute)
        frac = minute - k
        return float(block[k] * (1 - frac) + block[k + 1] * frac)


class HallLoad:
    """The hall's loads for one :class:`LoadSpec`: ``hall_w(t)`` and ``critical_w(t)`` [W].

    ``noise`` is the standard deviation of the seeded noise as a share of
    (peak − base) for the hall and of critical_w for the critical circuit;
    0 gives the bare shapes.  Hall load stays within [base_w, peak_w];
    critical load within [0.5, 1.6] × critical_w.
    """

    def __init__(self, spec: LoadSpec, seed: int = 0, noise: float = 0.05):
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.spec = spec
        self.noise = noise
        self._hall_noise = MinuteNoise(seed, stream=1)
        self._critical_noise = MinuteNoise(seed, stream=2)

    def hall_w(self, t: datetime) -> float:
        """Whole-hall load [W] at ``t`` (normal times)."""
        s = self.spec
        span = s.peak_w - s.base_w
        share = hall_shape(t, s.profile)
        if self.noise:
            share += self.noise * self._hall_noise.value(t)
        return min(s.peak_w, max(s.base_w, s.base_w + span * share))

    def critical_w(self, t: datetime) -> float:
        """Critical (shelter) load [W] at ``t``: what the backup panel carries in an outage."""
        c = self.spec.critical_w
        value = c * critical_shape(t)
        if self.noise:
            value += c * self.noise * 0.6 * self._critical_noise.value(t)
        return min(1.6 * c, max(0.5 * c, value))
