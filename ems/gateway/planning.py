"""The optimizer's schedule as the daemon's plan (MPC): re-plan every slot, follow it through the guard.

:class:`OptimizerPlanSource` keeps one :class:`optimizer.planner.SitePlanner`
per site (warm re-solves), builds the forecast from the site's configuration
(clear-sky PV, configured load profiles) and a price source, and re-plans

* at every slot boundary,
* when the effective mode changes,
* when dispatch commitments change,
* when the measured net load strays far from the plan's for a while,
* when the plan has expired.

In vpp the cycle carries out the slot with
:func:`optimizer.execution.self_use_setpoint`: the battery charges the PV
surplus that would otherwise be exported beyond the plan and covers
unexpected load where the plan meant not to import, but never charges more
from the grid than planned nor discharges to keep up a planned export.  The backtest uses
the same function, and the guard still clips whatever the physics or the
reserve forbid.  In
disaster_reserve the plan's battery power is used as it is.  Other modes
(manual, safe, islanded) have no optimizer plan: the rule applies.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from devices.readings import Nature
from ems.config import SiteConfig
from ems.gateway.history_store import history_path, load_history, save_history
from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.execution import self_use_setpoint
from optimizer.forecast import HallProfile, clear_sky_pv_w
from optimizer.forecaster import HallForecaster
from optimizer.plan import Plan, PlanExpired
from optimizer.planner import SitePlanner
from optimizer.prices import synthetic_spot_prices
from optimizer.settings import Commitment, PlanSettings

log = logging.getLogger(__name__)

#: Modes the optimizer plans for; the rest follow the rule.
PLANNED_MODES = (Mode.VPP, Mode.DISASTER_RESERVE)


@dataclass(frozen=True, slots=True)
class SlotPrices:
    """Buy and sell prices [JPY/kWh] per slot, and where they came from (shown with the plan)."""

    buy: np.ndarray
    sell: np.ndarray
    source: str


class PriceProvider(Protocol):
    """Prices for the slots a plan covers; never raises for a missing slot (it falls back and says so)."""

    def prices(self, times: Sequence[datetime]) -> SlotPrices: ...


class WeatherProvider(Protocol):
    """The PV weather factor [0..1] (1 = clear sky) for the day of ``t``, and where it came from."""

    def weather_factor(self, t: datetime) -> tuple[float, str]: ...


@dataclass(frozen=True, slots=True)
class PriceSource:
    """Buy and sell prices [JPY/kWh] per slot start.

    spot: JEPX-like spot price per time (default: the seeded synthetic
    generator; a loaded JEPX CSV's ``PriceSeries.at`` fits too);
    buy = spot + buy_adder_jpy_per_kwh (network charges, retail margin);
    sell = spot × sell_factor.
    """

    spot: Callable[[Sequence[datetime]], np.ndarray]
    buy_adder_jpy_per_kwh: float = 12.0
    sell_factor: float = 1.0

    def prices(self, times: Sequence[datetime]) -> tuple[np.ndarray, np.ndarray]:
        """(buy, sell) [JPY/kWh] for ``times``."""
        spot = np.asarray(self.spot(times), dtype=float)
        return spot + self.buy_adder_jpy_per_kwh, spot * self.sell_factor


def synthetic_prices(seed: int = 0) -> PriceSource:
    """JEPX-like synthetic prices (seeded), for the simulated fleet and tests."""
    return PriceSource(spot=lambda times: synthetic_spot_prices(times, seed=seed))


def hall_profile(site: SiteConfig) -> HallProfile:
    """What the forecaster needs of a site, from its configuration."""
    return HallProfile(
        lat=site.lat, lon=site.lon, pv_capacity_w=site.pv.capacity_w,
        base_w=site.loads.base_w, peak_w=site.loads.peak_w, critical_w=site.loads.critical_w,
        tilt_deg=site.pv.tilt_deg, azimuth_deg=site.pv.azimuth_deg, profile=site.loads.profile,
    )


def slot_start(t: datetime, slot: timedelta) -> datetime:
    """Start of the market slot containing ``t`` (slots aligned to UTC midnight, hence to JST too)."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((t - epoch) // slot) * slot


class SlotMeans:
    """Mean hall load and PV [W] over each market slot, from the snapshots the daemon sees.

    load = net load + PV (net load = meter + battery).  A slot counts only if
    its fresh samples span at least ``min_cover`` of it (a slot half lost to
    a restart or a meter outage would teach a wrong mean).
    """

    def __init__(self, slot: timedelta, has_pv: bool, min_cover: float = 0.5, max_age_s: float = 60.0,
                 is_dark: Callable[[datetime], bool] | None = None):
        self.slot, self.has_pv, self.min_cover, self.max_age_s = slot, has_pv, min_cover, max_age_s
        self.is_dark = is_dark
        self._start: datetime | None = None
        self._first = self._last = None
        self._sum = np.zeros(2)
        self._n = 0

    def add(self, snap: SiteSnapshot) -> tuple[datetime, float, float | None] | None:
        """Take one snapshot; return (slot start, mean load [W], mean PV [W] or None) when a slot has finished."""
        start = slot_start(snap.time, self.slot)
        done = None
        if self._start is not None and start != self._start:
            covered = (self._last - self._first).total_seconds() if self._n else 0.0
            if self._n and covered >= self.min_cover * self.slot.total_seconds() - 60.0:
                mean = self._sum / self._n
                done = (self._start, float(mean[0]), float(mean[1]) if self.has_pv else None)
            self._first, self._n, self._sum = None, 0, np.zeros(2)
        self._start = start
        sample = self._sample(snap)
        if sample is not None:
            self._sum += sample
            self._n += 1
            self._first = self._first or snap.time
            self._last = snap.time
        return done

    def _fresh(self, snap: SiteSnapshot, reading) -> bool:
        return reading is not None and (snap.age_s(reading) or 0.0) <= self.max_age_s

    def _sample(self, snap: SiteSnapshot) -> np.ndarray | None:
        net = snap.net_load_w
        if net is None or not (self._fresh(snap, snap.meter) and self._fresh(snap, snap.battery)):
            return None
        if not self.has_pv:
            pv = 0.0
        elif self._fresh(snap, snap.pv):
            pv = max(0.0, snap.pv.power_w)
        elif self.is_dark is not None and self.is_dark(snap.time):
            pv = 0.0  # many inverters sleep (stop answering) at night: the hall's night load is still learnt
        else:
            return None
        load = net + pv
        if not (np.isfinite(load) and load >= 0):
            return None  # implausible combination (e.g. readings taken at different moments): skip
        return np.array([load, pv])


class OptimizerPlanSource:
    """PlanSource for :class:`ems.gateway.daemon.EdgeDaemon` backed by the Pyomo/HiGHS planner.

    Forecasts come from a :class:`~optimizer.forecaster.HallForecaster` fed
    with each finished slot's measured load and PV (:class:`SlotMeans`): it
    learns the hall's profile and corrects the day's weather as it goes.

    horizon_slots: slots planned ahead (48 = one day of 30-minute slots);
    deviation_w [W] and deviation_s [s]: a measured net load further than
    this from the plan's for this long triggers a re-plan.
    """

    def __init__(self, site: SiteConfig, *, slot_minutes: int = 30, horizon_slots: int = 48,
                 prices: PriceSource | None = None, settings: PlanSettings = PlanSettings(),
                 weather_factor: float | None = None, deviation_w: float | None = None,
                 deviation_s: float = 300.0, state_dir: str | Path | None = None):
        self.site = site
        self.slot = timedelta(minutes=slot_minutes)
        self.horizon_slots = horizon_slots
        self.prices = prices or synthetic_prices(site.simulator.seed if site.simulator else 0)
        self.planner = SitePlanner(site.safety_policy(), settings, site.id)
        self.profile = hall_profile(site)
        self.forecaster = HallForecaster(self.profile, self.slot)
        self._slot_means = SlotMeans(self.slot, has_pv=site.device(Nature.PV) is not None,
                                     is_dark=self._is_dark)
        self.history_file = history_path(state_dir, site.id) if state_dir is not None else None
        self._restored = False
        self._dark_minute: tuple[datetime, bool] | None = None
        cloud = site.simulator.cloud_factor if site.simulator else 0.2
        self.weather_factor = weather_factor if weather_factor is not None else 1.0 - cloud
        self.deviation_w = deviation_w if deviation_w is not None else 0.5 * site.inverter.rated_w
        self.deviation_s = deviation_s
        self.plan: Plan | None = None
        self.plans_made = 0
        self.last_reason = ""
        self._commitments: tuple[Commitment, ...] = ()
        self._dirty = True
        self._deviating_since: datetime | None = None

    # -- inputs from the daemon -------------------------------------------------------
    def set_commitments(self, commitments: Sequence[Commitment]) -> None:
        """Replace the dispatch commitments (leases); the next cycle re-plans."""
        self._commitments = tuple(commitments)
        self._dirty = True

    @property
    def commitments(self) -> tuple[Commitment, ...]:
        """Dispatch commitments in force."""
        return self._commitments

    def use_stale_limit(self, max_age_s: float) -> None:
        """Readings older than this [s of the daemon's clock] are not learnt from (the daemon's own stale limit,
        which scales with a simulation's speed)."""
        self._slot_means.max_age_s = max_age_s

    def invalidate(self, why: str) -> None:
        """Force a re-plan at the next cycle (e.g. a mode change)."""
        self._dirty = True
        self.last_reason = why

    # -- the PlanSource protocol -------------------------------------------------------
    def setpoint_at(self, snap: SiteSnapshot, mode: Mode) -> tuple[float, str] | None:
        """Requested setpoint [W] and why, or None to let the rule decide."""
        if mode not in PLANNED_MODES or snap.battery is None:
            return None
        now = snap.time
        self._learn(snap, mode)
        self._drop_lapsed(now)
        why = self._replan_reason(snap, mode)
        if why:
            self._replan(snap, mode, why)
        plan = self.plan
        if plan is None:
            return None
        try:
            i = plan.slot_index(now)
        except PlanExpired:
            return None
        tag = f"{'fallback ' if plan.fallback else ''}plan {plan.status.value}"
        plan_w = float(plan.battery_w[i])
        if mode is Mode.VPP and snap.net_load_w is not None:
            planned_net = float(plan.grid_import_w[i] - plan.grid_export_w[i]) + plan_w
            w = self_use_setpoint(plan_w, float(plan.grid_import_w[i]), float(plan.grid_export_w[i]), planned_net,
                                  snap.net_load_w)
            return w, f"{tag}: battery {plan_w:.0f} W planned, {w - plan_w:+.0f} W for the forecast error"
        return plan_w, f"{tag}: battery {plan_w:.0f} W"

    # -- internals ---------------------------------------------------------------------
    def _is_dark(self, t: datetime) -> bool:
        """No sun on the panels at ``t``: a sleeping inverter's silence then means 0 W, not unknown.

        Asked every cycle while the inverter sleeps; the sun moves little in a
        minute, so the answer (~80 µs of sun geometry) is kept per minute.
        """
        minute = t.replace(second=0, microsecond=0)
        if self._dark_minute is None or self._dark_minute[0] != minute:
            p = self.profile
            dark = float(clear_sky_pv_w([minute], p.lat, p.lon, max(p.pv_capacity_w, 1.0), p.tilt_deg,
                                        p.azimuth_deg, slot=timedelta(minutes=1))[0]) < 1.0
            self._dark_minute = (minute, dark)
        return self._dark_minute[1]

    def _learn(self, snap: SiteSnapshot, mode: Mode) -> None:
        """Average the measured load and PV over each slot and teach the forecaster each finished one.

        Only grid-connected planned modes get here, so shed (islanded) load
        never enters the profile.  In disaster_reserve a full battery with no
        export means curtailed PV: its load is learnt, its PV is not (it
        would look like cloud).
        """
        if not self._restored:
            self._restored = True  # on the first snapshot: its time tells which saved rows are from the future
            self._restore_history(snap.time)
        finished = self._slot_means.add(snap)
        if finished is None:
            return
        start, load_w, pv_w = finished
        if mode is Mode.DISASTER_RESERVE:
            pv_w = None
        try:
            self.forecaster.observe(start, load_w, pv_w)
        except ValueError as exc:  # an implausible mean must not stop planning; the guard sees the readings
            log.warning("%s: forecaster refused slot %s: %s", self.site.id, start.isoformat(), exc)
            return
        if self.history_file is not None:
            try:
                save_history(self.history_file, self.forecaster.history())
            except OSError as exc:  # a full or read-only disk must not stop control
                log.warning("%s: cannot save the forecaster history to %s: %s", self.site.id, self.history_file, exc)

    def _restore_history(self, now: datetime) -> None:
        if self.history_file is None:
            return
        rows, problems = load_history(self.history_file)
        for problem in problems[:10]:
            log.warning("%s: forecaster history: %s (line skipped)", self.site.id, problem)
        if rows:
            taken = self.forecaster.restore(rows, now)
            log.info("%s: forecaster restored %d of %d slots from %s", self.site.id, taken, len(rows),
                     self.history_file)

    def _drop_lapsed(self, now: datetime) -> None:
        """Dispatch leases lapse back to the local plan at their end."""
        live = tuple(c for c in self._commitments if c.end > now)
        if live != self._commitments:
            self._commitments = live
            self._dirty = True

    def _replan_reason(self, snap: SiteSnapshot, mode: Mode) -> str:
        plan, now = self.plan, snap.time
        if plan is None:
            return "first plan"
        if self._dirty:
            return self.last_reason or "inputs changed"
        if plan.mode != mode.value:
            return f"mode is now {mode.value}"
        if not plan.is_valid_at(now):
            return "plan expired"
        if slot_start(now, self.slot) > slot_start(plan.created_at, self.slot):
            return "new slot"
        return self._deviation_reason(snap, plan)

    def _deviation_reason(self, snap: SiteSnapshot, plan: Plan) -> str:
        net = snap.net_load_w
        if net is None:
            return ""
        i = plan.slot_index(snap.time)
        planned_net = float(plan.grid_import_w[i] - plan.grid_export_w[i] + plan.battery_w[i])
        if abs(net - planned_net) <= self.deviation_w:
            self._deviating_since = None
            return ""
        if self._deviating_since is None:
            self._deviating_since = snap.time
            return ""
        if (snap.time - self._deviating_since).total_seconds() >= self.deviation_s:
            self._deviating_since = None
            return f"net load {net:.0f} W far from the plan's {planned_net:.0f} W"
        return ""

    def _replan(self, snap: SiteSnapshot, mode: Mode, why: str) -> None:
        start = slot_start(snap.time, self.slot)
        times = [start + k * self.slot for k in range(self.horizon_slots)]
        buy, sell = self.prices.prices(times)
        forecast = self.forecaster.forecast(times, buy, sell, weather_factor=self.weather_factor)
        soc = min(100.0, max(0.0, snap.battery.soc_pct))
        commitments = self._commitments if mode is Mode.VPP else ()
        self.plan = self.planner.plan(forecast, soc, mode.value, now=snap.time, commitments=commitments)
        self.plans_made += 1
        self._dirty = False
        self.last_reason = why
        p = self.plan
        level = logging.WARNING if p.fallback else logging.DEBUG
        log.log(level, "%s: re-planned (%s): %s, %.1f ms solve, shortfall %.0f Wh%s", self.site.id, why,
                p.status.value, p.solve_ms, p.reserve_shortfall_wh, f"; {p.message}" if p.message else "")
