"""Tiny cases whose optimum is computed by hand (exact objective)."""

import pytest

from optimizer.planner import plan_site
from optimizer.settings import PlanSettings

from .helpers import policy, series

NEUTRAL = PlanSettings(degradation_jpy_per_kwh=0.0, terminal_value_jpy_per_kwh=0.0)


def test_arbitrage_lossless():
    # Charge 2 kW for 1 h at 10 JPY/kWh, discharge it against 2 kW of load at 30.
    f = series(2, minutes=60, price_buy=[10, 30], load_w=[0, 2000])
    plan = plan_site(policy(), f, 0.0, "vpp", settings=NEUTRAL)
    assert plan.status.value == "optimal"
    assert plan.charge_w.tolist() == pytest.approx([2000, 0])
    assert plan.discharge_w.tolist() == pytest.approx([0, 2000])
    assert plan.energy_cost_jpy == pytest.approx(20.0)
    # 20 JPY + tie-break 1e-4 JPY/kWh × slot 1 × 2 kWh of discharge.
    assert plan.objective_jpy == pytest.approx(20.0002, abs=1e-7)
    assert plan.soc_wh.tolist() == pytest.approx([2000, 0])


def test_arbitrage_with_losses():
    # 2 kWh charged -> 1.8 stored -> 1.62 delivered; 0.38 kWh still imported at 30.
    f = series(2, minutes=60, price_buy=[10, 30], load_w=[0, 2000])
    pol = policy(charge_efficiency=0.9, discharge_efficiency=0.9)
    plan = plan_site(pol, f, 0.0, "vpp", settings=NEUTRAL)
    assert plan.discharge_w[1] == pytest.approx(1620)
    assert plan.grid_import_w.tolist() == pytest.approx([2000, 380])
    assert plan.objective_jpy == pytest.approx(31.4 + 1e-4 * 1.62, abs=1e-7)


def test_reserve_floor_limits_discharge():
    # Reserve: 1 kW critical for 2 h = 2 kWh above E_min = 0; start 4 kWh -> only 2 kWh may go
    # in the 30-minute slot (4 kW of the 5 kW load); 0.5 kWh is imported at 20.
    pol = policy(reserve_hours={"vpp": 2.0}, max_discharge_w=5000)
    f = series(1, price_buy=20, load_w=5000, critical_load_w=1000)
    plan = plan_site(pol, f, 40.0, "vpp", settings=NEUTRAL)
    assert plan.discharge_w[0] == pytest.approx(4000)
    assert plan.soc_wh[0] == pytest.approx(2000)
    assert plan.reserve_wh[0] == pytest.approx(2000)
    assert plan.objective_jpy == pytest.approx(10.0, abs=1e-7)
    assert plan.reserve_shortfall_wh == pytest.approx(0.0, abs=1e-6)


def test_demand_charge_flattens_peak():
    # Load [0, 4 kW]; charging 2 kW before and discharging 2 kW halves the 30-minute peak.
    f = series(2, minutes=30, price_buy=10, load_w=[0, 4000])
    s = PlanSettings(degradation_jpy_per_kwh=0.0, terminal_value_jpy_per_kwh=0.0, demand_charge_jpy_per_kw=100.0)
    plan = plan_site(policy(), f, 0.0, "vpp", settings=s)
    assert plan.grid_import_w.tolist() == pytest.approx([2000, 2000])
    # energy 20 JPY + peak 2 kW × 100 + tie-break 0.5 h × 1e-4 × 2 kW.
    assert plan.objective_jpy == pytest.approx(220.0001, abs=1e-7)


def test_terminal_value_fills_battery():
    # A one-slot series is 30 minutes: 1 kWh bought at 10, valued at 15.
    f = series(1, price_buy=10)
    s = PlanSettings(degradation_jpy_per_kwh=0.0, terminal_value_jpy_per_kwh=15.0)
    plan = plan_site(policy(), f, 0.0, "vpp", settings=s)
    assert plan.charge_w[0] == pytest.approx(2000)
    assert plan.objective_jpy == pytest.approx(10.0 - 15.0, abs=1e-7)


def test_export_limit_curtails_the_rest():
    pol = policy(grid_export_limit_w=1000)
    f = series(2, minutes=60, price_buy=20, price_sell=5, pv_w=3000)
    plan = plan_site(pol, f, 100.0, "vpp", settings=NEUTRAL)
    assert plan.grid_export_w.tolist() == pytest.approx([1000, 1000])
    assert plan.pv_curtail_w.tolist() == pytest.approx([2000, 2000])
    assert plan.objective_jpy == pytest.approx(2 * (-5.0 + 0.001 * 2), abs=1e-7)


def test_islanded_sheds_noncritical_first_and_late():
    # 1.5 kWh for two hours of 1 kW critical + 2 kW other load, no PV, no grid.
    f = series(2, minutes=60, load_w=3000, critical_load_w=1000)
    plan = plan_site(policy(), f, 15.0, "islanded", settings=NEUTRAL)
    assert plan.grid_import_w.tolist() == [0, 0]
    assert plan.shed_critical_w.tolist() == pytest.approx([0, 500])
    assert plan.shed_w.tolist() == pytest.approx([2000, 2500])
    # shed non-critical 2 × 2 kWh × 2,000 + 0.5 kWh critical × 10,000 × weight 1.5 + tie-break.
    assert plan.objective_jpy == pytest.approx(8000 + 7500 + 1e-4 * 0.5, abs=1e-6)
    assert plan.hours_of_power == pytest.approx(1.5)


def test_equal_cost_plans_break_ties_early_and_consistently():
    # Flat price and load: spending the 1.5 kWh in any three slots costs the same.  The tie-break
    # spends it as early as possible (without it HiGHS picks slots 1-3 here), and the re-plan one
    # slot later agrees with the first plan.
    pol = policy(capacity_wh=10_000)
    f = series(8, price_buy=10, load_w=1000)
    first = plan_site(pol, f, 15.0, "vpp", settings=NEUTRAL)
    assert first.discharge_w.tolist() == pytest.approx([1000, 1000, 1000, 0, 0, 0, 0, 0])
    later = series(8, price_buy=10, load_w=1000, start=f.times[1])
    second = plan_site(pol, later, first.soc_pct[0], "vpp", settings=NEUTRAL)
    assert second.discharge_w.tolist() == pytest.approx(first.discharge_w[1:].tolist() + [0])
