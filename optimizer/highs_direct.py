"""The site LP of :mod:`optimizer.model`, built directly in highspy with numpy.

Two uses: the benchmark's reference ("the same LP built directly in
highspy", to measure what Pyomo costs), and long horizons (the backtest's
perfect-foresight year) where a per-component Pyomo build is slow.  A test
checks that both formulations reach the same objective.  Equations: see the
``define_*`` docstrings in :mod:`optimizer.model`; units kW, kWh, JPY.
"""

from __future__ import annotations

import time

import highspy
import numpy as np

from optimizer.data import KW, RunData
from optimizer.lpbuild import INF, SparseLP
from optimizer.model import COMMITMENT_WEIGHT, DEMAND_BLOCK_H, critical_shed_weight
from optimizer.rule import Schedule
from optimizer.settings import (
    PENALTY_CURTAIL_JPY_PER_KWH,
    PENALTY_RESERVE_JPY_PER_KWH,
    PENALTY_SHED_CRITICAL_JPY_PER_KWH,
    PENALTY_SHED_NONCRITICAL_JPY_PER_KWH,
    PENALTY_SOC_BAND_JPY_PER_KWH,
    TIE_BREAK_JPY_PER_KWH_PER_SLOT,
)

_BLOCKS = ("charge", "discharge", "soc", "grid_import", "grid_export", "curtail", "shed_noncritical",
           "shed_critical", "reserve_slack", "band_low", "band_high", "commit_over", "commit_under")


class DirectSiteLP:
    """The site LP for ``n`` slots of ``slot_h`` [h]; :meth:`load` a run, then :meth:`solve` (warm after the first)."""

    def __init__(self, n: int, slot_h: float, charge_efficiency: float, discharge_efficiency: float,
                 self_discharge_per_h: float = 0.0):
        tick = time.perf_counter()
        self.n, self.dt = n, slot_h
        self.eta_c, self.eta_d = charge_efficiency, discharge_efficiency
        self.keep = 1.0 - self_discharge_per_h * slot_h
        lp = SparseLP()
        self.col = {name: lp.add_cols(n) for name in _BLOCKS}
        self.peak = lp.add_cols(1)[0]
        c = self.col
        t = np.arange(n)
        self.row_balance = lp.add_rows(n)
        r = self.row_balance
        for name, sign in (("curtail", -1), ("discharge", 1), ("charge", -1), ("grid_import", 1),
                           ("grid_export", -1), ("shed_noncritical", 1), ("shed_critical", 1)):
            lp.add_terms(r, c[name], sign)
        self.row_recursion = lp.add_rows(n, 0.0, 0.0)
        r = self.row_recursion
        lp.add_terms(r, c["soc"], 1.0)
        lp.add_terms(r[1:], c["soc"][:-1], -self.keep)
        lp.add_terms(r, c["charge"], -slot_h * charge_efficiency)
        lp.add_terms(r, c["discharge"], slot_h / discharge_efficiency)
        self.row_band_low = lp.add_rows(n)
        lp.add_terms(self.row_band_low, c["soc"], 1.0)
        lp.add_terms(self.row_band_low, c["band_low"], 1.0)
        self.row_band_high = lp.add_rows(n)
        lp.add_terms(self.row_band_high, c["soc"], 1.0)
        lp.add_terms(self.row_band_high, c["band_high"], -1.0)
        self.row_reserve = lp.add_rows(n)
        lp.add_terms(self.row_reserve, c["soc"], 1.0)
        lp.add_terms(self.row_reserve, c["reserve_slack"], 1.0)
        self.row_commit = lp.add_rows(n)
        for name, sign in (("discharge", 1), ("charge", -1), ("commit_over", -1), ("commit_under", 1)):
            lp.add_terms(self.row_commit, c[name], sign)
        per_block = max(1, round(DEMAND_BLOCK_H / slot_h))
        block_of = t // per_block
        sizes = np.bincount(block_of)
        self.row_peak = lp.add_rows(len(sizes), 0.0, INF)
        lp.add_terms(self.row_peak, self.peak, 1.0)
        lp.add_terms(self.row_peak[block_of], c["grid_import"], -1.0 / sizes[block_of])
        self.highs = lp.to_highs()
        self.build_ms = (time.perf_counter() - tick) * 1e3
        self.solves = 0

    def load(self, run: RunData) -> None:
        """Set bounds, right-hand sides and costs for ``run`` (vectorised changes on the HiGHS model)."""
        f, p, lim, n, dt, h, c = run.forecast, run.policy, run.limits, self.n, self.dt, self.highs, self.col
        if f.n != n:
            raise ValueError(f"forecast has {f.n} slots, the LP {n}")
        pv, load = f.pv_w / KW, run.load_w / KW
        shed_nc, shed_crit = run.shed_limits_w()
        lower = np.zeros(len(_BLOCKS) * n + 1)
        upper = np.full(len(_BLOCKS) * n + 1, INF)
        cost = np.zeros(len(_BLOCKS) * n + 1)
        for name, ub in (("charge", lim.max_charge_w / KW), ("discharge", lim.max_discharge_w / KW),
                         ("soc", p.capacity_wh / KW), ("grid_import", lim.max_import_w / KW),
                         ("grid_export", lim.max_export_w / KW), ("curtail", pv),
                         ("shed_noncritical", shed_nc / KW), ("shed_critical", shed_crit / KW)):
            upper[c[name]] = ub
        t = np.arange(n)
        throughput = dt * (run.settings.degradation_jpy_per_kwh + TIE_BREAK_JPY_PER_KWH_PER_SLOT * t)
        cost[c["charge"]] = throughput
        cost[c["discharge"]] = throughput
        cost[c["grid_import"]] = dt * f.price_buy
        cost[c["grid_export"]] = -dt * f.price_sell
        cost[c["curtail"]] = dt * PENALTY_CURTAIL_JPY_PER_KWH
        cost[c["shed_noncritical"]] = dt * PENALTY_SHED_NONCRITICAL_JPY_PER_KWH
        cost[c["shed_critical"]] = dt * PENALTY_SHED_CRITICAL_JPY_PER_KWH * np.array(
            [critical_shed_weight(i, n) for i in range(n)])
        has = ~np.isnan(run.commit_target_w)
        cost[c["commit_over"]] = cost[c["commit_under"]] = dt * np.where(has, COMMITMENT_WEIGHT, 0.0)
        cost[c["reserve_slack"]] = PENALTY_RESERVE_JPY_PER_KWH
        cost[c["band_low"]] = cost[c["band_high"]] = PENALTY_SOC_BAND_JPY_PER_KWH
        cost[self.peak] = run.settings.demand_charge_jpy_per_kw if run.mode != "islanded" else 0.0
        cost[c["soc"][-1]] -= run.terminal_value_jpy_per_kwh
        all_cols = np.arange(len(cost), dtype=np.int32)
        h.changeColsBounds(len(all_cols), all_cols, lower, upper)
        h.changeColsCost(len(all_cols), all_cols, cost)
        rows, lo, up = [], [], []
        rhs_balance = load - pv
        rows.append(self.row_balance); lo.append(rhs_balance); up.append(rhs_balance)
        rec = np.zeros(n)
        rec[0] = self.keep * run.soc_wh / KW
        rows.append(self.row_recursion); lo.append(rec); up.append(rec)
        rows.append(self.row_band_low); lo.append(run.band_min_wh / KW); up.append(np.full(n, INF))
        rows.append(self.row_band_high); lo.append(np.full(n, -INF)); up.append(np.full(n, p.max_energy_wh / KW))
        rows.append(self.row_reserve); lo.append(run.floor_wh / KW); up.append(np.full(n, INF))
        target = np.where(has, run.commit_target_w, 0.0) / KW
        rows.append(self.row_commit); lo.append(target); up.append(target)
        r = np.concatenate(rows).astype(np.int32)
        h.changeRowsBounds(len(r), r, np.concatenate(lo), np.concatenate(up))

    def solve(self) -> tuple[bool, float, float]:
        """Run HiGHS; returns (optimal, objective [JPY], wall time [ms])."""
        tick = time.perf_counter()
        self.highs.run()
        self.solves += 1
        ok = self.highs.getModelStatus() == highspy.HighsModelStatus.kOptimal
        return ok, float(self.highs.getInfo().objective_function_value), (time.perf_counter() - tick) * 1e3

    def schedule(self) -> Schedule:
        """The solution in API units [W, Wh]."""
        x = np.asarray(self.highs.getSolution().col_value)
        c = self.col

        def w(name):
            v = x[c[name]] * KW
            v[np.abs(v) < 1e-3] = 0.0
            return v
        return Schedule(charge_w=w("charge"), discharge_w=w("discharge"), soc_wh=x[c["soc"]] * KW,
                        grid_import_w=w("grid_import"), grid_export_w=w("grid_export"), pv_curtail_w=w("curtail"),
                        shed_noncritical_w=w("shed_noncritical"), shed_critical_w=w("shed_critical"))
