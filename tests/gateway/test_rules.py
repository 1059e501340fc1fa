"""Rule-based plan, alone and through the guard."""

from __future__ import annotations

import math

import pytest

from ems.gateway.guard import allowed_range, apply
from ems.gateway.modes import Mode
from ems.gateway.rules import rule_setpoint

from .helpers import policy, snap

P = policy(ramp_w_per_s=1e9, grid_export_limit_w=10000.0)


def test_vpp_is_self_consumption():
    # hall draws 2.5 kW from the grid while the battery gives 1 kW: net load 3.5 kW
    plan = rule_setpoint(snap(meter_w=2500.0, battery_w=1000.0), Mode.VPP, P)
    assert plan.setpoint_w == 3500.0 and "self-consumption" in plan.reason
    # PV surplus: 4 kW exported while idle → charge 4 kW
    assert rule_setpoint(snap(meter_w=-4000.0), "vpp", P).setpoint_w == -4000.0


def test_vpp_without_meter_idles():
    plan = rule_setpoint(snap(no_meter=True), Mode.VPP, P)
    assert plan.setpoint_w == 0.0 and "unknown" in plan.reason
    assert rule_setpoint(snap(meter_w=math.nan), Mode.VPP, P).setpoint_w == 0.0


def test_disaster_charges_at_the_maximum():
    plan = rule_setpoint(snap(), Mode.DISASTER_RESERVE, P)
    assert plan.setpoint_w == -P.max_charge_w and "hold" in plan.reason


def test_manual_uses_the_setpoint():
    assert rule_setpoint(snap(), Mode.MANUAL, P, manual_setpoint_w=-1200.0).setpoint_w == -1200.0
    assert rule_setpoint(snap(), Mode.MANUAL, P).setpoint_w == 0.0
    assert rule_setpoint(snap(), Mode.MANUAL, P, manual_setpoint_w=math.inf).setpoint_w == 0.0


@pytest.mark.parametrize("mode", [Mode.SAFE, Mode.ISLANDED])
def test_safe_and_islanded_ask_for_nothing(mode):
    plan = rule_setpoint(snap(meter_w=3000.0), mode, P)
    assert plan.setpoint_w == 0.0 and mode.value in plan.reason


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        rule_setpoint(snap(), "party", P)


def test_vpp_through_the_guard_stops_at_the_reserve_floor():
    s = snap(soc=40.0, meter_w=2000.0)
    floor = 0.40 * P.capacity_wh  # exactly at the floor
    r = allowed_range(s, P, Mode.VPP, floor, 0.0, 1.0)
    sp, clips = apply(r.range, rule_setpoint(s, Mode.VPP, P).setpoint_w)
    assert sp == 0.0 and clips and "2000" in clips[0].reason
    # PV surplus is still stored below the floor
    s = snap(soc=40.0, meter_w=-1500.0)
    r = allowed_range(s, P, Mode.VPP, floor, 0.0, 1.0)
    assert apply(r.range, rule_setpoint(s, Mode.VPP, P).setpoint_w) == (-1500.0, [])


def test_disaster_through_the_guard_respects_device_and_import_limits():
    s = snap(soc=50.0, meter_w=12000.0, bat_kw=dict(max_charge_w=4000.0))
    r = allowed_range(s, P, Mode.DISASTER_RESERVE, P.max_energy_wh, 0.0, 1.0)
    sp, _ = apply(r.range, rule_setpoint(s, Mode.DISASTER_RESERVE, P).setpoint_w)
    assert sp == -3000.0  # 12 kW load + 3 kW charge = the 15 kW import limit
