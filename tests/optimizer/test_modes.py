"""Mode behaviour: disaster_reserve charging, islanded shedding, dispatch commitments."""

from datetime import timedelta

import numpy as np
import pytest

from optimizer.planner import plan_site
from optimizer.reserve import reserve_floor_wh
from optimizer.settings import Commitment, PlanSettings

from .helpers import policy, series

DIS = policy(capacity_wh=20_000, soc_min_pct=10, soc_max_pct=95, reserve_hours={"vpp": 2.0, "disaster_reserve": 12.0},
             max_charge_w=3000, grid_import_limit_w=10_000, grid_export_limit_w=5000)


def test_disaster_reserve_charges_as_fast_as_allowed_and_holds():
    # 1 kW critical for 12 h = 12 kWh above E_min 2 kWh: 14 kWh; from 4 kWh at 3 kW that takes 3 h 20 min.
    f = series(16, price_buy=[30] * 8 + [5] * 8, price_sell=40, load_w=500, critical_load_w=1000)
    plan = plan_site(DIS, f, 20.0, "disaster_reserve")
    assert plan.charge_w[:6].tolist() == pytest.approx([3000] * 6)  # at full power despite the high price
    assert plan.soc_wh[6] == pytest.approx(14_000, abs=1e-3)
    assert np.all(plan.discharge_w == 0) and np.all(plan.grid_export_w == 0)
    assert np.all(plan.soc_wh[6:] >= 14_000 - 1e-3)
    # Largest gap to the (unramped) reserve: the end of the first slot, 14 − (4 + 1.5) kWh.
    assert plan.reserve_shortfall_wh == pytest.approx(8_500, abs=1e-3)


def test_disaster_reserve_with_event_time_uses_cheapest_slots():
    prices = [30, 30, 5, 5, 5, 5, 5, 5, 30, 30, 30, 30]
    f = series(12, price_buy=prices, load_w=0, critical_load_w=1000)
    event = f.times[8]
    # From 6 kWh to 14 kWh: 8 kWh, and the six cheap slots can take 9.
    no_value = PlanSettings(terminal_value_jpy_per_kwh=0.0)  # else cheap energy beyond the reserve is worth buying
    plan = plan_site(DIS, f, 30.0, "disaster_reserve", event_time=event, settings=no_value)
    assert plan.charge_w[:2].tolist() == pytest.approx([0, 0])     # waits for the cheap slots
    assert plan.soc_wh[7] >= 14_000 - 1e-3                          # full reserve when the event strikes
    assert plan.energy_cost_jpy == pytest.approx(8 * 5, rel=1e-6)   # 8 kWh, all at 5 JPY/kWh
    # Too little time before the event: charging starts at once, at any price.
    late = plan_site(DIS, f, 30.0, "disaster_reserve", event_time=f.times[4])
    assert late.charge_w[:4].tolist() == pytest.approx([3000] * 4)


def test_islanded_uses_pv_and_reports_hours():
    # Night then sun: critical load is carried through; the sun recharges; non-critical load is shed
    # unless PV covers it.
    pv = [0, 0, 0, 0, 6000, 6000, 6000, 6000]
    f = series(8, minutes=60, load_w=3000, pv_w=pv, critical_load_w=800)
    plan = plan_site(DIS, f, 40.0, "islanded")
    assert np.all(plan.grid_import_w == 0) and np.all(plan.grid_export_w == 0)
    assert np.all(plan.shed_critical_w < 1e-6)
    assert plan.shed_w[:4].tolist() == pytest.approx([2200] * 4)  # only the critical 800 W at night
    assert plan.shed_w[4:].tolist() == pytest.approx([0] * 4)     # PV carries the whole hall by day
    assert plan.hours_of_power > 8


def test_islanded_energy_runs_out_hours_of_power():
    f = series(12, minutes=60, load_w=1000, critical_load_w=1000)
    plan = plan_site(DIS, f, 30.0, "islanded")  # 6 kWh, 2 kWh minimum: 4 kWh for 1 kW
    assert plan.hours_of_power == pytest.approx(4.0, abs=1e-6)
    assert plan.shed_critical_w[:4].tolist() == pytest.approx([0] * 4, abs=1e-6)
    assert plan.shed_critical_w[4:].tolist() == pytest.approx([1000] * 8, abs=1e-6)


def test_commitment_within_limits_is_met():
    f = series(8, price_buy=10, load_w=1000, critical_load_w=500)
    c = Commitment(f.times[3], f.times[5], 1500.0, id="dr-1")
    plan = plan_site(DIS, f, 60.0, "vpp", commitments=[c])
    assert plan.battery_w[3:5].tolist() == pytest.approx([1500, 1500])
    assert plan.commitment_shortfall_wh == pytest.approx(0, abs=1e-6)


def test_commitment_that_would_break_reserve_is_cut_and_reported():
    # Floor: E_min 2 kWh + 2 h × 1 kW = 4 kWh.  Start 5 kWh: only 1 kWh may go, not 2 h × 2 kW.
    f = series(4, minutes=60, price_buy=10, load_w=2000, critical_load_w=1000)
    c = Commitment(f.times[0], f.times[2], 2000.0)
    plan = plan_site(DIS, f, 25.0, "vpp", commitments=[c])
    floor = reserve_floor_wh(DIS, "vpp", [1000.0], [0.0], 1.0)
    assert floor == pytest.approx(4000)
    assert np.all(plan.soc_wh >= floor - 1e-3)
    assert plan.discharge_w[:2].sum() == pytest.approx(1000, abs=1e-3)
    assert plan.commitment_shortfall_wh == pytest.approx(3000, abs=1e-3)  # 4 kWh asked, 1 kWh delivered
    assert not plan.fallback


def test_contradictory_commitments_give_a_plan_with_slack():
    f = series(4, price_buy=10, load_w=0, critical_load_w=500)
    cs = [Commitment(f.times[0], f.times[4 - 1] + timedelta(minutes=30), 50_000.0, id="up"),
          Commitment(f.times[1], f.times[2], -80_000.0, id="down")]
    plan = plan_site(DIS, f, 50.0, "vpp", commitments=cs, settings=PlanSettings())
    assert plan.status.value in ("optimal", "optimal_milp")
    assert plan.commitment_shortfall_wh > 0
    assert np.all(plan.discharge_w <= DIS.max_discharge_w + 1e-6)


def test_islanded_and_disaster_ignore_commitments():
    f = series(4, price_buy=10, load_w=500, critical_load_w=500)
    c = Commitment(f.times[0], f.times[3], 2000.0)
    for mode in ("islanded", "disaster_reserve"):
        plan = plan_site(DIS, f, 90.0, mode, commitments=[c])
        assert plan.commitment_shortfall_wh == 0.0
        if mode == "disaster_reserve":
            assert np.all(plan.discharge_w == 0)
