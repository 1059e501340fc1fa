"""The site model in Pyomo: ``build_site_model`` once, then set data and re-solve in place (MPC).

Structure (PyPSA/linopy style): one small ``define_*`` function per group of
components, each docstring giving its equation.  Everything that changes from
one slot to the next (prices, forecasts, the measured SoC, limits of the
mode, the reserve floor, commitments) is a *mutable* Param, so the persistent
HiGHS interface only changes numbers in the solver's copy of the LP and
HiGHS restarts from the previous basis.  The slot count, slot length,
efficiencies and self-discharge shape the matrix and are fixed at build time.

Internal units are kW, kWh and JPY (JPY/kWh × kW × h): the API is in W and
Wh, but keeping the coefficients near 1 keeps HiGHS's tolerances meaningful.
Sign conventions inside the model: every flow variable is >= 0 and its
direction is in its name.
"""

from __future__ import annotations

import pyomo.environ as pyo

from optimizer.settings import (
    PENALTY_COMMITMENT_JPY_PER_KWH,
    PENALTY_CURTAIL_JPY_PER_KWH,
    PENALTY_RESERVE_JPY_PER_KWH,
    PENALTY_SHED_CRITICAL_JPY_PER_KWH,
    PENALTY_SHED_NONCRITICAL_JPY_PER_KWH,
    PENALTY_SOC_BAND_JPY_PER_KWH,
    TIE_BREAK_JPY_PER_KWH_PER_SLOT,
)

#: Demand-charge block [h]: demand is the mean import over 30 minutes.
DEMAND_BLOCK_H = 0.5
#: Weight of a slot that has a commitment [JPY/kWh] (0 elsewhere; a mutable Param per slot).
COMMITMENT_WEIGHT = PENALTY_COMMITMENT_JPY_PER_KWH


def build_site_model(n: int, slot_h: float, charge_efficiency: float, discharge_efficiency: float,
                     self_discharge_per_h: float = 0.0, milp: bool = False) -> pyo.ConcreteModel:
    """Build the site LP (or MILP with direction binaries) for ``n`` slots of ``slot_h`` [h].

    Parameters hold neutral values until :func:`optimizer.data.load_data` fills them.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    if not (0 < charge_efficiency <= 1 and 0 < discharge_efficiency <= 1):
        raise ValueError("efficiencies must be in (0, 1]")
    m = pyo.ConcreteModel(name="site")
    m.T = pyo.RangeSet(0, n - 1)
    m.dt = float(slot_h)
    m.eta_c = float(charge_efficiency)
    m.eta_d = float(discharge_efficiency)
    m.keep = 1.0 - float(self_discharge_per_h) * float(slot_h)
    m.milp = milp
    define_parameters(m)
    define_variables(m)
    define_energy_balance(m)
    define_soc_recursion(m)
    define_soc_band(m)
    define_reserve_floor(m)
    define_commitments(m)
    define_demand_peak(m)
    if milp:
        define_direction_binaries(m)
    define_objective(m)
    return m


def define_parameters(m: pyo.ConcreteModel) -> None:
    """Mutable data: per slot prices [JPY/kWh], powers [kW], floors [kWh], commitments; scalars e0, limits, values."""
    mut = dict(mutable=True, within=pyo.Reals)
    for name in ("price_buy", "price_sell", "load_kw", "pv_kw", "critical", "noncritical",
                 "floor", "band_min", "commit_target", "commit_weight"):
        setattr(m, name, pyo.Param(m.T, initialize=0.0, **mut))
    for name in ("e0", "e_max", "capacity", "charge_max", "discharge_max",
                 "import_max", "export_max", "terminal_value", "demand_charge", "degradation"):
        setattr(m, name, pyo.Param(initialize=0.0, **mut))


def define_variables(m: pyo.ConcreteModel) -> None:
    """Flows [kW] and states [kWh], all >= 0, bounded by mutable limits.

    0 ≤ c_t ≤ P_c, 0 ≤ d_t ≤ P_d, 0 ≤ e_t ≤ E_cap, 0 ≤ g⁺_t ≤ G⁺, 0 ≤ g⁻_t ≤ G⁻,
    0 ≤ curt_t ≤ PV_t, 0 ≤ shed^nc_t ≤ L_t − L^crit_t, 0 ≤ shed^crit_t ≤ L^crit_t;
    slacks s^res_t, s^lo_t, s^hi_t, commitment deviations o_t, u_t and the peak ≥ 0.
    """
    nn = pyo.NonNegativeReals
    m.charge = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.charge_max))
    m.discharge = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.discharge_max))
    m.soc = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.capacity))
    m.grid_import = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.import_max))
    m.grid_export = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.export_max))
    m.curtail = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.pv_kw[t]))
    m.shed_noncritical = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.noncritical[t]))
    m.shed_critical = pyo.Var(m.T, within=nn, bounds=lambda m, t: (0, m.critical[t]))
    m.reserve_slack = pyo.Var(m.T, within=nn)
    m.band_low = pyo.Var(m.T, within=nn)
    m.band_high = pyo.Var(m.T, within=nn)
    m.commit_over = pyo.Var(m.T, within=nn)
    m.commit_under = pyo.Var(m.T, within=nn)
    m.peak = pyo.Var(within=nn)


def define_energy_balance(m: pyo.ConcreteModel) -> None:
    """AC bus of the hall in every slot [kW].

    PV_t − curt_t + d_t − c_t + g⁺_t − g⁻_t = L_t − shed^nc_t − shed^crit_t
    """
    def rule(m, t):
        supply = m.pv_kw[t] - m.curtail[t] + m.discharge[t] - m.charge[t] + m.grid_import[t] - m.grid_export[t]
        return supply + m.shed_noncritical[t] + m.shed_critical[t] == m.load_kw[t]
    m.energy_balance = pyo.Constraint(m.T, rule=rule)


def define_soc_recursion(m: pyo.ConcreteModel) -> None:
    """Stored energy at the end of each slot, an explicit state [kWh].

    e_t = k·e_{t−1} + Δt·(η_c·c_t − d_t/η_d),  e_{−1} = E_0 (measured),  k = 1 − σ·Δt
    """
    def rule(m, t):
        prev = m.e0 if t == 0 else m.soc[t - 1]
        return m.soc[t] == m.keep * prev + m.dt * (m.eta_c * m.charge[t] - m.discharge[t] / m.eta_d)
    m.soc_recursion = pyo.Constraint(m.T, rule=rule)


def define_soc_band(m: pyo.ConcreteModel) -> None:
    """Soft SoC band [kWh]: e_t + s^lo_t ≥ E^min_t and e_t − s^hi_t ≤ E_max.

    E^min_t is E_min ramped like the reserve floor (reachable from the measured
    SoC without shedding load), so a battery found below its band recovers at
    the pace the grid allows instead of darkening the hall to recover faster.
    """
    m.band_lower = pyo.Constraint(m.T, rule=lambda m, t: m.soc[t] + m.band_low[t] >= m.band_min[t])
    m.band_upper = pyo.Constraint(m.T, rule=lambda m, t: m.soc[t] - m.band_high[t] <= m.e_max)


def define_reserve_floor(m: pyo.ConcreteModel) -> None:
    """Shelter reserve [kWh]: e_t + s^res_t ≥ R_t (R_t ramped so it is reachable, see optimizer.modes)."""
    m.reserve = pyo.Constraint(m.T, rule=lambda m, t: m.soc[t] + m.reserve_slack[t] >= m.floor[t])


def define_commitments(m: pyo.ConcreteModel) -> None:
    """Dispatch deviation [kW]: d_t − c_t − P^target_t = o_t − u_t (priced only where a commitment exists)."""
    m.commitment = pyo.Constraint(
        m.T, rule=lambda m, t: m.discharge[t] - m.charge[t] - m.commit_target[t] == m.commit_over[t] - m.commit_under[t])


def define_demand_peak(m: pyo.ConcreteModel) -> None:
    """Peak 30-minute import [kW]: peak ≥ mean(g⁺_t over each 30-minute block)."""
    per_block = max(1, round(DEMAND_BLOCK_H / m.dt))
    blocks = [list(range(i, min(i + per_block, len(m.T)))) for i in range(0, len(m.T), per_block)]
    m.Blocks = pyo.RangeSet(0, len(blocks) - 1)
    m.demand_peak = pyo.Constraint(
        m.Blocks, rule=lambda m, b: m.peak >= sum(m.grid_import[t] for t in blocks[b]) / len(blocks[b]))


def define_direction_binaries(m: pyo.ConcreteModel) -> None:
    """MILP only: one direction per slot for the battery and for the meter.

    c_t ≤ P_c·z_t, d_t ≤ P_d·(1 − z_t), g⁺_t ≤ G⁺·y_t, g⁻_t ≤ G⁻·(1 − y_t), z_t, y_t ∈ {0, 1}
    """
    m.charging = pyo.Var(m.T, within=pyo.Binary)
    m.importing = pyo.Var(m.T, within=pyo.Binary)
    m.only_charge = pyo.Constraint(m.T, rule=lambda m, t: m.charge[t] <= m.charge_max * m.charging[t])
    m.only_discharge = pyo.Constraint(m.T, rule=lambda m, t: m.discharge[t] <= m.discharge_max * (1 - m.charging[t]))
    m.only_import = pyo.Constraint(m.T, rule=lambda m, t: m.grid_import[t] <= m.import_max * m.importing[t])
    m.only_export = pyo.Constraint(m.T, rule=lambda m, t: m.grid_export[t] <= m.export_max * (1 - m.importing[t]))


def critical_shed_weight(t: int, n: int) -> float:
    """Weight 2 … 1 on critical shedding from the first to the last slot (shed late, not early)."""
    return 1.0 + (n - t) / n


def define_objective(m: pyo.ConcreteModel) -> None:
    """Minimise [JPY]:

    Σ_t Δt·[π^b_t·g⁺_t − π^s_t·g⁻_t + (c_deg + ε·t)·(c_t + d_t) + p_curt·curt_t
            + p_nc·shed^nc_t + p_crit·w_t·shed^crit_t + λ_t·(o_t + u_t)]
    + Σ_t [p_res·s^res_t + p_band·(s^lo_t + s^hi_t)] + c_dem·peak − V·e_{T−1}
    """
    n = len(m.T)
    dt = m.dt

    def energy_terms():
        for t in m.T:
            yield dt * (m.price_buy[t] * m.grid_import[t] - m.price_sell[t] * m.grid_export[t])
            yield dt * (m.degradation + TIE_BREAK_JPY_PER_KWH_PER_SLOT * t) * (m.charge[t] + m.discharge[t])
            yield dt * PENALTY_CURTAIL_JPY_PER_KWH * m.curtail[t]
            yield dt * PENALTY_SHED_NONCRITICAL_JPY_PER_KWH * m.shed_noncritical[t]
            yield dt * PENALTY_SHED_CRITICAL_JPY_PER_KWH * critical_shed_weight(t, n) * m.shed_critical[t]
            yield dt * m.commit_weight[t] * (m.commit_over[t] + m.commit_under[t])
            yield PENALTY_RESERVE_JPY_PER_KWH * m.reserve_slack[t]
            yield PENALTY_SOC_BAND_JPY_PER_KWH * (m.band_low[t] + m.band_high[t])

    m.objective = pyo.Objective(
        expr=sum(energy_terms()) + m.demand_charge * m.peak - m.terminal_value * m.soc[n - 1],
        sense=pyo.minimize)
