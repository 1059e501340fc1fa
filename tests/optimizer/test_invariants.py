"""Property-based checks of the plan's physics and safety over random inputs (hypothesis)."""

from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optimizer.data import served_loads
from optimizer.modes import mode_limits
from optimizer.planner import plan_site
from optimizer.reserve import SafetyPolicy
from optimizer.settings import Commitment, PlanSettings

from .helpers import series

TOL = 1e-3  # [W] / [Wh]


@st.composite
def cases(draw):
    n = draw(st.integers(2, 16))
    minutes = draw(st.sampled_from([15, 30]))
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)  # noqa: E731
    vec = lambda lo, hi: st.lists(floats(lo, hi), min_size=n, max_size=n)  # noqa: E731
    pol = SafetyPolicy(
        capacity_wh=draw(floats(5000, 30000)), soc_min_pct=draw(floats(0, 20)), soc_max_pct=draw(floats(80, 100)),
        max_charge_w=draw(floats(1000, 10000)), max_discharge_w=draw(floats(1000, 10000)),
        charge_efficiency=draw(floats(0.85, 1.0)), discharge_efficiency=draw(floats(0.85, 1.0)),
        reserve_hours={"vpp": draw(floats(0, 6)), "disaster_reserve": draw(floats(0, 14))},
        pv_pessimism=draw(floats(0, 1)), grid_import_limit_w=draw(floats(1000, 30000)),
        grid_export_limit_w=draw(st.sampled_from([0.0, 5000.0, 15000.0])))
    buy = draw(vec(0.01, 50))
    sell = [b * draw(floats(0, 1.2)) for b in buy]  # sometimes above buy: the meter must still pick one direction
    f = series(n, minutes=minutes, price_buy=buy, price_sell=sell, load_w=draw(vec(0, 8000)),
               pv_w=draw(vec(0, 10000)), critical_load_w=draw(vec(0, 2000)))
    mode = draw(st.sampled_from(["vpp", "disaster_reserve", "islanded"]))
    soc = draw(floats(0, 100))
    commitments = []
    if mode == "vpp" and draw(st.booleans()):
        k = draw(st.integers(0, n - 1))
        commitments.append(Commitment(f.times[k], f.times[k] + timedelta(minutes=minutes),
                                      draw(floats(-12000, 12000)), id="c1"))
    s = PlanSettings(degradation_jpy_per_kwh=draw(floats(0, 5)),
                     demand_charge_jpy_per_kw=draw(st.sampled_from([0.0, 50.0])))
    return pol, f, mode, soc, commitments, s


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_plan_respects_physics_and_safety(case):
    pol, f, mode, soc, commitments, s = case
    plan = plan_site(pol, f, soc, mode, settings=s, commitments=commitments)
    assert not plan.fallback, plan.message
    lim = mode_limits(pol, mode)
    load, crit = served_loads(f, mode)
    dt = f.slot_h
    c, d = plan.charge_w, plan.discharge_w
    gi, ge = plan.grid_import_w, plan.grid_export_w
    # Energy balance on the hall's AC bus.
    supply = f.pv_w - plan.pv_curtail_w + d - c + gi - ge
    assert np.allclose(supply + plan.shed_w, load, atol=TOL)
    # SoC recursion (no self-discharge here).
    prev = np.concatenate([[pol.capacity_wh * soc / 100], plan.soc_wh[:-1]])
    expect = prev + dt * (pol.charge_efficiency * c - d / pol.discharge_efficiency)
    assert np.allclose(plan.soc_wh, expect, atol=TOL)
    # Limits of the mode.
    for x, hi in ((c, lim.max_charge_w), (d, lim.max_discharge_w), (gi, lim.max_import_w), (ge, lim.max_export_w)):
        assert np.all(x >= -TOL) and np.all(x <= hi + TOL)
    assert np.all(plan.pv_curtail_w <= f.pv_w + TOL)
    assert np.all(plan.shed_critical_w <= crit + TOL) and np.all(plan.shed_w <= load + TOL)
    assert np.all(plan.soc_wh >= -TOL) and np.all(plan.soc_wh <= pol.capacity_wh + TOL)
    # One direction per slot for the battery and for the meter.
    assert not np.any((c > 1.0) & (d > 1.0))
    assert not np.any((gi > 1.0) & (ge > 1.0))
    # The (ramped, hence reachable) reserve is never violated while the grid can carry the
    # hall; from the first slot it cannot, serving critical load comes first (the reserve is for it).
    if mode != "islanded":
        short = np.nonzero(load - f.pv_w > lim.max_import_w + TOL)[0]
        until = short[0] if len(short) else f.n
        assert np.all(plan.soc_wh[:until] >= plan.reserve_wh[:until] - TOL)
    # The floor climbs no faster than charging at full power from the start could fill the battery.
    e0 = pol.capacity_wh * soc / 100
    reachable = e0 + pol.charge_efficiency * lim.max_charge_w * dt * np.arange(1, f.n + 1)
    assert np.all(plan.reserve_wh <= reachable + TOL)
    # Starting inside the SoC band, the plan stays inside it.
    if pol.min_energy_wh <= e0 <= pol.max_energy_wh:
        assert np.all(plan.soc_wh >= pol.min_energy_wh - TOL)
        assert np.all(plan.soc_wh <= pol.max_energy_wh + TOL)
    # With the grid able to carry the hall, a grid-connected hall never sheds load.
    if mode != "islanded":
        ok = (f.load_w - f.pv_w) <= lim.max_import_w
        assert np.all(plan.shed_w[ok] <= TOL)
    if mode == "islanded":
        # Hours of power: the whole horizon if the plan never sheds critical load, else
        # no later than the end of the first slot that clearly sheds it.
        shedding = np.nonzero(plan.shed_critical_w > 1.0)[0]
        if np.all(plan.shed_critical_w <= 1e-3):
            assert plan.hours_of_power >= f.n * dt - 1e-9
        elif len(shedding):
            assert plan.hours_of_power <= (shedding[0] + 1) * dt + 1e-9
