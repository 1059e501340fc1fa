"""Economic backtest of one hall: MPC vs perfect foresight vs the rule, on a simulated year.

Pure computation (seeded): the "actual" weather, load and spot prices are
generated, then three strategies run over them at the slot length given:

* **MPC**: every slot, plan the next ``horizon`` slots from forecasts made
  by the daemon's own :class:`~optimizer.forecaster.HallForecaster` (PV:
  clear sky × a noisy forecast of the day's weather, corrected by today's
  measurements; load: the most skilful profile learnt from the last four
  weeks, likewise corrected; prices: the JEPX day-ahead prices once
  published at about 11:00 JST for the next day, yesterday's prices
  beyond), carry out the first slot with the daemon's execution rule on the
  actual data, feed the slot's measurements back, repeat (warm re-solves).
* **perfect foresight**: one LP over the whole period on the actual data.
* **rule**: self-consumption with the same reserve (:mod:`optimizer.rule`).

Costs [JPY] count imports at the buy price, exports at the sell price,
battery wear at the degradation cost, and value the change of stored energy
at the terminal value, so strategies ending with different SoC compare fairly.
Savings are against the hall without a battery.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from optimizer.execution import self_use_setpoint
from optimizer.data import prepare_run
from optimizer.forecast import JST, HallProfile, clear_sky_pv_w, configured_critical_w, configured_load_w
from optimizer.forecaster import HallForecaster
from optimizer.highs_direct import DirectSiteLP
from optimizer.inputs import SiteForecast
from optimizer.modes import reserve_floor_series
from optimizer.planner import SitePlanner
from optimizer.prices import spot_linked, synthetic_spot_prices
from optimizer.reserve import SafetyPolicy
from optimizer.rule import rule_step
from optimizer.settings import PlanSettings

#: Retail buy price = spot + this [JPY/kWh] (wheeling charge, levies, retail margin).
BUY_ADDER_JPY_PER_KWH = 12.0


@dataclass(frozen=True)
class Hall:
    """The simulated hall (defaults: hall-01 of config/fleet.yaml)."""

    policy: SafetyPolicy = SafetyPolicy(capacity_wh=15000, max_charge_w=5900, max_discharge_w=5900,
                                        reserve_hours={"vpp": 4.0, "disaster_reserve": 12.0},
                                        grid_import_limit_w=15000, grid_export_limit_w=10000)
    lat: float = 35.5117
    lon: float = 134.1787
    pv_w: float = 10000.0
    base_w: float = 540.0
    peak_w: float = 3600.0
    critical_w: float = 900.0

    def profile(self) -> HallProfile:
        """What the forecaster knows of the hall (the configured profiles, not the simulated noise)."""
        return HallProfile(lat=self.lat, lon=self.lon, pv_capacity_w=self.pv_w, base_w=self.base_w,
                           peak_w=self.peak_w, critical_w=self.critical_w)


@dataclass
class StrategyResult:
    """Totals of one strategy: energy cost, wear, stored-energy change, adjusted cost [JPY], violations."""

    name: str
    energy_cost_jpy: float
    wear_jpy: float
    stored_change_wh: float
    adjusted_cost_jpy: float
    throughput_kwh: float
    reserve_violations: int
    savings_jpy: float = 0.0
    daily_cost_jpy: np.ndarray = field(default_factory=lambda: np.zeros(0))  # energy + wear per day


@dataclass
class BacktestResult:
    """Results of all strategies, and run figures (slots, wall times [s], MPC solve times [ms])."""

    days: int
    slots: int
    no_battery_cost_jpy: float
    strategies: dict[str, StrategyResult]
    wall_s: dict[str, float] = field(default_factory=dict)
    mpc_solve_ms: list[float] = field(default_factory=list)
    mpc_fallbacks: int = 0
    no_battery_daily_jpy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: The MPC forecaster at the end: load model, nowcast statistics, next-slot MAE of load and PV [W].
    forecaster: dict = field(default_factory=dict)

    def pct_of_perfect(self, name: str) -> float:
        """Savings of ``name`` as % of perfect-foresight savings."""
        pf = self.strategies["perfect"].savings_jpy
        return 100.0 * self.strategies[name].savings_jpy / pf if pf > 0 else float("nan")


@dataclass(frozen=True)
class ErrorModel:
    """How the actual data strays from the forecasts.

    weather_sd: error of the day's weather-factor forecast; pv_sd / pv_rho
    and load_sd / load_rho: multiplicative AR(1) noise of PV and load per
    slot (stationary standard deviation, lag-one correlation).  The MPC's
    forecaster (:class:`optimizer.forecaster.HallForecaster`, the daemon's)
    is not told these: it fits its nowcast statistics from the errors it
    has seen.
    """

    weather_sd: float = 0.10
    pv_sd: float = 0.15
    pv_rho: float = 0.7
    load_sd: float = 0.15
    load_rho: float = 0.8
    #: The hall's true mean load against its configured profile: × scale, later by shift [h]
    #: (a configuration is a rough guess: the forecaster has to learn the difference).
    load_scale: float = 1.0
    load_shift_h: float = 0.0


def _ar1(rng: np.random.Generator, n: int, sd: float, rho: float) -> np.ndarray:
    """AR(1) series with stationary standard deviation ``sd`` and lag-one correlation ``rho``."""
    out = np.empty(n)
    shocks = rng.normal(0.0, sd * math.sqrt(1 - rho * rho), n)
    x = rng.normal(0.0, sd)
    for i in range(n):
        x = rho * x + shocks[i]
        out[i] = x
    return out


@dataclass(frozen=True, eq=False)
class World:
    """The actual (simulated) data: slot starts, prices [JPY/kWh], powers [W], and the PV forecast weather."""

    times: tuple[datetime, ...]
    price_buy: np.ndarray
    price_sell: np.ndarray
    load_w: np.ndarray
    pv_w: np.ndarray
    critical_w: np.ndarray
    weather_forecast: np.ndarray  # per slot, the day's forecast weather factor [0..1]


def make_world(hall: Hall, days: int, seed: int = 7, start: datetime | None = None,
               slot_minutes: int = 30, extra_slots: int = 96, errors: ErrorModel = ErrorModel()) -> World:
    """Seeded actual data for ``days`` (+ ``extra_slots`` so the last MPC horizons have data)."""
    start = start or datetime(2024, 4, 1, tzinfo=JST).astimezone(timezone.utc)
    step = timedelta(minutes=slot_minutes)
    n = days * 24 * 60 // slot_minutes + extra_slots
    times = tuple(start + i * step for i in range(n))
    rng = np.random.default_rng(seed)
    per_day = 24 * 60 // slot_minutes
    n_days = math.ceil(n / per_day)
    weather_day = np.clip(rng.beta(2.2, 1.2, n_days), 0.05, 1.0)          # clear-sky share per day
    forecast_day = np.clip(weather_day + rng.normal(0, errors.weather_sd, n_days), 0.05, 1.0)
    day_of = np.arange(n) // per_day
    clear = clear_sky_pv_w(times, hall.lat, hall.lon, hall.pv_w, slot=step)
    pv = clear * np.clip(weather_day[day_of] * (1 + _ar1(rng, n, errors.pv_sd, errors.pv_rho)), 0, 1)
    true_times = [t - timedelta(hours=errors.load_shift_h) for t in times]
    load = errors.load_scale * configured_load_w(true_times, hall.base_w, hall.peak_w, slot=step) * np.clip(
        1 + _ar1(rng, n, errors.load_sd, errors.load_rho), 0.3, 2)
    crit = configured_critical_w(times, hall.critical_w, slot=step)
    spot = synthetic_spot_prices(times, seed=seed, sunny=weather_day[day_of])
    return World(times, spot_linked(spot, BUY_ADDER_JPY_PER_KWH), spot, load, pv, crit, forecast_day[day_of])


def _price_forecast(world: World, k: int, horizon: int, per_day: int) -> tuple[np.ndarray, np.ndarray]:
    """Known day-ahead prices (published ~11:00 JST for the next day); the same slot a day earlier beyond."""
    local = world.times[k].astimezone(JST)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    known_until = midnight + timedelta(days=2 if local.hour >= 11 else 1)
    src = np.arange(k, k + horizon)
    for i, j in enumerate(src):
        while world.times[j] >= known_until:
            j -= per_day
        src[i] = j
    return world.price_buy[src], world.price_sell[src]


def _settle(e_wh: float, battery_w: float, load: float, pv: float, policy: SafetyPolicy,
            dt: float) -> tuple[float, float, float, float]:
    """Execute a battery setpoint on actual data: returns (battery [W] done, import [W], export [W], new energy [Wh])."""
    if battery_w >= 0:
        battery_w = min(battery_w, policy.max_discharge_w, max(0.0, (e_wh - policy.min_energy_wh)
                                                                * policy.discharge_efficiency / dt))
    else:
        battery_w = -min(-battery_w, policy.max_charge_w, max(0.0, (policy.max_energy_wh - e_wh)
                                                                / (policy.charge_efficiency * dt)))
    grid = load - pv - battery_w
    imp = min(max(grid, 0.0), policy.grid_import_limit_w)
    exp = min(max(-grid, 0.0), policy.grid_export_limit_w)
    if battery_w >= 0:
        e_wh -= battery_w * dt / policy.discharge_efficiency
    else:
        e_wh -= battery_w * dt * policy.charge_efficiency
    return battery_w, imp, exp, e_wh


def _guard_max_w(e_wh: float, floor_wh: float, policy: SafetyPolicy, dt: float) -> float:
    """Largest battery output [W] (+ discharging) that ends the slot at or above the floor."""
    if e_wh >= floor_wh:
        return (e_wh - floor_wh) * policy.discharge_efficiency / dt
    return -(floor_wh - e_wh) / (policy.charge_efficiency * dt)


def _daily(per_slot: np.ndarray, per_day: int) -> np.ndarray:
    return per_slot.reshape(-1, per_day).sum(axis=1)


def _totals(name, world, n, imp, exp, batt, energy, floors, e0, settings, value_jpy_per_kwh, dt):
    slot_energy = (world.price_buy[:n] * imp - world.price_sell[:n] * exp) * dt / 1000
    slot_wear = np.abs(batt) * dt / 1000 * settings.degradation_jpy_per_kwh
    energy_cost = float(np.sum(slot_energy))
    wear = float(np.sum(slot_wear))
    throughput = wear / settings.degradation_jpy_per_kwh if settings.degradation_jpy_per_kwh else float(
        np.sum(np.abs(batt)) * dt / 1000)
    change = float(energy[-1] - e0)
    violations = int(np.sum(energy < floors[:n] - 1.0))
    return StrategyResult(name, energy_cost, wear, change,
                          energy_cost + wear - value_jpy_per_kwh * change / 1000, throughput, violations,
                          daily_cost_jpy=_daily(slot_energy + slot_wear, int(round(24 / dt))))


def run_backtest(days: int = 28, seed: int = 7, horizon: int = 48, hall: Hall = Hall(),
                 settings: PlanSettings = PlanSettings(), soc_pct: float = 50.0, execution: str = "selfuse",
                 perfect_forecasts: bool = False, errors: ErrorModel = ErrorModel(),
                 progress=None) -> BacktestResult:
    """Run the three strategies over ``days`` of simulated data and return their results.

    execution: how the MPC's first slot is carried out on the actual data:
    "battery" runs the planned battery power (the forecast error goes to the
    grid); "selfuse" (default) is the daemon's rule: the battery takes PV
    surplus the forecast missed, and unexpected load only where the plan
    meant not to import, never discharging below the reserve floor for an
    error (the guard).
    perfect_forecasts: give the MPC the actual data (isolates the cost of
    the finite horizon).
    """
    if execution not in ("battery", "selfuse"):
        raise ValueError(f"execution must be 'battery' or 'selfuse', not {execution!r}")
    world = make_world(hall, days, seed, errors=errors)
    p = hall.policy
    per_day = 48
    n = days * per_day
    dt = 0.5
    e0 = p.capacity_wh * soc_pct / 100
    value = p.discharge_efficiency * float(np.median(world.price_buy[:n])) - settings.degradation_jpy_per_kwh
    actual = SiteForecast.from_columns(world.times, price_buy=world.price_buy, price_sell=world.price_sell,
                                       load_w=world.load_w, pv_w=world.pv_w, critical_load_w=world.critical_w)
    floors = reserve_floor_series(p, "vpp", actual)
    net = world.load_w[:n] - world.pv_w[:n]
    nb_imp = np.minimum(np.maximum(net, 0), p.grid_import_limit_w)
    nb_exp = np.minimum(np.maximum(-net, 0), p.grid_export_limit_w)
    nb_slot = (world.price_buy[:n] * nb_imp - world.price_sell[:n] * nb_exp) * dt / 1000
    no_battery = float(np.sum(nb_slot))
    result = BacktestResult(days, n, no_battery, {}, no_battery_daily_jpy=_daily(nb_slot, per_day))

    # Perfect foresight: one LP over the period, the same terminal value as the comparison.
    tick = time.perf_counter()
    pf_settings = PlanSettings(**{**_fields(settings), "terminal_value_jpy_per_kwh": value})
    run = prepare_run(actual.window(0, n), p, soc_pct, "vpp", pf_settings)
    lp = DirectSiteLP(n, dt, p.charge_efficiency, p.discharge_efficiency, settings.self_discharge_per_h)
    lp.load(run)
    ok, _, _ = lp.solve()
    if not ok:  # a bound that is not the optimum must never be printed as "perfect"
        status = lp.highs.modelStatusToString(lp.highs.getModelStatus())
        raise RuntimeError(f"perfect-foresight LP over {n} slots not solved to optimality: {status}")
    s = lp.schedule()
    batt = s.discharge_w - s.charge_w
    result.strategies["perfect"] = _totals("perfect", world, n, s.grid_import_w, s.grid_export_w, batt, s.soc_wh,
                                           floors, e0, settings, value, dt)
    result.wall_s["perfect"] = time.perf_counter() - tick

    # Rule on actuals.
    tick = time.perf_counter()
    cols = np.zeros((4, n))
    e = e0
    for k in range(n):
        c, d, imp, exp, _, _, _, e = rule_step(e, world.load_w[k], world.pv_w[k], world.critical_w[k], floors[k], run)
        cols[:, k] = (d - c, imp, exp, e)
    result.strategies["rule"] = _totals("rule", world, n, cols[1], cols[2], cols[0], cols[3], floors, e0, settings,
                                        value, dt)
    result.wall_s["rule"] = time.perf_counter() - tick

    # MPC on forecasts.
    tick = time.perf_counter()
    planner = SitePlanner(p, settings)
    forecaster = HallForecaster(hall.profile(), timedelta(minutes=30))
    cols = np.zeros((4, n))
    e = e0
    next_slot_error = np.zeros((2, n))  # |load|, |PV| error of the first forecast slot [W]
    for k in range(n):
        win = slice(k, k + horizon)
        times = world.times[win]
        buy, sell = _price_forecast(world, k, horizon, per_day)
        if perfect_forecasts:
            fc = actual.window(k, horizon)
        else:
            fc = forecaster.forecast(times, buy, sell, weather_factor=world.weather_forecast[win])
        next_slot_error[:, k] = (abs(fc.load_w[0] - world.load_w[k]), abs(fc.pv_w[0] - world.pv_w[k]))
        plan = planner.plan(fc, min(100.0, max(0.0, e / p.capacity_wh * 100)), "vpp")
        result.mpc_solve_ms.append(plan.solve_ms)
        result.mpc_fallbacks += plan.fallback
        setpoint = float(plan.battery_w[0])
        if execution == "selfuse":
            # The daemon's own execution rule (optimizer/execution.py), then the guard's floor.
            actual_net = float(world.load_w[k] - world.pv_w[k])
            wanted = self_use_setpoint(setpoint, float(plan.grid_import_w[0]), float(plan.grid_export_w[0]),
                                       float(fc.load_w[0] - fc.pv_w[0]), actual_net)
            setpoint = wanted if wanted <= setpoint else min(wanted, max(setpoint, _guard_max_w(e, floors[k], p, dt)))
        b, imp, exp, e = _settle(e, setpoint, world.load_w[k], world.pv_w[k], p, dt)
        cols[:, k] = (b, imp, exp, e)
        forecaster.observe(world.times[k], float(world.load_w[k]), float(world.pv_w[k]))
        if progress and k % per_day == per_day - 1:
            progress(k // per_day + 1, days)
    result.strategies["mpc"] = _totals("mpc", world, n, cols[1], cols[2], cols[0], cols[3], floors, e0, settings,
                                       value, dt)
    result.wall_s["mpc"] = time.perf_counter() - tick
    result.forecaster = {"load_model": forecaster.load_model, "skill_w": forecaster.skill_w,
                         "nowcast": forecaster.nowcast_stats, "next_slot_mae_w": {
                             "load": float(next_slot_error[0].mean()), "pv": float(next_slot_error[1].mean())}}
    for r in result.strategies.values():
        r.savings_jpy = no_battery - r.adjusted_cost_jpy
    return result


def _fields(settings: PlanSettings) -> dict:
    return {name: getattr(settings, name) for name in settings.__slots__}
