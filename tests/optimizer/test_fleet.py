"""Fleet allocation: fair split, limits, reserve, unmet part, excluded modes."""

from datetime import timedelta

import numpy as np
import pytest

from optimizer.fleet import FleetSite, allocate
from optimizer.planner import SitePlanner

from .helpers import policy, series

POL = policy(capacity_wh=10_000, soc_min_pct=10, soc_max_pct=95, max_charge_w=3000, max_discharge_w=3000,
             reserve_hours={"vpp": 2.0, "disaster_reserve": 12.0}, grid_import_limit_w=10_000,
             grid_export_limit_w=10_000)
# Flat prices, no load: plans sit idle, so the headroom is the battery's.
F = series(8, price_buy=10, price_sell=9, load_w=0, critical_load_w=500)


def site(sid, soc, mode="vpp", pol=POL, f=F):
    return FleetSite(sid, mode, pol, SitePlanner(pol).plan(f, soc, mode))


def test_identical_sites_share_equally_and_fully():
    sites = [site("a", 60), site("b", 60)]
    req = np.zeros(8)
    req[2:4] = 3000
    req[5] = -2000
    alloc = allocate(sites, F.times, req)
    assert alloc.status == "optimal"
    assert np.allclose(alloc.delta_w["a"], alloc.delta_w["b"], atol=1e-3)
    assert np.allclose(alloc.allocated_w, req, atol=1e-3)
    assert np.allclose(alloc.unmet_w, 0, atol=1e-3)


def test_request_beyond_power_is_unmet_and_split_by_headroom():
    sites = [site("a", 60), site("b", 60, pol=policy(**{**POL_KW, "max_discharge_w": 1000}))]
    req = np.zeros(8)
    req[1] = 10_000
    alloc = allocate(sites, F.times, req)
    assert alloc.delta_w["a"][1] == pytest.approx(3000, abs=1e-3)
    assert alloc.delta_w["b"][1] == pytest.approx(1000, abs=1e-3)
    assert alloc.unmet_w[1] == pytest.approx(6000, abs=1e-3)


POL_KW = dict(capacity_wh=10_000, soc_min_pct=10, soc_max_pct=95, max_charge_w=3000, max_discharge_w=3000,
              reserve_hours={"vpp": 2.0, "disaster_reserve": 12.0}, grid_import_limit_w=10_000,
              grid_export_limit_w=10_000)


def test_reserve_limits_the_energy_given():
    # Floor = 1 kWh (E_min) + 2 h × 0.5 kW = 2 kWh.  At 30 % (3 kWh) only 1 kWh may go: 2 kW for 30 min.
    low = site("low", 30)
    req = np.zeros(8)
    req[0:4] = 3000
    alloc = allocate([low], F.times, req)
    given_wh = alloc.delta_w["low"].sum() * 0.5 / POL.discharge_efficiency
    assert given_wh == pytest.approx(1000, abs=1e-2)
    assert alloc.unmet_w.sum() * 0.5 == pytest.approx(4 * 3000 * 0.5 - 1000, abs=1e-2)
    # The site, planning with its commitments, delivers them and keeps its reserve.
    plan = SitePlanner(POL).plan(F, 30, "vpp", commitments=alloc.commitments_for(low))
    assert plan.commitment_shortfall_wh == pytest.approx(0, abs=1e-3)
    assert np.all(plan.soc_wh >= 2000 - 1e-3)


def test_down_regulation_limited_by_room_and_import():
    full = site("full", 94)   # 9.4 kWh of 9.5 max: 0.1 kWh of room
    pol = policy(**{**POL_KW, "grid_import_limit_w": 1000})
    weak = site("weak", 50, pol=pol)  # the meter allows only 1 kW of import
    req = np.zeros(8)
    req[3] = -10_000
    alloc = allocate([full, weak], F.times, req)
    assert -alloc.delta_w["full"][3] * 0.5 * POL.charge_efficiency == pytest.approx(100, abs=1e-2)
    assert alloc.delta_w["weak"][3] == pytest.approx(-1000, abs=1e-3)


def test_other_modes_take_no_part():
    sites = [site("v", 60), site("d", 60, "disaster_reserve"), site("i", 60, "islanded")]
    req = np.full(8, 500.0)
    alloc = allocate(sites, F.times, req)
    assert set(alloc.delta_w) == {"v"}
    assert alloc.excluded == {"d": "mode disaster_reserve", "i": "mode islanded"}


def test_request_outside_the_plans_is_unmet():
    later = [t + timedelta(hours=24) for t in F.times]
    alloc = allocate([site("a", 60)], later, np.full(8, 1000.0))
    assert np.allclose(alloc.unmet_w, 1000.0)
    assert alloc.commitments_for(site("a", 60)) == []


def test_bad_request():
    with pytest.raises(ValueError):
        allocate([site("a", 60)], F.times, np.ones(3))
    with pytest.raises(ValueError):
        allocate([site("a", 60)], F.times, [np.nan] * 8)
    empty = allocate([site("a", 60)], F.times, np.zeros(8))
    assert empty.status == "optimal" and np.all(empty.delta_w["a"] == 0)
