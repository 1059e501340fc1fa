"""Hall physics: energy balance, efficiencies, limits, watchdog, outages, faults, determinism."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from devices.readings import BatteryState, Nature
from devices.simulator.clock import ManualClock
from devices.simulator.physics import HallPhysics
from tests.devices.simulator.helpers import JUNE_NIGHT, JUNE_NOON, make_site

ETA = 0.95  # both efficiencies of the test site
LIMIT_W = 4000.0  # inverter rating below the battery's 5000 W


def hall(clock, **kwargs) -> HallPhysics:
    site_overrides = kwargs.pop("site", {})
    kwargs.setdefault("lag_s", 0.0)
    kwargs.setdefault("watchdog_timeout_s", 1e9)  # only TestWatchdog wants the watchdog
    return HallPhysics(make_site(**site_overrides), clock, **kwargs)


def run(p: HallPhysics, clock: ManualClock, seconds: float, step_s: float) -> list:
    """Advance in steps of ``step_s`` and return the states."""
    states = []
    n = round(seconds / step_s)
    for _ in range(n):
        clock.advance(step_s)
        states.append(p.step())
    return states


def test_initial_state(clock):
    p = hall(clock)
    s = p.state
    assert s.time == clock.now()
    assert s.soc_pct == pytest.approx(50.0)
    assert s.stored_wh == pytest.approx(7500.0)
    assert s.battery_state == BatteryState.IDLE and s.fault_code == 0
    assert s.max_charge_w == LIMIT_W and s.max_discharge_w == LIMIT_W
    assert s.pv_power_w == 0.0  # midnight
    assert s.voltage_v == pytest.approx(101, abs=1.5) and s.frequency_hz == pytest.approx(60, abs=0.05)


def test_energy_balance_and_battery_energy_at_every_step(clock):
    """grid = load − PV − battery at every step; ΔE = −P·Δt/η_d or −P·Δt·η_c; counters add up."""
    p = hall(clock, lag_s=0.5, max_substep_s=600)
    rng = random.Random(42)
    prev = p.state
    load_wh = 0.0
    saw = {"charge": False, "discharge": False, "full": False, "empty": False}
    hb = 0
    for i in range(1500):  # about 2 days of irregular steps, each one sub-step
        if i % 25 == 0:
            p.set_setpoint(rng.uniform(-6000, 6000))
            prev = p.state
        hb += 1
        p.kick_heartbeat(hb)
        clock.advance(rng.uniform(0.5, 240))
        s = p.step()
        h = (s.time - prev.time).total_seconds() / 3600
        assert s.grid_power_w == pytest.approx(s.hall_load_w - s.pv_power_w - s.battery_power_w, abs=1e-9)
        assert (s.import_wh - prev.import_wh) - (s.export_wh - prev.export_wh) == pytest.approx(s.grid_power_w * h, abs=1e-6)
        pw = s.battery_power_w
        expected_de = -pw * h / ETA if pw >= 0 else -pw * h * ETA
        assert s.stored_wh - prev.stored_wh == pytest.approx(expected_de, abs=1e-6)
        assert 10 - 1e-9 <= s.soc_pct <= 95 + 1e-9
        assert abs(pw) <= LIMIT_W + 1e-9
        assert s.pv_power_w >= 0
        load_wh += s.hall_load_w * h
        saw["charge"] |= pw < -100
        saw["discharge"] |= pw > 100
        saw["full"] |= s.soc_pct > 95 - 1e-6
        saw["empty"] |= s.soc_pct < 10 + 1e-6
        prev = s
    assert all(saw.values()), saw
    # Whole run: the meter's net energy equals load − PV − battery, from the counters.
    s = p.state
    net_battery_wh = s.discharged_wh - s.charged_wh
    assert s.import_wh - s.export_wh == pytest.approx(load_wh - s.pv_energy_wh - net_battery_wh, abs=1e-3)
    assert s.pv_energy_wh > 10_000  # two June days of sun on 10 kW


def test_soc_limits_stop_the_battery(clock):
    p = hall(clock)
    p.set_setpoint(LIMIT_W)
    run(p, clock, 5 * 3600, 600)
    s = p.state
    assert s.soc_pct == pytest.approx(10.0, abs=1e-9)
    assert s.battery_power_w == 0.0 and s.battery_state == BatteryState.IDLE
    assert s.max_discharge_w == 0.0 and s.max_charge_w == LIMIT_W
    assert s.discharged_wh == pytest.approx((7500 - 1500) * ETA)
    p.set_setpoint(-LIMIT_W)
    run(p, clock, 5 * 3600, 600)
    s = p.state
    assert s.soc_pct == pytest.approx(95.0, abs=1e-9)
    assert s.battery_power_w == 0.0 and s.max_charge_w == 0.0 and s.max_discharge_w == LIMIT_W


def test_efficiencies_over_one_hour(clock):
    p = hall(clock)
    p.set_setpoint(1000)
    run(p, clock, 3600, 60)
    assert p.state.stored_wh == pytest.approx(7500 - 1000 / ETA)
    assert p.state.discharged_wh == pytest.approx(1000)
    p.set_setpoint(-1000)
    run(p, clock, 3600, 60)
    assert p.state.stored_wh == pytest.approx(7500 - 1000 / ETA + 1000 * ETA)
    assert p.state.charged_wh == pytest.approx(1000)


@pytest.mark.parametrize("setpoint,expected", [(1e6, LIMIT_W), (-1e6, -LIMIT_W), (2500, 2500), (0, 0)])
def test_power_limits_are_the_smaller_of_battery_and_inverter(clock, setpoint, expected):
    p = hall(clock)
    p.set_setpoint(setpoint)
    clock.advance(10)
    s = p.step()
    assert s.battery_power_w == pytest.approx(expected)
    assert s.setpoint_w == setpoint  # the register keeps what was written


def test_first_order_lag(clock):
    p = hall(clock, lag_s=2.0)
    p.set_setpoint(2000)
    clock.advance(0.5)
    early = p.step().battery_power_w
    assert 100 < early < 500  # average of 2000·(1 − e^(−t/2)) over the first 0.5 s ≈ 230 W
    run(p, clock, 30, 1)
    assert p.state.battery_power_w == pytest.approx(2000, abs=1)


def watched(clock, **kwargs) -> HallPhysics:
    """A hall with the default 30 s watchdog."""
    return hall(clock, watchdog_timeout_s=30.0, **kwargs)


class TestWatchdog:
    def test_kicked_heartbeat_keeps_the_setpoint(self, clock):
        p = watched(clock)
        p.set_setpoint(2000)
        for i in range(1, 13):
            p.kick_heartbeat(i)
            clock.advance(10)
            p.step()
        assert p.state.setpoint_w == 2000 and p.state.watchdog_trips == 0

    def test_reverts_to_idle_exactly_at_the_timeout(self, clock):
        p = watched(clock)
        p.kick_heartbeat(1)
        p.set_setpoint(2000)
        states = run(p, clock, 40, 1)
        assert states[28].setpoint_w == 2000 and states[28].battery_power_w == pytest.approx(2000)  # t = 29 s
        assert states[29].setpoint_w == 0.0 and states[29].watchdog_trips == 1  # t = 30 s
        assert states[-1].battery_power_w == 0.0 and states[-1].battery_state == BatteryState.IDLE

    def test_one_long_step_is_split_at_the_trip(self, clock):
        p = watched(clock)
        p.kick_heartbeat(1)
        p.set_setpoint(2000)
        clock.advance(100)
        p.step()
        assert p.state.discharged_wh == pytest.approx(2000 * 30 / 3600)

    def test_an_unchanged_heartbeat_is_no_heartbeat(self, clock):
        p = watched(clock)
        p.kick_heartbeat(5)
        p.set_setpoint(2000)
        for _ in range(4):
            clock.advance(10)
            p.kick_heartbeat(5)
        assert p.step().setpoint_w == 0.0

    def test_timeout_is_settable(self, clock):
        p = watched(clock)
        p.watchdog_timeout_s = 5
        p.kick_heartbeat(1)
        p.set_setpoint(-1500)
        states = run(p, clock, 6, 1)
        assert states[3].setpoint_w == -1500 and states[4].setpoint_w == 0.0
        with pytest.raises(ValueError, match="timeout"):
            p.watchdog_timeout_s = 0

    def test_setpoint_written_after_the_deadline_never_runs(self, clock):
        p = watched(clock)
        clock.advance(100)  # no heartbeat for 100 s
        p.set_setpoint(2000)
        clock.advance(50)
        s = p.step()
        assert s.setpoint_w == 0.0 and s.discharged_wh == 0.0 and s.watchdog_trips == 1

    def test_timeout_counts_wall_time_on_an_accelerated_clock(self, clock):
        class SixtyTimes(ManualClock):
            speed = 60.0

        fast = SixtyTimes(clock.now())
        p = watched(fast)
        p.kick_heartbeat(1)
        p.set_setpoint(1000)
        fast.advance(1799)
        assert p.step().setpoint_w == 1000  # 29.98 wall seconds
        fast.advance(1)
        assert p.step().setpoint_w == 0.0
        q = watched(fast, watchdog_in_wall_time=False)
        q.kick_heartbeat(1)
        q.set_setpoint(1000)
        fast.advance(30)
        assert q.step().setpoint_w == 0.0


class TestOutage:
    def test_islanded_hall_serves_only_the_critical_load(self, clock):
        p = hall(clock)
        p.set_setpoint(-3000)  # ignored while islanded
        p.set_grid(False)
        prev = p.state
        served = shed = 0.0
        for s in run(p, clock, 3600, 60):
            h = (s.time - prev.time).total_seconds() / 3600
            assert s.grid_power_w == 0.0 and s.voltage_v == 0.0 and s.frequency_hz == 0.0
            assert not s.grid_available
            assert s.pv_power_w == 0.0  # midnight
            assert s.served_load_w == pytest.approx(s.critical_load_w)
            assert s.battery_power_w == pytest.approx(s.critical_load_w)
            served += s.critical_load_w * h
            shed += max(0.0, s.hall_load_w - s.critical_load_w) * h
            prev = s
        s = p.state
        assert s.served_critical_wh == pytest.approx(served)
        assert s.unserved_critical_wh == 0.0
        assert s.shed_noncritical_wh == pytest.approx(shed)
        assert s.import_wh == 0.0 and s.export_wh == 0.0
        assert s.stored_wh == pytest.approx(7500 - served / ETA)

    def test_empty_battery_leaves_the_shelter_dark(self, clock):
        p = hall(clock, site={"battery": {"initial_soc_pct": 11}})
        p.set_grid(False)
        prev = p.state
        demand = 0.0
        for s in run(p, clock, 3600, 60):
            demand += s.critical_load_w * (s.time - prev.time).total_seconds() / 3600
            prev = s
        s = p.state
        assert s.soc_pct == pytest.approx(10.0)
        assert s.served_critical_wh == pytest.approx(150 * ETA)  # the energy above soc_min, after losses
        assert s.unserved_critical_wh == pytest.approx(demand - 150 * ETA)
        assert s.battery_power_w == 0.0 and s.served_load_w == 0.0

    def test_sunny_island_charges_then_curtails_pv(self):
        clock = ManualClock(JUNE_NOON)
        p = hall(clock, site={"battery": {"initial_soc_pct": 94}, "simulator": {"cloud_factor": 0.0}})
        p.set_grid(False)
        clock.advance(60)
        s = p.step()
        assert s.battery_power_w < 0  # surplus PV goes into the battery
        assert s.pv_power_w == pytest.approx(s.critical_load_w - s.battery_power_w)
        prev, delivered = s, s.pv_energy_wh
        for s in run(p, clock, 3600, 60):
            delivered += s.pv_power_w * (s.time - prev.time).total_seconds() / 3600
            prev = s
        assert s.pv_energy_wh == pytest.approx(delivered)  # curtailed PV is not counted
        assert s.soc_pct == pytest.approx(95.0)
        assert s.battery_power_w == pytest.approx(0.0, abs=1e-6)
        assert s.pv_available_w > 5000
        assert s.pv_power_w == pytest.approx(s.critical_load_w)  # curtailed to the load
        assert s.unserved_critical_wh == 0.0

    def test_grid_returns(self, clock):
        p = hall(clock)
        p.set_grid(False)
        run(p, clock, 600, 60)
        p.set_grid(True)
        p.set_setpoint(1000)
        clock.advance(60)
        s = p.step()
        assert s.grid_available and s.voltage_v == pytest.approx(101, abs=1.5)
        assert s.frequency_hz == pytest.approx(60, abs=0.05)
        assert s.battery_power_w == pytest.approx(1000)
        assert s.grid_power_w == pytest.approx(s.hall_load_w - s.pv_power_w - 1000)
        assert s.import_wh + s.export_wh > 0  # the meter counts again


class TestBatteryFault:
    def test_fault_stops_the_battery_until_cleared(self, clock):
        p = hall(clock)
        p.kick_heartbeat(1)
        p.set_setpoint(2000)
        p.inject_battery_fault(0x0203)
        clock.advance(20)
        s = p.step()
        assert s.battery_state == BatteryState.FAULT and s.fault_code == 0x0203
        assert s.battery_power_w == 0.0 and s.max_charge_w == 0.0 and s.max_discharge_w == 0.0
        assert s.stored_wh == pytest.approx(7500)
        p.clear_battery_fault()
        clock.advance(5)
        s = p.step()
        assert s.fault_code == 0 and s.battery_power_w == pytest.approx(2000)

    def test_fault_during_outage_darkens_the_shelter(self, clock):
        p = hall(clock)
        p.set_grid(False)
        p.inject_battery_fault()
        s = run(p, clock, 600, 60)[-1]
        assert s.served_critical_wh == 0.0 and s.unserved_critical_wh > 0
        assert s.pv_power_w == 0.0

    @pytest.mark.parametrize("code", [0, -1, 0x10000])
    def test_bad_fault_code(self, clock, code):
        with pytest.raises(ValueError, match="fault code"):
            hall(clock).inject_battery_fault(code)


def test_register_fault_switches(clock):
    p = hall(clock)
    p.freeze_registers("meter")
    p.serve_garbage(Nature.BATTERY, "soc", 140.0)
    p.serve_sentinels("pv")
    f = p.register_faults
    assert f.frozen == {Nature.METER} and f.garbage == {Nature.BATTERY: {"soc": 140.0}}
    assert f.sentinels == {Nature.PV} and f.active
    p.freeze_registers("meter", False)
    f.clear()
    assert not f.active
    with pytest.raises(ValueError):
        p.freeze_registers("toaster")


def test_same_seed_same_run_other_seed_other_run():
    def trace(seed):
        clock = ManualClock(JUNE_NOON - timedelta(hours=4))
        p = hall(clock, seed=seed, lag_s=0.5)
        p.set_setpoint(1500)
        out = []
        for i in range(200):
            p.kick_heartbeat(i)
            clock.advance(37)
            out.append(p.step())
        return out

    a, b, c = trace(11), trace(11), trace(12)
    assert a == b
    assert [s.pv_power_w for s in a] != [s.pv_power_w for s in c]
    assert [s.hall_load_w for s in a] != [s.hall_load_w for s in c]


def test_seed_defaults_to_the_site_simulator_seed(clock):
    assert hall(clock).seed == 7
    assert hall(clock, seed=3).seed == 3


def test_bad_inputs(clock):
    p = hall(clock)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            p.set_setpoint(bad)
    with pytest.raises(ValueError):
        hall(clock, lag_s=-1)
    with pytest.raises(ValueError):
        hall(clock, max_substep_s=0)
    before = p.state
    assert p.step(clock.now() - timedelta(hours=1)) is before  # time never runs back
