"""What each mode changes in the site model: limits, the reserve floor per slot and the terminal value.

The reserve itself is computed by :mod:`optimizer.reserve` (the same formula
the real-time guard uses); here it becomes a per-slot floor on stored energy
and is *ramped* so it is always reachable from the measured state of charge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from optimizer.inputs import SiteForecast
from optimizer.reserve import SafetyPolicy, reserve_floor_wh
from optimizer.settings import ISLANDED_TERMINAL_VALUE_JPY_PER_KWH, MODES, PlanSettings


@dataclass(frozen=True, slots=True)
class ModeLimits:
    """Limits a mode puts on the battery and the grid [W] (all >= 0)."""

    max_charge_w: float
    max_discharge_w: float
    max_import_w: float
    max_export_w: float


def check_mode(mode: str) -> str:
    """Return ``mode`` if the optimizer plans for it, else raise ValueError naming the known modes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} for the optimizer (known: {', '.join(MODES)})")
    return mode


def mode_limits(policy: SafetyPolicy, mode: str) -> ModeLimits:
    """Power limits [W] in ``mode``.

    vpp: the policy's limits.  disaster_reserve: no export and no discharge
    (the battery fills and holds).  islanded: no grid at all.
    """
    check_mode(mode)
    if mode == "vpp":
        return ModeLimits(policy.max_charge_w, policy.max_discharge_w,
                          policy.grid_import_limit_w, policy.grid_export_limit_w)
    if mode == "disaster_reserve":
        return ModeLimits(policy.max_charge_w, 0.0, policy.grid_import_limit_w, 0.0)
    return ModeLimits(policy.max_charge_w, policy.max_discharge_w, 0.0, 0.0)


def reserve_floor_series(policy: SafetyPolicy, mode: str, forecast: SiteForecast) -> np.ndarray:
    """Unramped floor F_t [Wh] on the stored energy at the end of each slot t.

    F_t = E_min + R(L_{t+1…}, PV_{t+1…}, H_mode): the energy needed from the end of
    slot t on, by :func:`optimizer.reserve.reserve_floor_wh` (the guard's formula).
    Islanded: E_min (the reserve is there to be used).
    """
    if mode == "islanded":
        return np.full(forecast.n, policy.min_energy_wh)
    crit = forecast.critical_load_w.tolist()
    pv = forecast.pv_w.tolist()
    # The formula only looks H hours ahead: hand it just those slots (plain
    # lists, as reserve.py expects), not the whole remaining series.
    span = int(math.ceil(policy.hours_for(mode) / forecast.slot_h)) + 1
    out = np.empty(forecast.n)
    for t in range(forecast.n):
        nxt = min(t + 1, forecast.n - 1)  # the last slot's future is its own value, extended
        out[t] = reserve_floor_wh(policy, mode, crit[nxt:nxt + span], pv[nxt:nxt + span], forecast.slot_h)
    return out


def reachable_charge_w(policy: SafetyPolicy, limits: ModeLimits, forecast: SiteForecast) -> np.ndarray:
    """Charging power [W] surely available in each slot: min(P_c, max(0, import limit − (load − PV)))."""
    spare = limits.max_import_w - (forecast.load_w - forecast.pv_w)
    return np.minimum(limits.max_charge_w, np.maximum(0.0, spare))


def ramped_floor(floor_wh: np.ndarray, soc_wh: float, reach_w: np.ndarray, policy: SafetyPolicy,
                 slot_h: float, self_discharge_per_h: float) -> np.ndarray:
    """Floor ramped so it is reachable: min(F_t, r_t) [Wh].

    r_t = r_{t−1}·(1 − σ·Δt) + η_c·P^reach_t·Δt, r_{−1} = measured stored energy:
    the energy the battery holds at the end of slot t if it charges as hard
    as it surely can from now.
    """
    keep = 1.0 - self_discharge_per_h * slot_h
    r = np.empty_like(floor_wh)
    level = soc_wh
    for t in range(len(floor_wh)):
        level = level * keep + policy.charge_efficiency * reach_w[t] * slot_h
        r[t] = level
    return np.minimum(floor_wh, r)


def event_floor(policy: SafetyPolicy, forecast: SiteForecast, reach_w: np.ndarray,
                event_time: datetime) -> np.ndarray:
    """Disaster floor with a known event time [Wh]: full reserve from the event on, the latest-start ramp before.

    For slots ending before the event: max(F^vpp_t, F^dis_k − Σ_{j=t+1}^{k} η_c·P^reach_j·Δt),
    k the last slot ending by the event (the horizon's last slot if the event
    lies beyond it); so charging can wait for the cheapest slots but must be
    complete when the event strikes.
    """
    dis = reserve_floor_series(policy, "disaster_reserve", forecast)
    vpp = reserve_floor_series(policy, "vpp", forecast)
    # k: the last slot that ends by the event (the reserve must be there when it strikes).
    ends = [t + forecast.step for t in forecast.times]
    k = max((i for i, end in enumerate(ends) if end <= event_time), default=0)
    out = dis.copy()
    need = dis[k]
    for t in range(k - 1, -1, -1):
        need -= policy.charge_efficiency * reach_w[t + 1] * forecast.slot_h
        out[t] = max(vpp[t], need)
    return np.minimum(out, dis)


def terminal_value(settings: PlanSettings, policy: SafetyPolicy, mode: str, forecast: SiteForecast) -> float:
    """Value [JPY/kWh] of a kWh left in the battery at the end of the horizon.

    Islanded: :data:`ISLANDED_TERMINAL_VALUE_JPY_PER_KWH`.  Otherwise the
    setting, or by default η_d × the median buy price of the horizon minus the
    degradation cost: what a stored kWh saves when it later replaces an import
    at a typical price.  A value, not a final-SoC equality, so the plan never
    becomes infeasible at its end.
    """
    if mode == "islanded":
        return ISLANDED_TERMINAL_VALUE_JPY_PER_KWH
    if settings.terminal_value_jpy_per_kwh is not None:
        return settings.terminal_value_jpy_per_kwh
    typical = float(np.median(forecast.price_buy))
    return max(0.0, policy.discharge_efficiency * typical - settings.degradation_jpy_per_kwh)


def floor_for(policy: SafetyPolicy, mode: str, forecast: SiteForecast, soc_wh: float,
              settings: PlanSettings, event_time: datetime | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unramped floor, ramped floor) [Wh] per slot for ``mode``; the ramped one is the model's constraint."""
    limits = mode_limits(policy, mode)
    reach = reachable_charge_w(policy, limits, forecast)
    if mode == "disaster_reserve" and event_time is not None:
        base = event_floor(policy, forecast, reach, event_time)
    else:
        base = reserve_floor_series(policy, mode, forecast)
    return base, ramped_floor(base, soc_wh, reach, policy, forecast.slot_h, settings.self_discharge_per_h)
