"""Safety guard: each stage, its order, its clips, and invariants under random input."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.readings import BatteryState
from ems.gateway.alarms import SAFETY_RULE_UNMET, AlarmSet, sync_clip_alarm
from ems.gateway.guard import (
    GuardSettings, PowerRange, Stage, allowed_range, apply, reserve_floor_for,
)
from ems.gateway.modes import Mode
from optimizer.reserve import reserve_floor_wh

from .helpers import T0, policy, snap

# No ramp and free export, for tests of the other stages.
OPEN = dict(ramp_w_per_s=1e9, grid_export_limit_w=1e6)
LOW_FLOOR = 0.0


def stages(result):
    return [c.stage for c in result.clips]


def test_policy_limits_are_the_start_and_not_a_clip():
    r = allowed_range(snap(), policy(**OPEN), Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(-5000, 5000)
    assert r.clips == ()


def test_device_limits_narrow_and_are_recorded():
    s = snap(bat_kw=dict(max_charge_w=3000.0, max_discharge_w=4000.0))
    r = allowed_range(s, policy(**OPEN), Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(-3000, 4000)
    assert stages(r) == [Stage.DEVICE, Stage.DEVICE]
    assert "3000" in r.clips[0].reason and r.clips[0].before == PowerRange(-5000, 5000)


@pytest.mark.parametrize("bad", [-100.0, math.nan, math.inf])
def test_nonsense_device_limit_allows_nothing(bad):
    s = snap(bat_kw=dict(max_discharge_w=bad))
    r = allowed_range(s, policy(**OPEN), Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range.max_w == 0.0 and r.range.min_w == -5000


@pytest.mark.parametrize("case", ["missing", "fault_state", "fault_code", "soc_nan", "soc_140"])
def test_unusable_battery_holds_idle(case):
    kw = {"missing": dict(no_battery=True),
          "fault_state": dict(bat_kw=dict(state=BatteryState.FAULT)),
          "fault_code": dict(bat_kw=dict(fault_code=17)),
          "soc_nan": dict(soc=math.nan),
          "soc_140": dict(soc=140.0)}[case]
    r = allowed_range(snap(**kw), policy(), Mode.VPP, LOW_FLOOR, 3000.0, 1.0)
    assert r.range == PowerRange(0, 0) and r.safety == PowerRange(0, 0)
    assert r.clips and "idle" in r.clips[0].reason


def test_soc_at_max_forbids_charging_at_min_forbids_discharging():
    p = policy(**OPEN)
    full = allowed_range(snap(soc=95.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert full.range.min_w == 0.0 and full.range.max_w == 5000
    assert "soc_max" in full.clips[0].reason
    empty = allowed_range(snap(soc=10.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert empty.range.max_w == 0.0 and empty.range.min_w == -5000
    assert "soc_min" in empty.clips[0].reason


def test_soc_taper_near_limits():
    p = policy(**OPEN)
    r = allowed_range(snap(soc=94.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range.min_w == pytest.approx(-2500.0)  # 1 % of a 2 % taper band
    r = allowed_range(snap(soc=94.99), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range.min_w == pytest.approx(-500.0)  # floor of the taper: 10 %
    r = allowed_range(snap(soc=11.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0,
                      GuardSettings(taper_pct=4.0))
    assert r.range.max_w == pytest.approx(1250.0)


def test_one_long_cycle_cannot_cross_soc_max():
    p = policy(**OPEN)
    dt = 3600.0  # an hour-long "cycle": the energy cap, not the taper, binds
    r = allowed_range(snap(soc=94.9), p, Mode.VPP, LOW_FLOOR, 0.0, dt)
    headroom_wh = p.max_energy_wh - 0.949 * p.capacity_wh
    assert -r.range.min_w * p.charge_efficiency * dt / 3600 == pytest.approx(headroom_wh)


def test_reserve_floor_blocks_discharge_and_limits_energy_per_cycle():
    p = policy(**OPEN)
    stored = 0.5 * p.capacity_wh
    r = allowed_range(snap(soc=50.0), p, Mode.VPP, stored + 1, 0.0, 1.0)
    assert r.range.max_w == 0.0 and stages(r) == [Stage.RESERVE]
    r = allowed_range(snap(soc=50.0), p, Mode.VPP, stored - 1.0, 0.0, 3600.0)
    # 1 Wh above the floor over one hour: 0.95 W on the AC side
    assert r.range.max_w == pytest.approx(0.95)


def test_invalid_floor_means_no_discharge():
    r = allowed_range(snap(), policy(**OPEN), Mode.VPP, math.nan, 0.0, 1.0)
    assert r.range.max_w == 0.0 and "invalid" in r.clips[0].reason


def test_islanded_uses_the_reserve_and_ignores_grid_and_ramp():
    p = policy(ramp_w_per_s=10.0)
    s = snap(soc=50.0, meter_w=90000.0, grid_ok=False)
    r = allowed_range(s, p, Mode.ISLANDED, p.max_energy_wh, -4000.0, 1.0)
    assert r.range == PowerRange(-5000, 5000) and r.clips == ()


def test_disaster_reserve_never_discharges_and_never_exports():
    p = policy(ramp_w_per_s=1e9, grid_export_limit_w=10000.0)
    # PV surplus 3 kW: with export forbidden the battery must take it
    r = allowed_range(snap(soc=50.0, meter_w=-3000.0), p, Mode.DISASTER_RESERVE, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(-5000, -3000)
    assert [c.stage for c in r.clips] == [Stage.MODE, Stage.GRID]
    vpp = allowed_range(snap(soc=50.0, meter_w=-3000.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert vpp.range == PowerRange(-5000, 5000)  # net + export = 7000 W: no clip


def test_safe_is_idle_at_once_even_against_the_ramp():
    p = policy(ramp_w_per_s=100.0)
    r = allowed_range(snap(soc=50.0, battery_w=4000.0), p, Mode.SAFE, LOW_FLOOR, 4000.0, 1.0)
    assert r.range == PowerRange(0, 0)
    ramp = [c for c in r.clips if c.stage is Stage.RAMP]
    assert ramp and ramp[0].unmet and "cannot be met" in ramp[0].reason
    alarms = AlarmSet("hall-01")
    assert sync_clip_alarm(alarms, r.clips, T0) is None  # a ramp giving way is not an alarm


def test_grid_import_limit_forces_discharge_within_safety():
    p = policy(**OPEN)
    r = allowed_range(snap(soc=50.0, meter_w=18000.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(3000, 5000)
    # the same load with an empty battery: the import rule cannot be met, SoC wins
    r = allowed_range(snap(soc=10.0, meter_w=18000.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(0, 0) and r.safety.max_w == 0
    grid = [c for c in r.clips if c.stage is Stage.GRID]
    assert grid[0].unmet and "import" in grid[0].reason
    alarms = AlarmSet("hall-01")
    alarm = sync_clip_alarm(alarms, r.clips, T0)
    assert alarm is not None and alarm.code == SAFETY_RULE_UNMET and "import" in alarm.message


def test_missing_meter_is_reported_not_silent():
    r = allowed_range(snap(no_meter=True), policy(**OPEN), Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(-5000, 5000)
    assert r.clips[0].stage is Stage.GRID and r.clips[0].unmet and "not checked" in r.clips[0].reason


def test_ramp_around_previous_setpoint_or_measured_power():
    p = policy(ramp_w_per_s=2000.0, grid_export_limit_w=1e6)
    r = allowed_range(snap(), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(-2000, 2000) and stages(r) == [Stage.RAMP, ]
    r = allowed_range(snap(battery_w=3000.0), p, Mode.VPP, LOW_FLOOR, None, 0.5)
    assert r.range == PowerRange(2000, 4000) and "measured" in r.clips[0].reason


def test_ramp_gives_way_to_safety_and_grid():
    p = policy(ramp_w_per_s=2000.0)
    # SoC dropped to the minimum while discharging 5 kW: stop now, not in 2.5 s
    r = allowed_range(snap(soc=10.0, battery_w=5000.0), p, Mode.VPP, LOW_FLOOR, 5000.0, 1.0)
    assert r.range == PowerRange(0, 0)
    assert r.clips[-1].stage is Stage.RAMP and r.clips[-1].unmet
    # the import limit needs 5 kW now: the grid rule wins over the ramp
    r = allowed_range(snap(soc=50.0, meter_w=20000.0), p, Mode.VPP, LOW_FLOOR, 0.0, 1.0)
    assert r.range == PowerRange(5000, 5000)


def test_apply_clips_and_reports():
    rng = PowerRange(-2000, 3000)
    assert apply(rng, 1000.0) == (1000.0, [])
    sp, clips = apply(rng, 8000.0)
    assert sp == 3000 and clips[0].stage is Stage.REQUEST and clips[0].before == 8000
    assert "8000" in clips[0].reason
    sp, clips = apply(rng, -9000)
    assert sp == -2000 and clips
    sp, clips = apply(rng, math.nan)
    assert sp == 0 and "not a number" in clips[0].reason
    sp, clips = apply(PowerRange(500, 900), math.inf)
    assert sp == 500 and clips


@pytest.mark.parametrize("dt", [0.0, -1.0, math.nan, math.inf])
def test_bad_dt_is_refused(dt):
    with pytest.raises(ValueError, match="dt_s"):
        allowed_range(snap(), policy(), Mode.VPP, LOW_FLOOR, 0.0, dt)


def test_bad_inputs_to_records():
    with pytest.raises(ValueError):
        PowerRange(10, -10)
    with pytest.raises(ValueError):
        PowerRange(math.nan, 0)
    with pytest.raises(ValueError):
        allowed_range(snap(), policy(), "turbo", LOW_FLOOR, 0.0, 1.0)


def test_clips_are_json_ready():
    r = allowed_range(snap(soc=95.0, meter_w=18000.0), policy(), "vpp", LOW_FLOOR, 0.0, 1.0)
    text = json.dumps([c.to_dict() for c in r.clips])
    assert '"stage": "soc"' in text


def test_reserve_floor_for_uses_the_shared_formula():
    p = policy(reserve_hours={"vpp": 4.0, "disaster_reserve": 12.0})
    got = reserve_floor_for(p, Mode.VPP, [900.0], [], 0.5)
    assert got == pytest.approx(1500 + 900 * 4 / 0.95)
    assert got == reserve_floor_wh(p, "vpp", [900.0], [], 0.5)
    assert reserve_floor_for(p, "disaster_reserve", [900.0], [], 0.5) == pytest.approx(
        min(1500 + 900 * 12 / 0.95, p.max_energy_wh))
    assert reserve_floor_for(p, Mode.ISLANDED, [900.0], [], 0.5) == p.min_energy_wh


# -- invariants under random input ------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)


@st.composite
def cases(draw):
    soc_min = draw(st.floats(0, 50, **finite))
    soc_max = draw(st.floats(soc_min + 5, 100, **finite))
    p = policy(
        capacity_wh=draw(st.floats(2000, 40000, **finite)), soc_min_pct=soc_min, soc_max_pct=soc_max,
        max_charge_w=draw(st.floats(100, 20000, **finite)),
        max_discharge_w=draw(st.floats(100, 20000, **finite)),
        charge_efficiency=draw(st.floats(0.5, 1, **finite)),
        discharge_efficiency=draw(st.floats(0.5, 1, **finite)),
        ramp_w_per_s=draw(st.floats(1, 1e5, **finite)),
        grid_import_limit_w=draw(st.floats(100, 50000, **finite)),
        grid_export_limit_w=draw(st.floats(0, 20000, **finite)),
    )
    dev = draw(st.fixed_dictionaries({}, optional={
        "max_charge_w": st.floats(0, 25000, **finite), "max_discharge_w": st.floats(0, 25000, **finite)}))
    s = snap(soc=draw(st.floats(0, 100, **finite)), battery_w=draw(st.floats(-25000, 25000, **finite)),
             meter_w=draw(st.floats(-60000, 60000, **finite)), grid_ok=draw(st.booleans()),
             bat_kw=dev)
    mode = draw(st.sampled_from(list(Mode)))
    floor = draw(st.floats(-1000, p.capacity_wh * 1.2, **finite))
    prev = draw(st.none() | st.floats(-30000, 30000, **finite))
    dt = draw(st.floats(0.05, 600, **finite))
    req = draw(st.floats(-1e5, 1e5, **finite) | st.just(math.nan))
    return p, s, mode, floor, prev, dt, req


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_guard_invariants(case):
    p, s, mode, floor, prev, dt, req = case
    r = allowed_range(s, p, mode, floor, prev, dt)
    sp, _ = apply(r.range, req)
    tol = 1e-6 * max(1.0, abs(sp))
    # the range never widens through a later stage, and every clip only narrows
    ranges = [PowerRange(-p.max_charge_w, p.max_discharge_w)] + [rg for _, rg in r.trace]
    for outer, inner in zip(ranges, ranges[1:]):
        assert inner.within(outer)
    for c in r.clips:
        assert c.after.within(c.before)
    assert r.range.within(r.safety)
    assert r.range.contains(sp) and r.safety.contains(sp)
    # power limits: policy and device
    assert -p.max_charge_w - tol <= sp <= p.max_discharge_w + tol
    b = s.battery
    if b.max_charge_w is not None:
        assert sp >= -b.max_charge_w - tol
    if b.max_discharge_w is not None:
        assert sp <= b.max_discharge_w + tol
    # SoC limits, and no single cycle crosses them
    stored = b.soc_pct / 100 * p.capacity_wh
    if b.soc_pct >= p.soc_max_pct:
        assert sp >= 0
    if b.soc_pct <= p.soc_min_pct:
        assert sp <= 0
    if sp < 0:
        assert stored + (-sp) * p.charge_efficiency * dt / 3600 <= p.max_energy_wh + 1e-6
    if sp > 0:
        assert stored - sp * dt / 3600 / p.discharge_efficiency >= p.min_energy_wh - 1e-6
        if mode is not Mode.ISLANDED:
            assert stored - sp * dt / 3600 / p.discharge_efficiency >= floor - 1e-6
    # modes
    if mode is Mode.DISASTER_RESERVE:
        assert sp <= 0
    if mode is Mode.SAFE:
        assert sp == 0
    if mode is Mode.ISLANDED:
        assert r.range == r.safety


@settings(max_examples=150, deadline=None)
@given(cases(), st.booleans())
def test_grid_limits_hold_whenever_they_are_met(case, disaster):
    p, s, _, floor, prev, dt, req = case
    mode = Mode.DISASTER_RESERVE if disaster else Mode.VPP
    r = allowed_range(s, p, mode, floor, prev, dt)
    sp, _ = apply(r.range, req)
    if any(c.stage is Stage.GRID and c.unmet for c in r.clips):
        return
    grid_w = s.net_load_w - sp
    export = 0.0 if disaster else p.grid_export_limit_w
    assert -export - 1e-6 <= grid_w <= p.grid_import_limit_w + 1e-6
