"""Intraday correction of a forecast from what was just measured: a day bias plus a fading AR(1) error.

A day-ahead forecast of a factor (PV: share of clear sky; load: ratio to the
learnt profile) misses in two ways: by a bias that lasts the whole day (the
weather forecast was wrong; a day with an event) and by an error that fades
within hours (a passing cloud, a meeting running late).  A two-state Kalman
filter separates them from the errors seen so far today:

    state    x = [b, a]            b: day bias, a: fading error [factor]
    step     b' = b,  a' = ρ·a + w,   w ~ N(0, (1 − ρ²)·σa²)
    measure  y = b + a + v,           v ~ N(0, σv²)       (y = actual − forecast factor)
    predict  slot h ahead: b (same local day only) + ρ^h · a

At the start of each local day the bias resets to its prior N(0, σb²):
tomorrow's forecast is a new forecast (the fading error carries on over
midnight; for PV it has long faded by then).  :func:`fit_error_stats` estimates
σb, σa and ρ from past errors so the filter needs no hand-set constants once
a hall has a week or two of history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

#: Measurement noise of one slot's factor [factor]: meter resolution and sub-slot averaging.
MEASUREMENT_SD = 0.02
#: Correlations are clipped to this: a fitted ρ of 1 would never forget an error.
MAX_RHO = 0.95


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """How a forecast factor errs: day bias sd σb, fading error sd σa [factor], its lag-one correlation ρ per slot."""

    bias_sd: float
    fading_sd: float
    rho: float

    def __post_init__(self) -> None:
        if not (self.bias_sd >= 0 and self.fading_sd >= 0 and 0 <= self.rho <= MAX_RHO):
            raise ValueError(f"bad error statistics {self}: sds must be >= 0, rho in [0, {MAX_RHO}]")


#: Lags [slots] of the within-day covariances the statistics are fitted to.
FIT_LAGS = 6


def fit_error_stats(days: Iterable[Sequence[float]], prior: ErrorStats, min_days: int = 7) -> ErrorStats:
    """Estimate :class:`ErrorStats` from past errors: one sequence per day, one value per slot, NaN where none.

    Within a day, cov(e_t, e_t+k) = σb² + σa²·ρ^k (bias and fading error
    independent).  The pooled within-day products c_k for k = 0..FIT_LAGS,
    over pairs where both errors exist (a gap stays a gap), are fitted by
    least squares, ρ on a grid and (σb², σa²) ≥ 0 for each ρ.  Demeaning
    each day first would bias ρ low on short days, so the raw products are
    used: a lasting mean error counts as bias, which the filter should
    indeed correct.  Days with fewer than FIT_LAGS + 2 errors are skipped;
    with fewer than ``min_days`` usable days the prior is returned.
    """
    days = [np.asarray(d, dtype=float) for d in days]
    days = [d for d in days if np.count_nonzero(np.isfinite(d)) >= FIT_LAGS + 2]
    if len(days) < min_days:
        return prior
    c = np.empty(FIT_LAGS + 1)
    for k in range(FIT_LAGS + 1):
        products = np.concatenate([d[k:] * d[:len(d) - k] for d in days])
        products = products[np.isfinite(products)]
        if not len(products):
            return prior
        c[k] = products.mean()
    lags = np.arange(FIT_LAGS + 1)
    best = (math.inf, prior)
    for rho in np.arange(0.0, MAX_RHO + 1e-9, 0.01):
        design = np.column_stack([np.ones_like(c), rho ** lags])
        coef, *_ = np.linalg.lstsq(design, c, rcond=None)
        bias_var, fading_var = (max(0.0, float(x)) for x in coef)
        resid = float(np.sum((c - bias_var - fading_var * rho ** lags) ** 2))
        if resid < best[0]:
            best = (resid, ErrorStats(math.sqrt(bias_var), math.sqrt(fading_var), float(round(rho, 2))))
    return best[1]


class BiasAR1Filter:
    """The two-state Kalman filter of the module docstring, one step per slot."""

    def __init__(self, stats: ErrorStats):
        self.stats = stats
        self.reset()

    def reset(self) -> None:
        """Forget everything: no error known, prior uncertainty."""
        s = self.stats
        self.x = np.zeros(2)
        self.p = np.diag([s.bias_sd ** 2, s.fading_sd ** 2])

    def new_day(self) -> None:
        """A new forecast day: the bias back to its prior, the fading error kept."""
        self.x[0] = 0.0
        self.p[0, :] = self.p[:, 0] = 0.0
        self.p[0, 0] = self.stats.bias_sd ** 2

    def retune(self, stats: ErrorStats) -> None:
        """Use new statistics (e.g. refitted from history) from now on."""
        self.stats = stats

    def update(self, error: float) -> None:
        """Take in one slot's measured error y = actual − forecast factor."""
        h = np.ones(2)
        s = float(h @ self.p @ h) + MEASUREMENT_SD ** 2
        k = self.p @ h / s
        self.x = self.x + k * (error - float(h @ self.x))
        self.p = self.p - np.outer(k, h @ self.p)

    def step(self) -> None:
        """Advance one slot (called every slot, measured or not: at night PV tells nothing)."""
        rho, sa = self.stats.rho, self.stats.fading_sd
        self.x = np.array([self.x[0], rho * self.x[1]])
        f = np.diag([1.0, rho])
        self.p = f @ self.p @ f.T + np.diag([0.0, (1 - rho * rho) * sa * sa])

    def correction(self, same_day: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Expected error [factor] of slots ``steps`` slots after the current one: the bias on
        today's slots (``same_day``), the fading part decaying as ρ^steps."""
        same_day = np.asarray(same_day, dtype=bool)
        return np.where(same_day, self.x[0], 0.0) + self.x[1] * self.stats.rho ** np.asarray(steps, dtype=float)
