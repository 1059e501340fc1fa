"""A hall's forecaster: learns from the slots it has measured and forecasts the slots ahead.

One class shared by the edge daemon (``ems/gateway/planning.py``) and the economic
backtest (``optimizer/backtest.py``), so the backtest measures the forecasts
the daemon really makes.

* **Load** = profile × (1 + nowcast).  The profile is whichever candidate
  forecast the finished days best (mean absolute error over the last
  ``skill_days``): the same-weekday mean of the last ``history_days``, the
  workday/weekend mean (five times the samples, so less noise where weekdays
  look alike), or the configured profile.  Each candidate is scored on a day
  with the profile it had learnt before that day, as it would have been used.
* **PV** = clear sky × (weather factor given + nowcast), clipped to [0, 1] of
  clear sky.  The weather factor is the day-ahead forecast (or the site's
  typical cloudiness when there is none).
* **Nowcast** (:mod:`optimizer.nowcast`): today's errors so far tell the
  day's bias and the error still fading; its statistics are refitted each
  day from the errors of the last ``history_days``.
* **Critical load**: the same-weekday mean of what was measured, else the
  configured profile (no nowcast: the reserve should not swing with it).

Slots are fed in as they finish (:meth:`HallForecaster.observe`, mean powers
over the slot); a slot skipped (uplink or meter outage) just leaves a hole.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Sequence

import numpy as np

from optimizer.forecast import (DAY_GROUPS, JST, HallProfile, WeeklyProfile, clear_sky_pv_w, configured_critical_w,
                                configured_load_w, forecast_load_w, profile_from_samples)
from optimizer.inputs import SiteForecast
from optimizer.nowcast import BiasAR1Filter, ErrorStats, fit_error_stats

log = logging.getLogger(__name__)

#: Load-profile candidates, in order of preference when their skill ties.
CANDIDATES = ("daytype", "weekday", "configured")
#: Base load forecasts below this [W] give no relative error (a hall is never this quiet; avoids ÷0).
MIN_BASE_W = 50.0
#: A measured slot this far from the nowcast's clock is a clock jump, not late or missing data.
CLOCK_RESET = timedelta(days=2)


@dataclass(frozen=True)
class ForecasterSettings:
    """history_days: days learnt from; skill_days: days the candidates are scored on;
    min_fit_days: days of errors before the nowcast statistics are fitted (priors before);
    load_prior / pv_prior: nowcast statistics until then [relative load error; PV weather factor];
    daylight_share: PV slots with clear sky below this share of capacity say nothing of the weather."""

    history_days: int = 28
    skill_days: int = 14
    min_fit_days: int = 7
    load_prior: ErrorStats = ErrorStats(bias_sd=0.05, fading_sd=0.15, rho=0.8)
    pv_prior: ErrorStats = ErrorStats(bias_sd=0.10, fading_sd=0.15, rho=0.7)
    daylight_share: float = 0.02

    def __post_init__(self) -> None:
        if self.history_days < 1 or self.skill_days < 1 or self.min_fit_days < 2:
            raise ValueError("history_days and skill_days must be >= 1, min_fit_days >= 2")


@dataclass(slots=True)
class _Slot:
    """One measured slot: local weekday and slot of the day, powers [W], and the errors the nowcast saw."""

    weekday: int
    slot_of_day: int
    day: date
    load_w: float
    pv_w: float
    critical_w: float
    weather: float = math.nan  # the weather factor forecast for the slot
    load_error: float = math.nan  # actual / profile − 1
    pv_error: float = math.nan  # actual / clear sky − weather factor forecast


@dataclass
class _Expected:
    """What the forecaster said of a slot before it came: profile [W] per candidate, clear sky [W], weather."""

    profile_w: dict[str, float] = field(default_factory=dict)
    clear_w: float = math.nan
    weather: float = math.nan


class HallForecaster:
    """Forecasts of one hall's load, PV and critical load that learn from measurements (module docstring)."""

    def __init__(self, hall: HallProfile, slot: timedelta = timedelta(minutes=30),
                 settings: ForecasterSettings = ForecasterSettings()):
        if slot <= timedelta(0) or timedelta(days=1) % slot:
            raise ValueError("slot must divide a day")
        self.hall = hall
        self.slot = slot
        self.settings = settings
        self.slot_minutes = int(slot.total_seconds() // 60)
        self._slots: dict[datetime, _Slot] = {}
        self._expected: dict[datetime, _Expected] = {}
        self._profiles: dict[str, WeeklyProfile | None] = {name: None for name in CANDIDATES}
        self._critical: WeeklyProfile | None = None
        self._skill: dict[str, deque[float]] = {name: deque(maxlen=settings.skill_days) for name in CANDIDATES}
        self._load = BiasAR1Filter(settings.load_prior)
        self._pv = BiasAR1Filter(settings.pv_prior)
        self._next: datetime | None = None  # the slot the nowcast state is for
        self._learnt_for: date | None = None
        self._scoring_day: date | None = None
        self._day_errors: dict[str, list[float]] = {}
        self.load_model = "configured"
        self._last_weather = 1.0  # weather factor of the latest forecast, for slots never forecast

    # -- learning ---------------------------------------------------------------------
    def observe(self, start: datetime, load_w: float | None, pv_w: float | None,
                critical_w: float | None = None) -> None:
        """Take in a finished slot starting at ``start``: mean load, PV and critical load [W] (None: not measured).

        Raises ValueError naming the value for a naive time, a time off the
        slot grid, or a negative or non-finite power.  A slot older than the
        newest one seen is stored for learning but does not move the nowcast.
        """
        if start.tzinfo is None:
            raise ValueError(f"observe: start {start.isoformat()} must be timezone-aware")
        if (start - datetime(1970, 1, 1, tzinfo=JST)) % self.slot:
            raise ValueError(f"observe: start {start.isoformat()} is not on the {self.slot_minutes}-minute grid")
        values = {"load_w": load_w, "pv_w": pv_w, "critical_w": critical_w}
        for name, v in values.items():
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"observe {start.isoformat()}: {name} = {v!r} must be a finite power >= 0 W")
        local = start.astimezone(JST)
        rec = _Slot(local.weekday(), (local.hour * 60 + local.minute) // self.slot_minutes, local.date(),
                    *(math.nan if v is None else float(v) for v in values.values()))
        if self._next is not None and start < self._next - CLOCK_RESET:
            self._clock_reset(start, "back")
        if self._next is not None and start <= self._next - self.slot:
            self._slots[start] = rec  # late or repeated: learn from it, the nowcast has moved on
            return
        if self._next is not None and start - self._next > CLOCK_RESET:
            self._clock_reset(start, "forward")
        self._advance_to(start)
        exp = self._expected.get(start) or self._expect(start)
        rec.weather = exp.weather
        base = exp.profile_w.get(self.load_model, math.nan)
        if math.isfinite(rec.load_w) and base >= MIN_BASE_W:
            rec.load_error = rec.load_w / base - 1.0
            self._load.update(rec.load_error)
        if (math.isfinite(rec.pv_w) and math.isfinite(exp.weather)
                and exp.clear_w > self.settings.daylight_share * self.hall.pv_capacity_w):
            rec.pv_error = min(rec.pv_w / exp.clear_w, 1.2) - exp.weather
            self._pv.update(rec.pv_error)
        self._slots[start] = rec
        self._score(start, rec, exp)
        self._advance_to(start + self.slot)

    def _clock_reset(self, start: datetime, direction: str) -> None:
        """The clock jumped by more than CLOCK_RESET (a gateway booting on a wrong clock, NTP stepping it).

        Backwards: the slots "after" the new time were measured under a wrong
        clock and would freeze the nowcast as late data forever, so they go.
        Forwards: the nowcast's state is stale; stepping it slot by slot over
        months would stall the control cycle, so it restarts at ``start``.
        Learnt profiles and skill stay where their slots stay.
        """
        log.warning("forecaster: clock jumped %s from %s to %s; nowcast restarted", direction,
                    self._next.isoformat() if self._next else None, start.isoformat())
        if direction == "back":
            for t in [t for t in self._slots if t >= start]:
                del self._slots[t]
            self._expected.clear()
        self._load.reset()
        self._pv.reset()
        self._next = None
        self._learnt_for = None
        self._scoring_day = None
        self._day_errors = {}

    def _advance_to(self, start: datetime) -> None:
        """Step the nowcast slot by slot up to ``start``; a new local day relearns and resets the day bias."""
        if self._next is None:
            self._next = start
            self._relearn(start)
            return
        while self._next < start:
            self._next += self.slot
            self._load.step()
            self._pv.step()
            if self._next.astimezone(JST).date() != (self._next - self.slot).astimezone(JST).date():
                self._relearn(self._next)
                self._load.new_day()
                self._pv.new_day()

    def _relearn(self, day_start: datetime) -> None:
        """Once a day: learn the candidate profiles, pick the most skilful, refit the nowcast statistics."""
        today = day_start.astimezone(JST).date()
        if self._learnt_for == today:
            return
        self._learnt_for = today
        first = today - timedelta(days=self.settings.history_days)
        for t in [t for t, r in self._slots.items() if r.day < first - timedelta(days=1)]:
            del self._slots[t]
        for t in [t for t in self._expected if t < day_start - timedelta(days=1)]:
            del self._expected[t]
        recs = [r for r in self._slots.values() if first <= r.day < today]
        if not recs:
            return
        wd = np.array([r.weekday for r in recs])
        idx = np.array([r.slot_of_day for r in recs])
        for days in DAY_GROUPS:
            self._profiles[days] = profile_from_samples(wd, idx, np.array([r.load_w for r in recs]),
                                                        self.slot_minutes, days)
        crit = np.array([r.critical_w for r in recs])
        self._critical = (profile_from_samples(wd, idx, crit, self.slot_minutes)
                          if np.isfinite(crit).any() else None)
        self.load_model = self._most_skilful()
        # One row per day, one column per slot of the day, NaN where nothing was measured:
        # the fit must see a gap as a gap, not pair the slots either side of it as neighbours.
        per_day = 24 * 60 // self.slot_minutes
        days = sorted({r.day for r in recs})
        row = {d: i for i, d in enumerate(days)}
        load_e = np.full((len(days), per_day), np.nan)
        pv_e = np.full((len(days), per_day), np.nan)
        for r in recs:
            load_e[row[r.day], r.slot_of_day] = r.load_error
            pv_e[row[r.day], r.slot_of_day] = r.pv_error
        s = self.settings
        self._load.retune(fit_error_stats(load_e, s.load_prior, s.min_fit_days))
        self._pv.retune(fit_error_stats(pv_e, s.pv_prior, s.min_fit_days))

    def _most_skilful(self) -> str:
        """The candidate with the lowest mean daily error; before any score, pooled days if learnt."""
        scored = {n: float(np.mean(e)) for n, e in self._skill.items() if e}
        if scored:
            return min(CANDIDATES, key=lambda n: (scored.get(n, math.inf), CANDIDATES.index(n)))
        return "daytype" if self._profiles["daytype"] is not None else "configured"

    def _score(self, start: datetime, rec: _Slot, exp: _Expected) -> None:
        """Add the slot's absolute error per candidate to its day's score; a day is scored at its last slot
        (or when a later day begins, if its last slot never came)."""
        if rec.day != self._scoring_day:
            self._close_scoring_day()
            self._scoring_day = rec.day
        if math.isfinite(rec.load_w):
            for name, w in exp.profile_w.items():
                if math.isfinite(w):
                    self._day_errors.setdefault(name, []).append(abs(rec.load_w - w))
        if (start + self.slot).astimezone(JST).date() != rec.day:
            self._close_scoring_day()

    def _close_scoring_day(self) -> None:
        for name, errors in self._day_errors.items():
            self._skill[name].append(float(np.mean(errors)))
        self._day_errors = {}

    # -- forecasting -----------------------------------------------------------------
    def _expect(self, start: datetime) -> _Expected:
        """What the forecaster would have said of ``start`` with no forecast asked for it (the last weather given)."""
        self._fill_expected([start], np.array([self._last_weather]))
        return self._expected[start]

    def _fill_expected(self, times: Sequence[datetime], weather: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remember per slot the profile candidates, clear sky and weather forecast; return (base load, clear sky)."""
        h = self.hall
        # Clear sky and the configured profile depend on the slot alone: compute them only
        # for slots not remembered yet (a rolling horizon adds one slot per forecast).
        configured, clear = np.empty(len(times)), np.empty(len(times))
        new = []
        for i, t in enumerate(times):
            known = self._expected.get(t)
            if known is None:
                new.append(i)
            else:
                configured[i], clear[i] = known.profile_w["configured"], known.clear_w
        if new:
            fresh = [times[i] for i in new]
            configured[new] = configured_load_w(fresh, h.base_w, h.peak_w, h.profile, slot=self.slot)
            clear[new] = clear_sky_pv_w(fresh, h.lat, h.lon, h.pv_capacity_w, h.tilt_deg, h.azimuth_deg,
                                        slot=self.slot)
        candidates = {"configured": configured}
        for days in DAY_GROUPS:
            prof = self._profiles[days]
            candidates[days] = forecast_load_w(times, configured, prof) if prof is not None else np.full(
                len(times), math.nan)
        for i, t in enumerate(times):
            self._expected[t] = _Expected({n: float(v[i]) for n, v in candidates.items()}, float(clear[i]),
                                          float(weather[i]))
        base = candidates[self.load_model]
        return np.where(np.isfinite(base), base, configured), clear

    def forecast(self, times: Sequence[datetime], price_buy: Sequence[float], price_sell: Sequence[float],
                 weather_factor: float | Sequence[float] = 1.0) -> SiteForecast:
        """A validated :class:`~optimizer.inputs.SiteForecast` for the slots starting at ``times``.

        weather_factor [0..1]: the day-ahead share of clear-sky PV (scalar or per slot).
        """
        if not times:
            raise ValueError("forecast: no times")
        weather = np.clip(np.broadcast_to(np.asarray(weather_factor, dtype=float), (len(times),)), 0.0, 1.0)
        stale = times[0] - timedelta(days=1)
        for t in [t for t in self._expected if t < stale]:  # also when no slot is measured for days
            del self._expected[t]
        base, clear = self._fill_expected(times, weather)
        self._last_weather = float(weather[0])
        ref = self._next or times[0]
        steps = np.array([max(0, round((t - ref) / self.slot)) for t in times])
        same_day = np.array([t.astimezone(JST).date() == ref.astimezone(JST).date() for t in times])
        load = np.maximum(0.0, base * (1.0 + self._load.correction(same_day, steps)))
        pv = clear * np.clip(weather + self._pv.correction(same_day, steps), 0.0, 1.0)
        crit_conf = configured_critical_w(times, self.hall.critical_w, slot=self.slot)
        crit = forecast_load_w(times, crit_conf, self._critical)
        return SiteForecast.from_columns(times, price_buy=price_buy, price_sell=price_sell, load_w=load, pv_w=pv,
                                         critical_load_w=crit)

    # -- history, to survive a restart ------------------------------------------------
    def history(self) -> list[tuple[datetime, float, float, float, float]]:
        """The measured slots kept for learning, oldest first: (start, load, PV, critical [W], weather forecast).

        NaN marks a value not measured (or no weather forecast made).
        """
        return [(t, r.load_w, r.pv_w, r.critical_w, r.weather)
                for t, r in sorted(self._slots.items(), key=lambda item: item[0])]

    def restore(self, rows: Sequence[tuple[datetime, float, float, float, float]],
                now: datetime | None = None) -> int:
        """Replay saved :meth:`history` rows (before any live slot) so profiles, skill and nowcast come back.

        Rows at or after ``now`` (written under a clock that ran fast) and
        rows failing :meth:`observe`'s checks are skipped; a row without a
        weather forecast (it arrived late) teaches the profiles, not the PV
        nowcast.  Returns the rows taken.
        """
        taken = 0
        for t, load, pv, crit, weather in sorted(rows, key=lambda r: r[0]):
            if now is not None and t >= now:
                continue
            try:
                self._fill_expected([t], np.array([weather]))
                self.observe(t, *(None if not math.isfinite(v) else v for v in (load, pv, crit)))
            except ValueError:
                continue
            taken += 1
        return taken

    @property
    def skill_w(self) -> dict[str, float]:
        """Mean absolute error [W] of each load-profile candidate over the scored days (NaN: not scored yet)."""
        return {n: float(np.mean(e)) if e else math.nan for n, e in self._skill.items()}

    @property
    def nowcast_stats(self) -> dict[str, ErrorStats]:
        """The nowcast statistics in use, per quantity ('load', 'pv')."""
        return {"load": self._load.stats, "pv": self._pv.stats}
