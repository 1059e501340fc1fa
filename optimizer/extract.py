"""Turn a solved model (or the rule's schedule) into a :class:`~optimizer.plan.Plan`."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from optimizer.data import KW, RunData
from optimizer.plan import Plan, PlanStatus
from optimizer.reserve import hours_of_power
from optimizer.rule import Schedule

#: Below this [W] a flow counts as zero when reporting (solver round-off).
ZERO_W = 1e-3


def schedule_from_solver(solver) -> Schedule:
    """Read the solution [kW, kWh] back into API units [W, Wh], with round-off below ZERO_W removed.

    ``solver`` offers ``values(var_name) -> ndarray`` (see :class:`optimizer.solver.PersistentHighs`).
    """
    def w(name):
        x = solver.values(name) * KW
        x[np.abs(x) < ZERO_W] = 0.0
        return x
    return Schedule(
        charge_w=w("charge"), discharge_w=w("discharge"), soc_wh=solver.values("soc") * KW,
        grid_import_w=w("grid_import"), grid_export_w=w("grid_export"), pv_curtail_w=w("curtail"),
        shed_noncritical_w=w("shed_noncritical"), shed_critical_w=w("shed_critical"))


def simultaneous_slots(s: Schedule, tol_w: float) -> list[int]:
    """Slots where the battery both charges and discharges, or the meter both imports and exports (> tol_w [W])."""
    both = ((s.charge_w > tol_w) & (s.discharge_w > tol_w)) | ((s.grid_import_w > tol_w) & (s.grid_export_w > tol_w))
    return [int(i) for i in np.nonzero(both)[0]]


def islanded_hours(s: Schedule, run: RunData) -> float:
    """Hours [h] until the plan first sheds critical load; past the horizon, the end energy carries it on.

    Beyond the horizon PV is not counted (a conservative estimate).
    """
    f, dt = run.forecast, run.forecast.slot_h
    for t in range(f.n):
        crit = run.critical_w[t]
        if crit > 0 and s.shed_critical_w[t] > max(ZERO_W, 1e-6 * crit):
            return t * dt + dt * min(1.0, max(0.0, 1.0 - s.shed_critical_w[t] / crit))
    tail = hours_of_power(float(s.soc_wh[-1]), run.policy, [float(f.critical_load_w[-1])], [0.0], dt)
    return f.n * dt + tail


def assemble_plan(s: Schedule, run: RunData, status: PlanStatus, *, site_id: str, now: datetime,
                  objective: float | None, build_ms: float, solve_ms: float, message: str = "") -> Plan:
    """Build the Plan with its derived figures (cost, shortfalls, hours of power, expiry)."""
    f, p, dt = run.forecast, run.policy, run.forecast.slot_h
    energy_cost = float(np.sum(dt / KW * (f.price_buy * s.grid_import_w - f.price_sell * s.grid_export_w)))
    if run.mode == "islanded":
        shortfall = 0.0
        hours = islanded_hours(s, run)
    else:
        shortfall = float(max(0.0, np.max(run.floor_unramped_wh - s.soc_wh)))
        hours = hours_of_power(run.soc_wh, p, f.critical_load_w.tolist(), f.pv_w.tolist(), dt)
    has = ~np.isnan(run.commit_target_w)
    dev = np.abs(s.discharge_w - s.charge_w - np.where(has, run.commit_target_w, 0.0))
    commit_short = float(np.sum(np.where(has, dev, 0.0)) * dt)
    expires = min(now + run.settings.valid_for_slots * f.step, f.end)
    return Plan(
        site_id=site_id, mode=run.mode, times=f.times, slot=f.step,
        charge_w=s.charge_w, discharge_w=s.discharge_w,
        soc_pct=s.soc_wh / p.capacity_wh * 100.0, soc_wh=s.soc_wh,
        grid_import_w=s.grid_import_w, grid_export_w=s.grid_export_w, pv_curtail_w=s.pv_curtail_w,
        shed_w=s.shed_noncritical_w + s.shed_critical_w, shed_critical_w=s.shed_critical_w,
        reserve_wh=run.floor_wh.copy(), status=status, created_at=now, expires_at=expires,
        objective_jpy=objective, energy_cost_jpy=energy_cost, build_ms=build_ms, solve_ms=solve_ms,
        reserve_shortfall_wh=shortfall, commitment_shortfall_wh=commit_short, hours_of_power=hours,
        message=message, price_buy_jpy_per_kwh=np.array(f.price_buy, dtype=float),
        price_sell_jpy_per_kwh=np.array(f.price_sell, dtype=float))
