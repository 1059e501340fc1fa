"""The rule-based plan: the fallback when the solver fails, and the backtest's baseline.

Self-consumption with the same reserve as the optimizer: PV surplus charges
the battery, deficits are covered from the battery down to the reserve floor,
and a battery below its floor charges from the grid as fast as the limits
allow.  disaster_reserve: charge to the floor, absorb PV surplus, never
discharge.  islanded: shed the non-critical load (unless PV covers it), carry
the critical load from PV and battery down to the minimum SoC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optimizer.data import RunData


@dataclass(frozen=True, eq=False)
class Schedule:
    """Per-slot flows [W] and end-of-slot stored energy [Wh] (no plan metadata)."""

    charge_w: np.ndarray
    discharge_w: np.ndarray
    soc_wh: np.ndarray
    grid_import_w: np.ndarray
    grid_export_w: np.ndarray
    pv_curtail_w: np.ndarray
    shed_noncritical_w: np.ndarray
    shed_critical_w: np.ndarray


def rule_step(e_wh: float, load_w: float, pv_w: float, critical_w: float, floor_wh: float,
              run: RunData) -> tuple[float, float, float, float, float, float, float, float]:
    """One slot of the rule from stored energy ``e_wh`` [Wh]; loads as in :func:`optimizer.data.served_loads`.

    Returns (charge, discharge, import, export, curtail, shed_nc, shed_crit) [W] and the new energy [Wh].
    """
    p, lim, dt = run.policy, run.limits, run.forecast.slot_h
    keep = 1.0 - run.settings.self_discharge_per_h * dt
    e_kept = e_wh * keep
    room_w = max(0.0, (p.max_energy_wh - e_kept) / (p.charge_efficiency * dt))
    charge = discharge = shed_nc = 0.0
    if run.mode == "islanded":
        if pv_w < load_w:
            shed_nc = load_w - critical_w  # the grid is down: only the shelter circuit is served
        net = load_w - shed_nc - pv_w
        floor_wh = p.min_energy_wh
    else:
        net = load_w - pv_w
    above_w = max(0.0, (e_kept - floor_wh) * p.discharge_efficiency / dt)
    if net < 0:
        charge = min(-net, lim.max_charge_w, room_w)
    elif run.mode != "disaster_reserve":
        discharge = min(net, lim.max_discharge_w, above_w)
    if run.mode != "islanded" and e_kept < floor_wh:
        # Below the reserve: charge from the grid as well, as fast as allowed.
        need_w = (floor_wh - e_kept) / (p.charge_efficiency * dt)
        import_room = max(0.0, lim.max_import_w - max(0.0, net))
        charge = max(charge, min(need_w, lim.max_charge_w, room_w, import_room + max(0.0, -net)))
        discharge = 0.0
    grid = net + charge - discharge  # + import
    imp = min(max(0.0, grid), lim.max_import_w)
    exp = min(max(0.0, -grid), lim.max_export_w)
    lack = max(0.0, grid) - imp      # load the grid cannot carry
    spill = max(0.0, -grid) - exp    # PV nobody can take
    curtail = min(spill, pv_w)
    extra_nc = min(lack, load_w - critical_w - shed_nc)
    shed_nc += extra_nc
    shed_crit = min(lack - extra_nc, critical_w)
    e_new = e_kept + dt * (p.charge_efficiency * charge - discharge / p.discharge_efficiency)
    return charge, discharge, imp, exp, curtail, shed_nc, shed_crit, e_new


def rule_schedule(run: RunData) -> Schedule:
    """The rule's schedule over the run's horizon, slot by slot from the measured energy."""
    f = run.forecast
    floors = run.floor_unramped_wh
    cols = [np.zeros(f.n) for _ in range(8)]
    e = run.soc_wh
    for t in range(f.n):
        c, d, imp, exp, cur, snc, scr, e = rule_step(
            e, float(run.load_w[t]), float(f.pv_w[t]), float(run.critical_w[t]), float(floors[t]), run)
        for col, v in zip(cols, (c, d, e, imp, exp, cur, snc, scr)):
            col[t] = v
    return Schedule(*cols)
