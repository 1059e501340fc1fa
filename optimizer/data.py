"""Fill a built site model's mutable parameters for one planning run.

Converts the API's W/Wh into the model's kW/kWh and applies the mode: its
limits, its reserve floor (ramped, see :mod:`optimizer.modes`), its terminal
value, and the commitments it honours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

import numpy as np
import pyomo.environ as pyo

from optimizer.inputs import SiteForecast
from optimizer.modes import ModeLimits, floor_for, mode_limits, ramped_floor, reachable_charge_w, terminal_value
from optimizer.model import COMMITMENT_WEIGHT
from optimizer.reserve import SafetyPolicy
from optimizer.settings import Commitment, PlanSettings

KW = 1000.0  # W per kW


@dataclass(frozen=True, eq=False)
class RunData:
    """Everything one planning run put into the model, in API units.

    soc_wh [Wh] measured; floor_wh / floor_unramped_wh [Wh] per slot;
    band_min_wh [Wh]: the SoC band's lower edge per slot, ramped like the floor;
    commit_target_w [W] per slot (NaN where no commitment); terminal value
    [JPY/kWh]; the mode's limits.
    """

    forecast: SiteForecast
    policy: SafetyPolicy
    mode: str
    soc_wh: float
    limits: ModeLimits
    floor_wh: np.ndarray
    floor_unramped_wh: np.ndarray
    commit_target_w: np.ndarray
    terminal_value_jpy_per_kwh: float
    settings: PlanSettings
    load_w: np.ndarray
    critical_w: np.ndarray
    band_min_wh: np.ndarray

    @property
    def noncritical_w(self) -> np.ndarray:
        """Sheddable part of the load [W]."""
        return self.load_w - self.critical_w

    def shed_limits_w(self) -> tuple[np.ndarray, np.ndarray]:
        """(non-critical, critical) load the plan may shed per slot [W].

        Islanded: all of it.  Grid-connected: only what the grid cannot carry
        (load − PV beyond the import limit), non-critical first: a hall on the
        grid is never darkened to charge its battery faster, even one found
        below its SoC band (a case hypothesis found: the band's slack
        outbid the non-critical shedding penalty).
        """
        if self.mode == "islanded":
            return self.noncritical_w, self.critical_w.copy()
        excess = np.maximum(0.0, self.load_w - self.forecast.pv_w - self.limits.max_import_w)
        noncritical = np.minimum(self.noncritical_w, excess)
        return noncritical, np.minimum(self.critical_w, excess - noncritical)


def served_loads(forecast: SiteForecast, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(load to serve, its critical part) [W] per slot.

    Islanded: the hall is a shelter, so its load is at least the critical
    forecast: (max(L, L^crit), L^crit).  Otherwise the critical circuit is
    part of the normal load: (L, min(L, L^crit)).
    """
    load, crit = forecast.load_w, forecast.critical_load_w
    if mode == "islanded":
        return np.maximum(load, crit), crit.copy()
    return load.copy(), np.minimum(load, crit)


def commitment_targets(forecast: SiteForecast, commitments: Sequence[Commitment]) -> np.ndarray:
    """Per-slot battery output target [W] (NaN: none); a slot belongs to a commitment when it starts inside it.

    Overlapping commitments add up (two aggregator calls on the same slot are two promises).
    """
    out = np.full(forecast.n, np.nan)
    for c in commitments:
        for i, t in enumerate(forecast.times):
            if c.start <= t < c.end:
                out[i] = c.target_w if np.isnan(out[i]) else out[i] + c.target_w
    return out


def prepare_run(forecast: SiteForecast, policy: SafetyPolicy, soc_pct: float, mode: str,
                settings: PlanSettings, commitments: Sequence[Commitment] = (),
                event_time: datetime | None = None) -> RunData:
    """Compute the per-run data (limits, floors, targets, terminal value) without touching a model."""
    if not 0.0 <= soc_pct <= 100.0:
        raise ValueError(f"soc_pct {soc_pct!r} outside 0–100 %")
    soc_wh = policy.capacity_wh * soc_pct / 100.0
    limits = mode_limits(policy, mode)
    base, ramped = floor_for(policy, mode, forecast, soc_wh, settings, event_time)
    # Islanded halls answer no aggregator; disaster halls do no VPP discharge.
    targets = commitment_targets(forecast, commitments) if mode == "vpp" else np.full(forecast.n, np.nan)
    load, crit = served_loads(forecast, mode)
    band_min = ramped_floor(np.full(forecast.n, policy.min_energy_wh), soc_wh,
                            reachable_charge_w(policy, limits, forecast), policy, forecast.slot_h,
                            settings.self_discharge_per_h)
    return RunData(forecast, policy, mode, soc_wh, limits, ramped, base, targets,
                   terminal_value(settings, policy, mode, forecast), settings, load, crit, band_min)


def _set_indexed(param: pyo.Param, values: np.ndarray) -> None:
    """Assign one value per slot to an indexed mutable Param (slots 0..n-1, plain floats)."""
    # check=False skips Pyomo's per-item index and domain checks (the Params are
    # indexed 0..n-1 over Reals, and load_data checked n): a third of a re-solve before.
    param.store_values(dict(enumerate(values.tolist())), check=False)


def load_data(m: pyo.ConcreteModel, run: RunData) -> None:
    """Write ``run`` into the model's mutable Params (W → kW, Wh → kWh)."""
    f, p, lim = run.forecast, run.policy, run.limits
    if f.n != len(m.T):
        raise ValueError(f"forecast has {f.n} slots, the model {len(m.T)}")
    _set_indexed(m.price_buy, f.price_buy)
    _set_indexed(m.price_sell, f.price_sell)
    _set_indexed(m.load_kw, run.load_w / KW)
    _set_indexed(m.pv_kw, f.pv_w / KW)
    shed_noncritical_w, shed_critical_w = run.shed_limits_w()
    _set_indexed(m.critical, shed_critical_w / KW)
    _set_indexed(m.noncritical, shed_noncritical_w / KW)
    _set_indexed(m.floor, run.floor_wh / KW)
    _set_indexed(m.band_min, run.band_min_wh / KW)
    has = ~np.isnan(run.commit_target_w)
    _set_indexed(m.commit_target, np.where(has, run.commit_target_w, 0.0) / KW)
    _set_indexed(m.commit_weight, np.where(has, COMMITMENT_WEIGHT, 0.0))
    m.e0 = run.soc_wh / KW
    m.e_max = p.max_energy_wh / KW
    m.capacity = p.capacity_wh / KW
    m.charge_max = lim.max_charge_w / KW
    m.discharge_max = lim.max_discharge_w / KW
    m.import_max = lim.max_import_w / KW
    m.export_max = lim.max_export_w / KW
    m.terminal_value = run.terminal_value_jpy_per_kwh
    m.demand_charge = run.settings.demand_charge_jpy_per_kw if run.mode != "islanded" else 0.0
    m.degradation = run.settings.degradation_jpy_per_kwh
