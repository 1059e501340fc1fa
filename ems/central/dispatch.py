"""VPP dispatch at the center: turn "P kW from start to end" into per-hall commands.

The request is ΔP [W] on top of what the halls would do anyway (+ more
discharge, − more charge), the same in every slot of the window.  Each hall's
baseline is the plan it published on ``.../plan`` (``slots``: rows as
``optimizer.plan.Plan.rows()``); a hall that published none is taken as
holding its battery idle at its present stored energy (said in the preview).
:func:`optimizer.fleet.allocate` splits the request; halls offline, without
state, or not in vpp mode take no part.  Each hall's share becomes dispatch
commands (``power_w`` = baseline + share), one per run of equal slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

import numpy as np

from ems.config import SiteConfig
from ems.central.history import mode_of
from optimizer.fleet import FleetAllocation, FleetSite, allocate
from optimizer.plan import Plan, PlanStatus
from optimizer.reserve import reserve_floor_wh
from telemetry.fleet_state import SiteView

#: Longest dispatch window [h] (a dispatch lease lasts at most 24 h at the edge).
MAX_WINDOW_H = 24


class DispatchRequestError(ValueError):
    """A dispatch request that cannot be served; ``field`` names the request field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class HallShare:
    """One hall's part: baseline battery power [W] and target [W] (+ discharge) per slot."""

    site: str
    baseline_w: list[float]
    delta_w: list[float]
    baseline_source: str  # "plan" | "idle"

    @property
    def target_w(self) -> list[float]:
        return [b + d for b, d in zip(self.baseline_w, self.delta_w)]


@dataclass(frozen=True)
class DispatchPreview:
    """The allocation of one request: slot starts (UTC), request [W], per-hall shares, unmet [W]."""

    times: tuple[datetime, ...]
    slot: timedelta
    request_w: list[float]
    shares: dict[str, HallShare]
    unmet_w: list[float]
    excluded: dict[str, str]
    status: str
    solve_ms: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        allocated = [sum(s.delta_w[i] for s in self.shares.values()) for i in range(len(self.times))]
        return {
            "times": [t.isoformat() for t in self.times], "slot_minutes": self.slot.total_seconds() / 60,
            "request_w": self.request_w, "allocated_w": allocated, "unmet_w": self.unmet_w,
            "status": self.status, "solve_ms": round(self.solve_ms, 1), "excluded": self.excluded,
            "notes": self.notes,
            "halls": [{"site": s.site, "baseline_source": s.baseline_source, "baseline_w": s.baseline_w,
                       "delta_w": s.delta_w, "target_w": s.target_w}
                      for s in sorted(self.shares.values(), key=lambda s: s.site)],
        }

    def leases(self, min_w: float = 1.0) -> dict[str, list[tuple[datetime, datetime, float]]]:
        """Per hall the dispatch leases (start, end, power_w [W]) to send: consecutive slots with the same
        target merged; slots where the hall's share is below ``min_w`` [W] get none."""
        out: dict[str, list[tuple[datetime, datetime, float]]] = {}
        for site, share in self.shares.items():
            if max((abs(d) for d in share.delta_w), default=0.0) < min_w:
                continue
            runs: list[tuple[datetime, datetime, float]] = []
            for t, target, delta in zip(self.times, share.target_w, share.delta_w):
                if abs(delta) < min_w:
                    continue  # the hall's own plan holds in this slot: no lease needed
                target = round(target, 1)
                if runs and runs[-1][2] == target and runs[-1][1] == t:
                    runs[-1] = (runs[-1][0], t + self.slot, target)
                else:
                    runs.append((t, t + self.slot, target))
            out[site] = runs
        return out


def request_slots(start: datetime, end: datetime, slot: timedelta, now: datetime) -> tuple[datetime, ...]:
    """Slot starts of [start, end); DispatchRequestError naming ``start`` / ``end`` if the window is bad."""
    if start.tzinfo is None:
        raise DispatchRequestError("start", "must carry a UTC offset")
    if end.tzinfo is None:
        raise DispatchRequestError("end", "must carry a UTC offset")
    step = slot.total_seconds()
    if start.timestamp() % step:
        raise DispatchRequestError("start", f"must be on a {step / 60:g}-minute slot boundary")
    if end.timestamp() % step:
        raise DispatchRequestError("end", f"must be on a {step / 60:g}-minute slot boundary")
    if end <= start:
        raise DispatchRequestError("end", "must be after start")
    if end - start > timedelta(hours=MAX_WINDOW_H):
        raise DispatchRequestError("end", f"the window may last at most {MAX_WINDOW_H} h")
    if end <= now:
        raise DispatchRequestError("end", "is in the past")
    n = int((end - start) / slot)
    return tuple(start + i * slot for i in range(n))


def _plan_from_message(site: SiteConfig, plan_msg: Any, times: tuple[datetime, ...], slot: timedelta,
                       now: datetime) -> Plan | None:
    """The hall's published plan as a Plan over ``times`` if it covers every slot, else None."""
    if not isinstance(plan_msg, dict) or not isinstance(plan_msg.get("slots"), list):
        return None
    by_time: dict[datetime, dict] = {}
    for row in plan_msg["slots"]:
        try:
            by_time[datetime.fromisoformat(str(row["time"]).replace("Z", "+00:00"))] = row
        except (KeyError, TypeError, ValueError):
            continue
    rows = [by_time.get(t) for t in times]
    if any(r is None for r in rows):
        return None

    def col(name: str, default: float = 0.0) -> np.ndarray:
        vals = []
        for r in rows:
            v = r.get(name, default)
            vals.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else default)
        return np.array(vals, dtype=float)

    if all("charge_w" in r or "discharge_w" in r for r in rows):
        charge, discharge = col("charge_w"), col("discharge_w")
    else:
        battery = col("battery_w")
        charge, discharge = np.maximum(-battery, 0.0), np.maximum(battery, 0.0)
    policy = site.safety_policy()
    soc_wh = col("soc_wh", float("nan"))
    if np.isnan(soc_wh).any():
        soc_wh = col("soc_pct", float("nan")) * policy.capacity_wh / 100
    if np.isnan(soc_wh).any():
        return None
    return _plan(site, times, slot, now, charge, discharge, soc_wh, col("grid_import_w"), col("grid_export_w"),
                 col("reserve_wh", policy.min_energy_wh))


def _plan(site: SiteConfig, times, slot, now, charge, discharge, soc_wh, grid_in, grid_out, reserve) -> Plan:
    n = len(times)
    cap = site.safety_policy().capacity_wh
    zeros = np.zeros(n)
    return Plan(site_id=site.id, mode="vpp", times=times, slot=slot, charge_w=charge, discharge_w=discharge,
                soc_pct=soc_wh / cap * 100, soc_wh=soc_wh, grid_import_w=grid_in, grid_export_w=grid_out,
                pv_curtail_w=zeros, shed_w=zeros, shed_critical_w=zeros, reserve_wh=reserve,
                status=PlanStatus.FALLBACK, created_at=now, expires_at=times[-1] + slot)


def _idle_plan(site: SiteConfig, state: dict, times, slot, now) -> Plan | None:
    """Battery idle at the present stored energy; grid as now (so discharging can offset the hall's import)."""
    policy = site.safety_policy()
    stored = state.get("stored_wh")
    if not isinstance(stored, (int, float)) or isinstance(stored, bool):
        soc = state.get("soc_pct")
        if not isinstance(soc, (int, float)) or isinstance(soc, bool):
            return None
        stored = policy.capacity_wh * soc / 100
    n = len(times)
    floor = state.get("reserve_floor_wh")
    if not isinstance(floor, (int, float)) or isinstance(floor, bool):
        floor = reserve_floor_wh(policy, "vpp", [site.loads.critical_w], [0.0], slot.total_seconds() / 3600)
    grid = state.get("grid_w") if isinstance(state.get("grid_w"), (int, float)) else 0.0
    return _plan(site, times, slot, now, np.zeros(n), np.zeros(n), np.full(n, float(stored)),
                 np.full(n, max(grid, 0.0)), np.full(n, max(-grid, 0.0)), np.full(n, float(floor)))


def preview(sites: Iterable[SiteConfig], views: Mapping[str, SiteView], power_w: float, start: datetime,
            end: datetime, slot: timedelta, now: datetime, time_limit_s: float = 20.0) -> DispatchPreview:
    """Allocate ``power_w`` [W] (+ more discharge) over [start, end) across the halls (see module docstring)."""
    times = request_slots(start, end, slot, now)
    fleet_sites: list[FleetSite] = []
    excluded: dict[str, str] = {}
    sources: dict[str, str] = {}
    for site in sites:
        view = views.get(site.id)
        state = view.state if view is not None else None
        if view is None or not view.online or not isinstance(state, dict):
            excluded[site.id] = "offline" if view is not None and view.online is False else "no state"
            continue
        mode, _ = mode_of(state)
        plan = _plan_from_message(site, view.plan, times, slot, now)
        sources[site.id] = "plan" if plan is not None else "idle"
        plan = plan or _idle_plan(site, state, times, slot, now)
        if plan is None:
            excluded[site.id] = "no state of charge"
            continue
        fleet_sites.append(FleetSite(site.id, mode or "unknown", site.safety_policy(), plan))
    if fleet_sites:
        alloc: FleetAllocation = allocate(fleet_sites, times, [power_w] * len(times), time_limit_s=time_limit_s)
        status, solve_ms, unmet = alloc.status, alloc.solve_ms, [float(u) for u in alloc.unmet_w]
        excluded.update(alloc.excluded)
        deltas = alloc.delta_w
    else:
        status, solve_ms, unmet, deltas = "no hall available", 0.0, [float(power_w)] * len(times), {}
    shares = {}
    for fs in fleet_sites:
        if fs.site_id in deltas:
            shares[fs.site_id] = HallShare(fs.site_id, [float(b) for b in fs.plan.battery_w],
                                           [float(d) for d in deltas[fs.site_id]], sources[fs.site_id])
    notes = []
    idle = sorted(s for s, src in sources.items() if src == "idle" and s in shares)
    if idle:
        notes.append(f"{len(idle)} hall(s) published no plan for the window; their baseline is an idle battery "
                     f"at the present state of charge")
    return DispatchPreview(times, slot, [float(power_w)] * len(times), shares, unmet, excluded, status, solve_ms,
                           notes)
