"""Warm re-solves, the MILP fallback, the rule fallback and the Plan API."""

from datetime import timedelta

import numpy as np
import pyomo.environ as pyo
import pytest

from optimizer.planner import SitePlanner, plan_site
from optimizer.plan import PLAN_COLUMNS, PlanExpired, PlanStatus
from optimizer.settings import PlanSettings
from optimizer.solver import PersistentHighs, SolveResult, SolveStatus, _InterfaceUpdate

from .helpers import policy, series


def random_case(rng, n=24):
    f = series(n, price_buy=rng.uniform(1, 40, n), price_sell=rng.uniform(0, 1, n),
               load_w=rng.uniform(0, 4000, n), pv_w=rng.uniform(0, 6000, n), critical_load_w=rng.uniform(200, 1200, n))
    return f, float(rng.uniform(0, 100)), str(rng.choice(["vpp", "disaster_reserve", "islanded"]))


POL = policy(soc_min_pct=10, soc_max_pct=95, charge_efficiency=0.95, discharge_efficiency=0.93,
             reserve_hours={"vpp": 3.0, "disaster_reserve": 12.0}, grid_import_limit_w=8000, grid_export_limit_w=3000)


def test_warm_resolves_match_cold_solves():
    rng = np.random.default_rng(3)
    planner = SitePlanner(POL)
    for _ in range(12):
        f, soc, mode = random_case(rng)
        warm = planner.plan(f, soc, mode)
        cold = plan_site(POL, f, soc, mode)
        assert warm.objective_jpy == pytest.approx(cold.objective_jpy, rel=1e-7, abs=1e-6)
        assert np.allclose(warm.soc_wh, cold.soc_wh, atol=1e-3) or warm.status != cold.status
    built = next(iter(planner._lp.values()))
    assert built.solver.fast_path and built.solver.solves == 12  # one model, re-used


def test_compiled_push_matches_the_interface_update():
    rng = np.random.default_rng(5)
    fast, slow = SitePlanner(POL), SitePlanner(POL)
    f, soc, mode = random_case(rng)
    fast.plan(f, soc, mode)
    slow.plan(f, soc, mode)
    solver = next(iter(slow._lp.values())).solver
    solver._push = _InterfaceUpdate(solver._opt)  # Pyomo's own per-helper update
    for _ in range(6):
        f, soc, mode = random_case(rng)
        a, b = fast.plan(f, soc, mode), slow.plan(f, soc, mode)
        assert a.objective_jpy == pytest.approx(b.objective_jpy, rel=1e-9, abs=1e-7)


@pytest.mark.parametrize("offset_uses_param", [False, True])
def test_compiled_push_follows_the_objective_offset(offset_uses_param):
    """The site model's offset is constant (not pushed); one built on a Param is pushed on every re-solve."""
    m = pyo.ConcreteModel()
    m.T = pyo.RangeSet(0, 2)
    m.lo = pyo.Param(m.T, initialize=0.0, mutable=True)
    m.k = pyo.Param(initialize=0.0, mutable=True)
    m.x = pyo.Var(m.T, bounds=lambda m, t: (m.lo[t], 10))
    m.obj = pyo.Objective(expr=sum(m.x[t] for t in m.T) + (3 * m.k + 1 if offset_uses_param else 7))
    solver = PersistentHighs(m)
    assert solver.solve().objective == pytest.approx(1.0 if offset_uses_param else 7.0)
    assert solver.fast_path and solver._push.offset_moves == offset_uses_param
    for k, lows in ((2.0, [1.0, 2.0, 3.0]), (-1.0, [0.5, 0.0, 4.0])):
        m.k = k
        m.lo.store_values(dict(enumerate(lows)), check=False)  # as optimizer.data loads them
        expect = sum(lows) + (3 * k + 1 if offset_uses_param else 7)
        assert solver.solve().objective == pytest.approx(expect)
        assert solver.values("x") == pytest.approx(lows)


def test_time_limit_is_per_solve_not_cumulative():
    # HiGHS counts its limit against the object's total run time; many quick re-solves
    # must not run into it.
    rng = np.random.default_rng(8)
    planner = SitePlanner(POL, PlanSettings(time_limit_s=0.05))
    f, soc, mode = random_case(rng, n=48)
    planner.plan(f, soc, "vpp")
    highs = next(iter(planner._lp.values())).solver._opt._solver_model
    runs = 0
    while highs.getRunTime() < 0.2 and runs < 3000:
        f, soc, _ = random_case(rng, n=48)
        plan = planner.plan(f, soc, "vpp")
        assert not plan.fallback, plan.message
        runs += 1
    assert highs.getRunTime() >= 0.2, "the test did not accumulate enough solver time"


def test_simultaneous_charge_discharge_falls_back_to_milp():
    # SoC above the band with nowhere to send the energy: the LP would charge and
    # discharge at once to burn it; the MILP may not.
    pol = policy(soc_max_pct=80, charge_efficiency=0.9, discharge_efficiency=0.9)
    f = series(4, load_w=0.0)
    plan = plan_site(pol, f, 100.0, "vpp", settings=PlanSettings(degradation_jpy_per_kwh=0.0))
    assert plan.status == PlanStatus.OPTIMAL_MILP
    assert "MILP" in plan.message
    assert not np.any((plan.charge_w > 1) & (plan.discharge_w > 1))
    assert np.all(plan.soc_wh <= 10_000 + 1e-6)


class FailingSolver:
    def __init__(self, model, time_limit_s):
        self.status = SolveStatus.TIME_LIMIT

    def solve(self):
        return SolveResult(self.status, None, 1.0, "kTimeLimit")

    def values(self, name):
        raise AssertionError("no solution to read")


def test_solver_failure_gives_flagged_rule_plan():
    pol = policy(reserve_hours={"vpp": 2.0}, max_discharge_w=3000)
    f = series(6, price_buy=20, load_w=2500, pv_w=[0, 0, 4000, 4000, 0, 0], critical_load_w=500)
    plan = SitePlanner(pol, solver_factory=FailingSolver).plan(f, 50.0, "vpp")
    assert plan.fallback and plan.status == PlanStatus.FALLBACK
    assert "time_limit" in plan.message
    # The rule still keeps the reserve: 500 W for 2 h = 1 kWh.
    assert np.all(plan.soc_wh >= 1000 - 1e-6)
    assert plan.discharge_w[0] == pytest.approx(2500)
    assert plan.charge_w[2] == pytest.approx(1500)  # PV surplus goes into the battery


def test_exception_in_solver_gives_fallback():
    class Boom(PersistentHighs):
        def solve(self):
            raise RuntimeError("library crashed")  # PersistentHighs itself catches; this one does not

    planner = SitePlanner(policy(), solver_factory=lambda m, t: _Wrapped(Boom(m, t)))
    plan = planner.plan(series(3, load_w=100), 50.0, "vpp")
    assert plan.fallback and "error" in plan.message


class _Wrapped:
    def __init__(self, inner):
        self.inner = inner

    def solve(self):
        try:
            return self.inner.solve()
        except RuntimeError as exc:
            return SolveResult(SolveStatus.ERROR, None, 0.0, str(exc))

    def values(self, name):
        return self.inner.values(name)


def test_plan_api_setpoint_and_expiry():
    f = series(8, price_buy=[10, 10, 30, 30, 10, 10, 30, 30], load_w=1000)
    now = f.times[0] + timedelta(minutes=5)
    plan = plan_site(policy(), f, 50.0, "vpp", now=now, settings=PlanSettings(valid_for_slots=4))
    assert plan.expires_at == now + timedelta(minutes=120)
    assert plan.setpoint_at(f.times[0]) == pytest.approx(plan.discharge_w[0] - plan.charge_w[0])
    assert plan.setpoint_at(f.times[2] + timedelta(minutes=10)) == pytest.approx(plan.battery_w[2])
    with pytest.raises(PlanExpired):
        plan.setpoint_at(now + timedelta(minutes=120))
    with pytest.raises(PlanExpired):
        plan.setpoint_at(f.times[0] - timedelta(seconds=1))
    assert plan.is_valid_at(now) and not plan.is_valid_at(plan.expires_at)
    with pytest.raises(ValueError):
        plan.setpoint_at(f.times[0].replace(tzinfo=None))
    rows = plan.rows()
    assert list(rows[0]) == list(PLAN_COLUMNS) and len(rows) == 8
    summary = plan.summary()
    assert summary["status"] == "optimal" and summary["fallback"] is False


def test_bad_mode_and_soc_are_errors():
    f = series(2)
    with pytest.raises(ValueError, match="unknown mode"):
        plan_site(policy(), f, 50.0, "manual")
    with pytest.raises(ValueError, match="outside 0"):
        plan_site(policy(), f, 101.0, "vpp")


def test_solving_leaves_the_process_streams_alone(monkeypatch, capfd):
    """A plan made in a worker thread must not swap the process' stdout/stderr (Pyomo's capture_output did:
    the event loop's log lines vanished into its buffer and a print raced its close, "I/O operation on
    closed file"), and HiGHS prints nothing of its own but its once-per-process banner."""
    import os
    import sys

    from pyomo.contrib.solver.solvers.highs import Highs

    seen = []
    original_add_block = Highs.add_block

    def spy(self, block):  # runs inside set_instance, where the capture used to be active
        seen.append((sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino))
        return original_add_block(self, block)

    monkeypatch.setattr(Highs, "add_block", spy)
    import highspy
    highspy.Highs()  # HiGHS prints its banner once per process, at the first construction: not ours to hide
    capfd.readouterr()
    before = (sys.stdout, sys.stderr, os.fstat(1).st_ino, os.fstat(2).st_ino)
    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(1, 2))
    m.obj = pyo.Objective(expr=m.x)
    solver = PersistentHighs(m)
    assert solver.solve().objective == pytest.approx(1.0)
    assert solver.solve().objective == pytest.approx(1.0)
    assert seen == [before]
    out, err = capfd.readouterr()
    assert out == "" and err == ""
