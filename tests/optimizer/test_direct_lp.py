"""The highspy-built LP (benchmark reference, backtest's perfect foresight) equals the Pyomo model."""

from datetime import timedelta

import numpy as np
import pytest

from optimizer.data import prepare_run
from optimizer.highs_direct import DirectSiteLP
from optimizer.planner import SitePlanner
from optimizer.settings import Commitment, PlanSettings

from .helpers import policy, series


@pytest.mark.parametrize("seed", range(6))
def test_same_objective_as_pyomo(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 30))
    minutes = int(rng.choice([15, 30]))
    f = series(n, minutes=minutes, price_buy=rng.uniform(0.01, 40, n), price_sell=rng.uniform(0, 10, n),
               load_w=rng.uniform(0, 6000, n), pv_w=rng.uniform(0, 8000, n), critical_load_w=rng.uniform(0, 1500, n))
    pol = policy(soc_min_pct=10, soc_max_pct=90, charge_efficiency=0.93, discharge_efficiency=0.95,
                 reserve_hours={"vpp": 3.0, "disaster_reserve": 10.0}, grid_import_limit_w=7000,
                 grid_export_limit_w=float(rng.choice([0, 4000])))
    mode = ["vpp", "disaster_reserve", "islanded"][seed % 3]
    settings = PlanSettings(demand_charge_jpy_per_kw=float(rng.choice([0, 40])), self_discharge_per_h=0.01)
    commitments = [Commitment(f.times[1], f.times[1] + timedelta(minutes=2 * minutes), 1500.0)]
    soc = float(rng.uniform(0, 100))
    planner = SitePlanner(pol, settings)
    plan = planner.plan(f, soc, mode, commitments=commitments)
    direct = DirectSiteLP(n, f.slot_h, pol.charge_efficiency, pol.discharge_efficiency, settings.self_discharge_per_h)
    direct.load(prepare_run(f, pol, soc, mode, settings, commitments))
    ok, objective, _ = direct.solve()
    assert ok
    if plan.status.value == "optimal":  # the LP, not the MILP fallback
        assert objective == pytest.approx(plan.objective_jpy, rel=1e-7, abs=1e-6)
    else:
        assert objective <= plan.objective_jpy + 1e-6  # the LP relaxation is never worse
    # A warm re-solve with another SoC agrees as well.
    direct.load(prepare_run(f, pol, 50.0, mode, settings, commitments))
    ok, objective2, _ = direct.solve()
    plan2 = planner.plan(f, 50.0, mode, commitments=commitments)
    if plan2.status.value == "optimal":
        assert objective2 == pytest.approx(plan2.objective_jpy, rel=1e-7, abs=1e-6)
    sched = direct.schedule()
    assert sched.soc_wh.shape == (n,)
